"""API records to typed Arrow batches: every documented field typed, the record kept in `_raw`.

Nothing here raises on a value: what does not parse becomes NULL in its typed column and a
counted warning, and the record as received is always kept whole in `_raw`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ogsync.destinations.base import Rejected
from ogsync.endpoints import Endpoint, FieldType

DECIMAL_TYPE = pa.decimal128(38, 9)
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
INT64_MAX = 2**63 - 1
NULL_WORDS = frozenset({"", "null", "None", "undefined"})
NULL_WORD_ARRAY = pa.array(sorted(NULL_WORDS), pa.string())
TRUE_WORDS = frozenset({"true", "True", "TRUE", "1"})
FALSE_WORDS = frozenset({"false", "False", "FALSE", "0"})
QUANTUM = Decimal(1).scaleb(-9)

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.TEXT: pa.string(),
    FieldType.TIMESTAMP: TIMESTAMP_TYPE,
    FieldType.DATE: pa.date32(),
    FieldType.DECIMAL: DECIMAL_TYPE,
    FieldType.INTEGER: pa.int64(),
    FieldType.BOOLEAN: pa.bool_(),
    FieldType.JSON: pa.string(),
    FieldType.JSON_TEXT: pa.string(),
}

# Metadata columns the loader adds to every batch before it reaches a destination.
RAW = "_raw"
SEQ = "_seq"  # arrival order inside the batch: the last fetched is the newest
# The latest instant the update time can mean: the update column itself, except for a wall
# time the API's zone repeats when clocks go back, whose second reading is an hour later.
# Upserts compare versions as intervals with it, so no reading of the hour loses an update.
UPDATED_LATEST = "_updated_latest"


class Unparsed(Exception):
    """A value that is present but cannot be read as its field's type."""


DECIMAL_PATTERN = r"^-?\d{1,29}(\.\d{1,9})?$"


def _null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in NULL_WORDS)


