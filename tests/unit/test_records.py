"""Typing API records: every field type, NULLs, warnings, DST, `_raw`, and arbitrary JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogsync.apitime import from_local_naive
from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint, FieldType
from ogsync.records import (
    RAW,
    SEQ,
    UPDATED_LATEST,
    MissingKey,
    TypingReport,
    arrow_schema,
    type_records,
)

CHICAGO = ZoneInfo("America/Chicago")
ORDERS = BY_NAME["orders"]
SUBSCRIPTIONS = BY_NAME["subscriptions"]
ITEMS = BY_NAME["items"]
CUSTOMERS = BY_NAME["customers"]
NULL_WORDS = ("null", "", "undefined", "None", "  null  ")


def record(ep: Endpoint = ORDERS, **fields: Any) -> dict[str, Any]:
    return {ep.key: "a" * 32, **fields}


def typed(ep: Endpoint, name: str, value: Any) -> tuple[Any, TypingReport, pa.Table]:
    """The typed value of one field of one record, the report, and the table."""
    table, report = type_records(ep, [record(ep, **{name: value})], CHICAGO)
    column = ep.field_named(name).column
    return table.column(column).to_pylist()[0], report, table


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_every_documented_field_is_a_typed_column(ep):
    table, report = type_records(ep, [record(ep)], CHICAGO)
    assert table.schema == arrow_schema(ep)
    assert table.column_names == [
        *(f.column for f in ep.fields),
        RAW,
        SEQ,
        UPDATED_LATEST,
    ]
    assert report.warnings == 0
    assert report.unknown_fields == set()


def test_column_types():
    schema = arrow_schema(ORDERS)
    assert schema.field("created").type == pa.timestamp("us", tz="UTC")
    assert schema.field("total").type == pa.decimal128(38, 9)
    assert schema.field("status").type == pa.int64()
    assert schema.field("locked").type == pa.bool_()
    assert schema.field("extra_data").type == pa.string()
    assert schema.field("public_id").type == pa.string()
    assert arrow_schema(SUBSCRIPTIONS).field("start_date").type == pa.date32()


def test_order_stored_as_order_id():
    table, _ = type_records(ITEMS, [record(ITEMS, order="b" * 32)], CHICAGO)
    assert "order" not in table.column_names
    assert table.column("order_id").to_pylist() == ["b" * 32]


def test_empty_batch():
    table, report = type_records(ORDERS, [], CHICAGO)
    assert table.num_rows == 0
    assert table.schema == arrow_schema(ORDERS)
    assert report.warnings == 0


def test_seq_numbers_from_first_seq():
    records = [record(ORDERS, public_id=str(i)) for i in range(3)]
    table, _ = type_records(ORDERS, records, CHICAGO, first_seq=40)
    assert table.column(SEQ).to_pylist() == [40, 41, 42]
    assert table.column("public_id").to_pylist() == ["0", "1", "2"]


def test_missing_fields_are_null_and_not_warned():
    value, report, table = typed(ORDERS, "total", None)
    assert value is None
    assert report.warnings == 0
    assert table.column("created").to_pylist() == [None]


# -- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-15 12:00:00", utc(2026, 1, 15, 18, 0, 0)),  # CST
        ("2026-07-01 12:00:00", utc(2026, 7, 1, 17, 0, 0)),  # CDT
        ("2026-11-01 01:30:00", utc(2026, 11, 1, 6, 30, 0)),  # repeated: first occurrence
        ("2026-11-01 00:59:59", utc(2026, 11, 1, 5, 59, 59)),
        ("2026-11-01 02:00:00", utc(2026, 11, 1, 8, 0, 0)),
        ("2026-03-08 01:59:59", utc(2026, 3, 8, 7, 59, 59)),
        ("2026-03-08 03:00:00", utc(2026, 3, 8, 8, 0, 0)),
        (" 2026-01-15 12:00:00 ", utc(2026, 1, 15, 18, 0, 0)),
    ],
)
def test_timestamp_local_to_utc(text, expected):
    value, report, _ = typed(ORDERS, "created", text)
    assert value == expected
    assert report.warnings == 0


def test_dst_ambiguous_wall_time_is_first_occurrence():
    value, _, _ = typed(ORDERS, "updated", "2026-11-01 01:30:00")
    assert value == utc(2026, 11, 1, 6, 30, 0)


def test_updated_latest_is_second_reading_of_a_repeated_hour():
    _, _, table = typed(ORDERS, "updated", "2026-11-01 01:30:00")
    assert table.column(UPDATED_LATEST).to_pylist() == [utc(2026, 11, 1, 7, 30, 0)]
    _, _, table = typed(ORDERS, "updated", "2026-06-01 01:30:00")
    assert table.column(UPDATED_LATEST).to_pylist() == [utc(2026, 6, 1, 6, 30, 0)]


def test_updated_latest_follows_each_endpoints_update_field():
    _, _, table = typed(ITEMS, "order_updated", "2026-11-01 01:05:00")
    assert table.column(UPDATED_LATEST).to_pylist() == [utc(2026, 11, 1, 7, 5, 0)]
    _, _, table = typed(CUSTOMERS, "last_updated", "2026-11-01 01:05:00")
    assert table.column(UPDATED_LATEST).to_pylist() == [utc(2026, 11, 1, 7, 5, 0)]
    # offer profiles have no update field
    table, _ = type_records(BY_NAME["offer_profiles"], [record(BY_NAME["offer_profiles"])], CHICAGO)
    assert table.column(UPDATED_LATEST).to_pylist() == [None]


def test_updated_latest_not_double_counted_in_warnings():
    value, report, table = typed(ORDERS, "updated", "2017-02-29 00:00:00")
    assert value is None
    assert table.column(UPDATED_LATEST).to_pylist() == [None]
    assert dict(report.unparsed) == {"updated": 1}


def test_updated_latest_never_before_the_update_time_in_a_spring_forward_gap():
    """A wall time the zone skips (02:30 on 2026-03-08) must not give an inverted interval."""
    value, _, table = typed(ORDERS, "updated", "2026-03-08 02:30:00")
    latest = table.column(UPDATED_LATEST).to_pylist()[0]
    assert value is not None
    assert latest >= value


def test_timestamp_with_offset_is_taken_as_given():
    value, report, _ = typed(ORDERS, "created", "2026-01-15T12:00:00+00:00")
    assert value == utc(2026, 1, 15, 12, 0, 0)
    assert report.warnings == 0


def test_feb_29_of_a_common_year_is_null_warned_and_kept_raw():
    value, report, table = typed(ORDERS, "created", "2017-02-29 00:00:00")
    assert value is None
    assert dict(report.unparsed) == {"created": 1}
    assert report.warnings == 1
    assert orjson.loads(table.column(RAW)[0].as_py())["created"] == "2017-02-29 00:00:00"


def test_times_that_would_roll_over_are_null_and_warned_among_good_ones():
    """The column-wise parse takes these to the next day or minute; each is refused alone."""
    texts = {
        "2017-02-29 10:00:00": None,  # no 29th in a common year
        "2016-02-29 10:00:00": utc(2016, 2, 29, 16, 0, 0),
        "2026-04-31 00:00:00": None,
        "2026-04-30 23:59:59": utc(2026, 5, 1, 4, 59, 59),
        "2026-01-15 10:00:60": None,  # a 60th second
        "2026-01-31 23:59:61": None,
        "2026-01-31 24:00:00": None,
        "2026-01-31 23:60:00": None,
        "2026-02-00 00:00:00": None,
        " 2026-01-31T23:59:58 ": utc(2026, 2, 1, 5, 59, 58),
    }
    records = [record(ORDERS, public_id=f"{i:032d}", created=t) for i, t in enumerate(texts)]
    table, report = type_records(ORDERS, records, CHICAGO)
    assert table.column("created").to_pylist() == list(texts.values())
    assert dict(report.unparsed) == {"created": 7}


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01 00:00:00", 1700000000, 1.5, True, [], {}])
def test_bad_timestamps_are_null_and_warned(bad):
    value, report, _ = typed(ORDERS, "created", bad)
    assert value is None
    assert dict(report.unparsed) == {"created": 1}


@pytest.mark.parametrize("word", NULL_WORDS)
def test_null_words_are_null_without_warning(word):
    for name in ("created", "total", "status", "locked", "extra_data"):
        value, report, _ = typed(ORDERS, name, word)
        assert value is None, name
        assert report.warnings == 0, name
    value, report, _ = typed(SUBSCRIPTIONS, "start_date", word)
    assert value is None
    assert report.warnings == 0


@settings(max_examples=200, deadline=None)
@given(
    local=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2040, 12, 31)),
    tz=st.sampled_from([ZoneInfo("America/Chicago"), ZoneInfo("America/New_York")]),
)
def test_timestamp_reading_matches_the_apis_fold_0_reading(local, tz):
    local = local.replace(microsecond=0)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    table, report = type_records(ORDERS, [record(ORDERS, created=text)], tz)
    assert table.column("created").to_pylist() == [from_local_naive(local, tz, fold=0)]
    assert report.warnings == 0


def test_many_timestamps_in_one_batch_use_each_hours_offset():
    base = datetime(2026, 10, 31, 22, 0, 0)
    texts = [(base + timedelta(minutes=17 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(40)]
    records = [record(ORDERS, public_id=str(i), created=t) for i, t in enumerate(texts)]
    table, _ = type_records(ORDERS, records, CHICAGO)
    expected = [from_local_naive(datetime.fromisoformat(t), CHICAGO) for t in texts]
    assert table.column("created").to_pylist() == expected


# -- decimals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.34", Decimal("12.34")),
        ("-3.10", Decimal("-3.1")),
        ("0", Decimal("0")),
        ("1234567.123456789", Decimal("1234567.123456789")),
        ("99999999999999999999999999999", Decimal("99999999999999999999999999999")),
    ],
)
def test_decimal_strings(raw, expected):
    value, report, _ = typed(ORDERS, "total", raw)
    assert value == expected
    assert report.warnings == 0


@pytest.mark.parametrize(("raw", "expected"), [(7, Decimal(7)), (12.5, Decimal("12.5"))])
def test_decimal_numbers(raw, expected):
    value, report, _ = typed(ORDERS, "total", raw)
    assert value == expected
    assert report.warnings == 0


def test_decimal_column_mixing_strings_and_numbers():
    records = [
        record(ORDERS, public_id="1", total="12.34"),
        record(ORDERS, public_id="2", total=5),
        record(ORDERS, public_id="3", total="undefined"),
        record(ORDERS, public_id="4", total="abc"),
    ]
    table, report = type_records(ORDERS, records, CHICAGO)
    assert table.column("total").to_pylist() == [Decimal("12.34"), Decimal(5), None, None]
    assert dict(report.unparsed) == {"total": 1}


def test_undefined_total_is_null_without_warning_and_kept_raw():
    value, report, table = typed(ORDERS, "total", "undefined")
    assert value is None
    assert report.warnings == 0
    assert orjson.loads(table.column(RAW)[0].as_py())["total"] == "undefined"


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "12,50", "NaN", "Infinity", True, [], {"a": 1}])
def test_bad_decimals_are_null_and_warned(bad):
    value, report, _ = typed(ORDERS, "total", bad)
    assert value is None
    assert dict(report.unparsed) == {"total": 1}


@pytest.mark.parametrize("raw", [" 12.50 ", "12.50\n", "\t2"])
def test_decimal_string_with_surrounding_whitespace_never_raises(raw):
    """DECIMAL_PATTERN admits surrounding whitespace: the value must type, not raise."""
    value, report, _ = typed(ORDERS, "total", raw)
    assert value == Decimal(raw.strip())
    assert report.warnings == 0


# -- integers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(5, 5), ("5", 5), (5.0, 5), ("-3", -3), (0, 0)])
def test_integers(raw, expected):
    value, report, _ = typed(ORDERS, "status", raw)
    assert value == expected
    assert report.warnings == 0


def test_integer_column_mixing_ints_and_strings():
    records = [record(ORDERS, public_id=str(i), status=v) for i, v in enumerate([5, "4", "x"])]
    table, report = type_records(ORDERS, records, CHICAGO)
    assert table.column("status").to_pylist() == [5, 4, None]
    assert dict(report.unparsed) == {"status": 1}


@pytest.mark.parametrize(
    "bad", ["5.5", True, False, "abc", {"a": 1}, [1], 2**63, 2**64 - 1, 1e19, -1e19]
)
def test_bad_integers_are_null_and_warned(bad):
    value, report, _ = typed(ORDERS, "status", bad)
    assert value is None
    assert dict(report.unparsed) == {"status": 1}


@pytest.mark.parametrize("bad", [5.5, -0.5, 1e-300])
def test_fractional_floats_are_not_truncated_to_integers(bad):
    """A non-integral float in an integer field is unparsed (NULL, warned), never truncated."""
    value, report, _ = typed(ORDERS, "status", bad)
    assert value is None
    assert dict(report.unparsed) == {"status": 1}


def test_integer_column_of_fractional_floats_batch():
    records = [record(ORDERS, public_id=str(i), tries=v) for i, v in enumerate([1.0, 2.5, 3])]
    table, report = type_records(ORDERS, records, CHICAGO)
    assert table.column("tries").to_pylist() == [1, None, 3]
    assert dict(report.unparsed) == {"tries": 1}


@pytest.mark.parametrize("bad", ["--5", "-", "²", "9" * 5000])
def test_odd_integer_strings_never_raise(bad):
    """Strings that pass `.lstrip('-').isdigit()` but that int() refuses must go NULL, not raise."""
    value, report, _ = typed(ORDERS, "status", bad)
    assert value is None
    assert dict(report.unparsed) == {"status": 1}


# -- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("True", True),
        ("true", True),
        ("TRUE", True),
        ("False", False),
        ("false", False),
        ("1", True),
        ("0", False),
        (1, True),
        (0, False),
    ],
)
def test_booleans(raw, expected):
    value, report, _ = typed(ORDERS, "locked", raw)
    assert value is expected
    assert report.warnings == 0


@pytest.mark.parametrize("bad", ["yes", "t", 2, -1, 1.5, 1.0, [], {}])
def test_bad_booleans_are_null_and_warned(bad):
    value, report, _ = typed(ORDERS, "locked", bad)
    assert value is None
    assert dict(report.unparsed) == {"locked": 1}


# -- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2026-03-08", date(2026, 3, 8)), ("2024-02-29", date(2024, 2, 29))],
)
def test_dates(raw, expected):
    value, report, _ = typed(SUBSCRIPTIONS, "start_date", raw)
    assert value == expected
    assert report.warnings == 0


@pytest.mark.parametrize("bad", ["2026-02-30", "2017-02-29", "soon", 20260308, [], True])
def test_bad_dates_are_null_and_warned(bad):
    value, report, _ = typed(SUBSCRIPTIONS, "start_date", bad)
    assert value is None
    assert dict(report.unparsed) == {"start_date": 1}


# -- JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([{"product": "p1", "quantity": 2}], '[{"product":"p1","quantity":2}]'),
        ({"a": [1, 2.5, None, True]}, '{"a":[1,2.5,null,true]}'),
        ([], "[]"),
        ("x", '"x"'),
        (3, "3"),
    ],
)
def test_json_fields_are_canonical_json(raw, expected):
    value, report, _ = typed(SUBSCRIPTIONS, "components", raw)
    assert value == expected
    assert report.warnings == 0


def test_extra_data_json_in_a_string_is_parsed_to_canonical_json():
    raw = '{ "gift" : true,  "note": "hi \\u00e9",\n "n": [1, 2] }'
    value, report, table = typed(ORDERS, "extra_data", raw)
    assert value == '{"gift":true,"note":"hi é","n":[1,2]}'
    assert orjson.loads(value) == {"gift": True, "note": "hi é", "n": [1, 2]}
    assert report.warnings == 0
    assert orjson.loads(table.column(RAW)[0].as_py())["extra_data"] == raw


def test_extra_data_already_an_object_is_dumped():
    value, report, _ = typed(ORDERS, "extra_data", {"gift": True})
    assert value == '{"gift":true}'
    assert report.warnings == 0


@pytest.mark.parametrize("bad", ["{not json", "{'a': 1}", '{"a": 1', "NaN"])
def test_bad_json_text_is_null_and_warned(bad):
    value, report, _ = typed(ORDERS, "extra_data", bad)
    assert value is None
    assert dict(report.unparsed) == {"extra_data": 1}


# -- text -------------------------------------------------------------------------------------


def test_text_kept_as_given():
    value, report, _ = typed(ORDERS, "rejected_message", "Card declined: try again")
    assert value == "Card declined: try again"
    assert report.warnings == 0


@pytest.mark.parametrize(("raw", "expected"), [(123, "123"), ({"a": 1}, '{"a":1}'), (True, "true")])
def test_non_string_text_is_json(raw, expected):
    value, report, _ = typed(ORDERS, "customer", raw)
    assert value == expected
    assert report.warnings == 0


def test_four_byte_unicode_survives():
    text = "Zoë 😀 𝄞 𠜎 \u200d"
    value, _, table = typed(ORDERS, "rejected_message", text)
    assert value == text
    assert orjson.loads(table.column(RAW)[0].as_py())["rejected_message"] == text
    value, _, _ = typed(ORDERS, "extra_data", orjson.dumps({"e": text}).decode())
    assert orjson.loads(value) == {"e": text}


def test_very_long_strings_survive():
    text = "𝄞x" * 500_000
    value, _, table = typed(ORDERS, "rejected_message", text)
    assert value == text
    assert orjson.loads(table.column(RAW)[0].as_py())["rejected_message"] == text


# -- _raw, keys, unknown fields ---------------------------------------------------------------


def test_raw_is_the_record_as_received():
    rec = record(ORDERS, total="undefined", created="2017-02-29 00:00:00", surprise={"x": [1]})
    table, _ = type_records(ORDERS, [rec], CHICAGO)
    assert orjson.loads(table.column(RAW)[0].as_py()) == rec
    assert table.column(RAW)[0].as_py() == orjson.dumps(rec).decode()


def test_unknown_fields_reported():
    recs = [record(ORDERS, surprise=1), record(ORDERS, other=None, status=5)]
    _, report = type_records(ORDERS, recs, CHICAGO)
    assert report.unknown_fields == {"surprise", "other"}
    assert report.warnings == 0


def test_report_merge():
    a = TypingReport()
    a.unparsed["x"] += 1
    a.unknown_fields.add("u")
    b = TypingReport()
    b.unparsed["x"] += 2
    b.unparsed["y"] += 1
    b.unknown_fields.add("v")
    a.merge(b)
    assert dict(a.unparsed) == {"x": 3, "y": 1}
    assert a.unknown_fields == {"u", "v"}
    assert a.warnings == 4


@pytest.mark.parametrize("key", [None, "", "null", "undefined", " ", {"id": 1}, ["x"]])
def test_record_without_key_raises(key):
    with pytest.raises(MissingKey):
        type_records(ORDERS, [record(ORDERS), {"public_id": key}], CHICAGO)
    with pytest.raises(MissingKey):
        type_records(ORDERS, [{"status": 5}], CHICAGO)


def test_customers_key_is_merchant_user_id():
    table, _ = type_records(CUSTOMERS, [{"merchant_user_id": "cust-1"}], CHICAGO)
    assert table.column("merchant_user_id").to_pylist() == ["cust-1"]
    with pytest.raises(MissingKey):
        type_records(CUSTOMERS, [{"public_id": "a" * 32}], CHICAGO)


@pytest.mark.parametrize("bad", [["a"], "a", 1, None])
def test_non_object_record_raises(bad):
    with pytest.raises(MissingKey):
        type_records(ORDERS, [record(ORDERS), bad], CHICAGO)


@pytest.mark.parametrize("key", [42, 4.2, True])
def test_a_key_that_is_not_text_is_set_aside_not_merged_with_its_text(key):
    table, report = type_records(ORDERS, [{"public_id": str(key)}, {"public_id": key}], CHICAGO)
    assert table.column("public_id").to_pylist() == [str(key)]
    (rejected,) = report.rejected
    assert (rejected.source, rejected.item_id) == ("orders", repr(key))
    assert "not text" in rejected.reason
    assert orjson.loads(rejected.payload) == {"public_id": key}
    assert report.rejected_count == 1 and report.warnings == 1


def test_a_record_over_the_size_limit_is_set_aside_whole():
    big = {"public_id": "big", "extra_data": "x" * 5000}
    table, report = type_records(
        ORDERS, [{"public_id": "small"}, big], CHICAGO, max_record_bytes=4096
    )
    assert table.column("public_id").to_pylist() == ["small"]
    (rejected,) = report.rejected
    assert rejected.item_id == "big" and "max_record_bytes" in rejected.reason
    assert orjson.loads(rejected.payload) == big


# -- any JSON, anywhere -----------------------------------------------------------------------

TRICKY_STRINGS = [
    "",
    " ",
    "null",
    "None",
    "undefined",
    "True",
    "false",
    "0",
    "-1",
    "--5",
    "²",
    "1e5",
    " 12.50 ",
    "12.5\n",
    "-0.000000001",
    "9223372036854775808",
    "2017-02-29 00:00:00",
    "2026-11-01 01:30:00",
    "2026-03-08 02:30:00",
    "2026-01-01T00:00:00+05:30",
    "2026-01-01",
    '{"a": 1}',
    "[1, 2",
    "😀",
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(TRICKY_STRINGS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=10,
)


def _is_missing(key: Any) -> bool:
    if key is None or isinstance(key, (dict, list)):
        return True
    return isinstance(key, str) and key.strip() in {"", "null", "None", "undefined"}


@st.composite
def batches(draw):
    ep = draw(st.sampled_from(ENDPOINTS))
    names = [*ep.field_names, "surprise"]
    records = draw(
        st.lists(
            st.dictionaries(st.sampled_from(names), json_values, max_size=len(names)),
            min_size=1,
            max_size=5,
        )
    )
    return ep, records


@settings(max_examples=150, deadline=None)
@given(batch=batches())
def test_any_json_in_any_field_never_raises_and_raw_round_trips(batch):
    ep, records = batch
    # Records as the client sees them: what orjson parses from the page.
    records = [orjson.loads(orjson.dumps(r)) for r in records]
    if any(_is_missing(r.get(ep.key)) for r in records):
        with pytest.raises(MissingKey):
            type_records(ep, records, CHICAGO)
        return
    table, report = type_records(ep, records, CHICAGO)
    loaded = [r for r in records if isinstance(r[ep.key], str)]  # other keys are set aside
    assert table.num_rows == len(loaded)
    assert [orjson.loads(r.payload) for r in report.rejected] == [
        r for r in records if not isinstance(r[ep.key], str)
    ]
    assert table.schema == arrow_schema(ep)
    assert [orjson.loads(raw) for raw in table.column(RAW).to_pylist()] == loaded
    assert report.unknown_fields <= {"surprise"}
    assert set(report.unparsed) <= set(ep.field_names)


@settings(max_examples=300, deadline=None)
@given(
    ep=st.sampled_from(ENDPOINTS),
    field_index=st.integers(min_value=0, max_value=30),
    value=json_values,
)
def test_any_json_value_in_one_field_never_raises(ep, field_index, value):
    field = ep.fields[field_index % len(ep.fields)]
    rec = {ep.key: "k", field.name: value}
    value = orjson.loads(orjson.dumps(value))
    if field.name == ep.key and _is_missing(value):
        with pytest.raises(MissingKey):
            type_records(ep, [rec], CHICAGO)
        return
    table, report = type_records(ep, [rec], CHICAGO)
    if field.name == ep.key and not isinstance(value, str):
        assert table.num_rows == 0 and len(report.rejected) == 1
        return
    assert orjson.loads(table.column(RAW)[0].as_py()) == rec
    typed_value = table.column(field.column)[0].as_py()
    if typed_value is None and not _is_missing(value) and field.type != FieldType.TEXT:
        assert report.unparsed[field.name] == 1


TEXTISH = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "2024-05-01 10:00:00",
            "2024-03-10 02:30:00",
            "2024-11-03 01:30:00",
            "2024-05-01T10:00:00.250",
            "2024-05-01 10:00:00+02:00",
            "2017-02-29 10:00:00",
            " 12.50 ",
            "-0.000000001",
            "1e5",
            "12345678901234567890123456789012.5",
            *NULL_WORDS,
        ]
    ),
    st.text(max_size=12),
)


@settings(max_examples=100, deadline=None)
@given(
    ep=st.sampled_from([ORDERS, SUBSCRIPTIONS, ITEMS, CUSTOMERS]),
    rows=st.lists(st.lists(TEXTISH, min_size=40, max_size=40), min_size=1, max_size=6),
)
def test_text_fields_typed_together_agree_with_typing_them_one_by_one(ep, rows):
    """A batch whose text-valued fields hold only text has them read out as one Arrow struct;
    one value that is not text sends every column down the per-field path. Both must type the
    same rows alike, warnings included."""
    text_fields = [
        f
        for f in ep.fields
        if f.type in (FieldType.TEXT, FieldType.TIMESTAMP, FieldType.DECIMAL) and f.name != ep.key
    ]
    records = [
        {ep.key: f"k{i}", **{f.name: v for f, v in zip(text_fields, row, strict=False)}}
        for i, row in enumerate(rows)
    ]
    together, together_report = type_records(ep, records, CHICAGO)
    poisoned = {ep.key: "poison", text_fields[0].name: 12}  # a number in a text-valued field
    one_by_one, one_by_one_report = type_records(ep, [*records, poisoned], CHICAGO)
    assert one_by_one.slice(0, len(records)).equals(together)
    if text_fields[0].type == FieldType.TEXT:  # a number in a text column is JSON, not a warning
        assert one_by_one_report.unparsed == together_report.unparsed