def _decimal_value(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Unparsed
    try:
        number = Decimal(str(value).strip()).quantize(QUANTUM)
    except InvalidOperation:
        raise Unparsed from None
    if not number.is_finite() or number.adjusted() >= 29:
        raise Unparsed
    return number


def _integer_value(value: Any) -> int:
    if isinstance(value, bool):
        raise Unparsed
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise Unparsed from None
    else:
        raise Unparsed
    if abs(number) > INT64_MAX:
        raise Unparsed
    return number


def _boolean_value(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() in TRUE_WORDS:
        return True
    if isinstance(value, str) and value.strip() in FALSE_WORDS:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Unparsed


def _date_value(value: Any) -> date:
    if not isinstance(value, str):
        raise Unparsed
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise Unparsed from None


def _text_value(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _json_value(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_text_value(value: Any) -> str:
    if not isinstance(value, str):
        return orjson.dumps(value).decode()
    try:
        return orjson.dumps(orjson.loads(value)).decode()
    except orjson.JSONDecodeError:
        raise Unparsed from None


# Offsets of whole days without a clock change, shared by every batch: (zone, day) -> offsets.
_DAY_OFFSETS: dict[tuple[str, str], tuple[int, int] | None] = {}


class _LocalTimes:
    """Naive API times to UTC, with the zone's offsets computed once per local hour.

    A wall time repeated when clocks go back reads as its first occurrence (fold=0), the
    same reading the API gives to a filter value; `latest` is its last possible reading.
    The common "YYYY-MM-DD HH:MM:SS" shape is parsed column-wise by Arrow; anything else
    (fractions, offsets) takes the per-value path.
    """

    FORMAT = "%Y-%m-%d %H:%M:%S"
    SHAPE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.offsets: dict[tuple[str, int], int] = {}

    def offset(self, hour: str, fold: int) -> int:
        """Microseconds the zone is ahead of UTC at "YYYY-MM-DD HH" local."""
        cached = self.offsets.get((hour, fold))
        if cached is None:
            on_the_hour = datetime.strptime(hour, "%Y-%m-%d %H").replace(fold=fold)
            delta = self.tz.utcoffset(on_the_hour)
            cached = int(delta.total_seconds()) * 1_000_000 if delta else 0
            self.offsets[(hour, fold)] = cached
        return cached

    def day_offsets(self, day: str) -> tuple[int, int] | None:
        """(first, latest) offsets for a whole local day, or None if clocks change that day."""
        key = (self.tz.key, day)
        if key not in _DAY_OFFSETS:
            hours = {
                (self.offset(f"{day} {h:02d}", 0), self.offset(f"{day} {h:02d}", 1))
                for h in (0, 23)
            }
            (first, second), *rest = hours
            _DAY_OFFSETS[key] = None if rest or first != second else (first, first)
        return _DAY_OFFSETS[key]

    def _offsets(self, text: pa.Array, parsed: pa.Array) -> tuple[pa.Array, pa.Array]:
        """Per row, the zone's offset for the first and for the latest reading."""
        days = pc.utf8_slice_codeunits(text, 0, 10)
        seen = pc.unique(pc.filter(days, pc.is_valid(parsed))).to_pylist()
        whole = {d: self.day_offsets(d) for d in seen}
        table = [whole[d] or (0, 0) for d in seen]
        where = pc.index_in(days, value_set=pa.array(seen, pa.string()))
        first = pc.take(pa.array([t[0] for t in table], pa.int64()), where)
        last = pc.take(pa.array([t[1] for t in table], pa.int64()), where)
        changing = [d for d in seen if whole[d] is None]
        if changing:  # the days clocks change: hour by hour
            hours = pc.utf8_slice_codeunits(text, 0, 13)
            on_those_days = pc.fill_null(pc.is_in(days, value_set=pa.array(changing)), False)
            wanted = pc.unique(pc.filter(hours, on_those_days)).to_pylist()
            at = pc.index_in(hours, value_set=pa.array(wanted, pa.string()))
            by_hour_first = [self.offset(h, 0) for h in wanted]
            by_hour_last = [min(self.offset(h, 0), self.offset(h, 1)) for h in wanted]
            first = pc.if_else(
                on_those_days, pc.take(pa.array(by_hour_first, pa.int64()), at), first
            )
            last = pc.if_else(on_those_days, pc.take(pa.array(by_hour_last, pa.int64()), at), last)
        return first, last

    def micros(self, value: Any, fold: int = 0) -> int:
        if not isinstance(value, str):
            raise Unparsed
        text = value.strip()
        try:
            local = datetime.fromisoformat(text)
        except ValueError:
            raise Unparsed from None
        if local.tzinfo is not None:
            return int(local.timestamp() * 1_000_000)
        naive = int(local.replace(tzinfo=UTC).timestamp() * 1_000_000)
        return naive - self.offset(local.strftime("%Y-%m-%d %H"), fold)

    def latest(self, value: Any) -> int:
        # max: in the hour skipped when clocks go forward, fold=1 reads an hour *earlier*.
        return max(self.micros(value, fold=0), self.micros(value, fold=1))

    def column(
        self,
        values: list[Any] | None,
        report: Counter[str],
        name: str,
        strings: pa.Array | None = None,
    ) -> tuple[pa.Array, pa.Array]:
        """(earliest, latest) UTC readings of a column of naive local times: `values`, or
        `strings` when they are already an Arrow column of text."""
        if strings is None:
            assert values is not None
            strings = _fast_array(values, pa.string())
        if strings is None:
            assert values is not None
            earliest = _convert(values, self.micros, report, name)
            latest = _convert(values, self.latest, Counter(), name)
            return _utc(pa.array(earliest, pa.int64())), _utc(pa.array(latest, pa.int64()))
        text = pc.replace_substring(pc.utf8_trim_whitespace(strings), "T", " ", max_replacements=1)
        simple = pc.fill_null(pc.match_substring_regex(text, self.SHAPE), False)
        shaped = pc.if_else(simple, text, pa.scalar(None, pa.string()))
        parsed = pc.strptime(shaped, format=self.FORMAT, unit="s", error_is_null=True)
        parsed = pc.if_else(_as_written(parsed, shaped), parsed, None)
        first, last = self._offsets(text, parsed)
        local = pc.multiply(parsed.cast(pa.int64()), 1_000_000)
        earliest = pc.subtract(local, first)
        latest = pc.subtract(local, last)
        odd_mask = pc.and_(pc.invert(simple), pc.is_valid(text))
        if pc.any(odd_mask).as_py():  # fractions, offsets, garbage: one at a time
            if values is None:
                values = strings.to_pylist()
            odd = odd_mask.to_pylist()
            earliest, latest = earliest.to_pylist(), latest.to_pylist()
            for i, value in enumerate(values):
                if odd[i] and not _null(value):
                    with contextlib.suppress(Unparsed):
                        earliest[i], latest[i] = self.micros(value), self.latest(value)
            earliest, latest = pa.array(earliest, pa.int64()), pa.array(latest, pa.int64())
        lost = _present(text) - (len(earliest) - earliest.null_count)
        if lost:
            report[name] += lost
        return _utc(earliest), _utc(latest)


def _as_written(parsed: pa.Array, shaped: pa.Array) -> pa.Array:
    """Whether each parsed time is the one its "YYYY-MM-DD HH:MM:SS" text says. strptime
    rolls a day past the month's end over (2017-02-29 to 03-01) and a 60th or 61st second
    into the next minute; it refuses any other field out of range. So a time whose day and
    second are its text's would print back as that text, without printing each time again
    (which cost most of typing a time: bench/type_records.py)."""
    day = pc.cast(pc.utf8_slice_codeunits(shaped, 8, 10), pa.int64())
    second = pc.cast(pc.utf8_slice_codeunits(shaped, 17, 19), pa.int64())
    return pc.and_(pc.equal(pc.day(parsed), day), pc.equal(pc.second(parsed), second))


def _utc(micros: pa.Array) -> pa.Array:
    return micros.cast(TIMESTAMP_TYPE)


def _convert(values: list[Any], convert: Callable[[Any], Any], report: Counter[str], name: str):
    out: list[Any] = []
    for value in values:
        if _null(value):
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except Unparsed:
            out.append(None)
            report[name] += 1
    return out


def _present(trimmed: pa.Array) -> int:
    """Values in a trimmed string column that are not null or a word for null."""
    null_words = pc.sum(pc.is_in(trimmed, value_set=NULL_WORD_ARRAY)).as_py() or 0
    return len(trimmed) - trimmed.null_count - null_words


def _fast_array(values: list[Any], kind: pa.DataType | None) -> pa.Array | None:
    """The column straight through Arrow's C++ conversion, or None if any value needs care."""
    try:
        return pa.array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _column(
    kind: FieldType,
    values: list[Any] | None,
    times: _LocalTimes,
    report: Counter[str],
    name: str,
    strings: pa.Array | None = None,
) -> pa.Array:
    """A typed column from `values`, or from `strings` (text and decimals, when every value
    is already in an Arrow column of text; times go through `_LocalTimes.column`)."""
    if strings is not None and kind in (FieldType.TEXT, FieldType.DECIMAL):
        return strings if kind == FieldType.TEXT else _decimal_column(strings, report, name)
    assert values is not None
    arrow_type = ARROW_TYPES[kind]
    if kind == FieldType.TEXT:
        fast = _fast_array(values, arrow_type)
        return (
            fast
            if fast is not None
            else pa.array([None if v is None else _text_value(v) for v in values], arrow_type)
        )
    if kind in (FieldType.INTEGER, FieldType.BOOLEAN):
        # Arrow infers the column's type; only a column that is already all ints (or all
        # bools) takes the fast path, since a forced cast would truncate 5.5 to 5.
        fast = _fast_array(values, None)
        if fast is not None and fast.type in (arrow_type, pa.null()):
            return fast.cast(arrow_type)
        convert = _integer_value if kind == FieldType.INTEGER else _boolean_value
        return pa.array(_convert(values, convert, report, name), arrow_type)
    if kind == FieldType.DECIMAL:
        strings = _fast_array(values, pa.string())
        if strings is None:
            return pa.array(_convert(values, _decimal_value, report, name), arrow_type)
        return _decimal_column(strings, report, name)
    if kind == FieldType.TIMESTAMP:
        return times.column(values, report, name)[0]
    convert = {
        FieldType.DATE: _date_value,
        FieldType.JSON: _json_value,
        FieldType.JSON_TEXT: _json_text_value,
    }[kind]
    return pa.array(_convert(values, convert, report, name), arrow_type)


def _decimal_column(strings: pa.Array, report: Counter[str], name: str) -> pa.Array:
    strings = pc.utf8_trim_whitespace(strings)
    valid = pc.match_substring_regex(strings, DECIMAL_PATTERN)
    typed = pc.cast(pc.if_else(valid, strings, pa.scalar(None, pa.string())), DECIMAL_TYPE)
    lost = _present(strings) - (len(typed) - typed.null_count)
    if lost:
        report[name] += lost
    return typed


# The types whose values the API sends as JSON text; their columns are read out of a batch's
# records together, as one Arrow struct, when every value is text (or missing, or null).
FROM_TEXT = frozenset({FieldType.TEXT, FieldType.TIMESTAMP, FieldType.DECIMAL})


def _text_columns(ep: Endpoint, records: list[dict[str, Any]]) -> dict[str, pa.Array]:
    """The endpoint's text-valued fields as Arrow columns, by name, converted in one pass of
    Arrow's own over the records instead of a Python list per field; {} if any value is not
    text, which leaves every column to be read one by one."""
    names = [f.name for f in ep.fields if f.type in FROM_TEXT]
    if not names or not records:
        return {}
    kind = pa.struct([pa.field(n, pa.string()) for n in names])
    try:
        struct = pa.array(records, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return {}
    return dict(zip(names, struct.flatten(), strict=True))


@dataclass
class TypingReport:
    """What typing found in a batch: unparsed values per field, and fields not in the table."""

    unparsed: Counter[str] = field(default_factory=Counter)
    unknown_fields: set[str] = field(default_factory=set)
    # Records set aside instead of loaded: this batch's, whole, and how many in all.
    rejected: list[Rejected] = field(default_factory=list)
    rejected_count: int = 0

    @property
    def warnings(self) -> int:
        return sum(self.unparsed.values()) + self.rejected_count

    def merge(self, other: TypingReport) -> None:
        """Add up the counts (the rejected records themselves go with their own batch)."""
        self.unparsed.update(other.unparsed)
        self.unknown_fields |= other.unknown_fields
        self.rejected_count += other.rejected_count


class MissingKey(ValueError):
    """A record without its primary key cannot be stored: the page is malformed."""


def arrow_schema(ep: Endpoint) -> pa.Schema:
    columns = [pa.field(f.column, ARROW_TYPES[f.type]) for f in ep.fields]
    return pa.schema(
        [
            *columns,
            pa.field(RAW, pa.string()),
            pa.field(SEQ, pa.int64()),
            pa.field(UPDATED_LATEST, TIMESTAMP_TYPE),
        ]
    )


def type_records(
    ep: Endpoint,
    records: Sequence[Any],
    tz: ZoneInfo,
    first_seq: int = 0,
    max_record_bytes: int | None = None,
) -> tuple[pa.Table, TypingReport]:
    """Typed columns for `records`, in order; `_seq` numbers them from `first_seq`.

    A record whose key is not text (a number, say, which would otherwise merge with the text
    of the same digits), or whose JSON is over `max_record_bytes`, is not loaded: it is set
    aside whole in `report.rejected`. A record with no key at all makes the page malformed.
    """
    report = TypingReport()
    known = set(ep.field_names)
    kept: list[dict[str, Any]] = []
    raws: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            raise MissingKey(f"{ep.name}: a record is not a JSON object")
        key = record.get(ep.key)
        if _null(key) or isinstance(key, (dict, list)):
            raise MissingKey(f"{ep.name}: a record has no {ep.key}")
        raw = orjson.dumps(record).decode()
        why = None
        if not isinstance(key, str):
            why = f"{ep.key} is a {type(key).__name__}, not text"
        elif max_record_bytes is not None and len(raw) > max_record_bytes:
            why = f"{len(raw):,} bytes, over max_record_bytes ({max_record_bytes:,})"
        if why is not None:
            item = key if isinstance(key, str) else repr(key)
            report.rejected.append(Rejected(ep.name, item[:200], why, raw))
            report.rejected_count += 1
            continue
        kept.append(record)
        raws.append(raw)
        if len(record) != len(known) or record.keys() != known:
            report.unknown_fields |= record.keys() - known
    times = _LocalTimes(tz)
    arrays: list[pa.Array] = []
    latest = pa.nulls(len(kept), TIMESTAMP_TYPE)
    as_text = _text_columns(ep, kept)
    for f in ep.fields:
        strings = as_text.get(f.name)
        values = None if strings is not None else [r.get(f.name) for r in kept]
        if f.type == FieldType.TIMESTAMP:
            earliest, last = times.column(values, report.unparsed, f.name, strings)
            arrays.append(earliest)
            if f.name == ep.update_field:
                latest = last
        else:
            arrays.append(_column(f.type, values, times, report.unparsed, f.name, strings))
    arrays.append(pa.array(raws, pa.string()))
    arrays.append(pa.array(range(first_seq, first_seq + len(kept)), pa.int64()))
    arrays.append(latest)
    return pa.Table.from_arrays(arrays, schema=arrow_schema(ep)), report
