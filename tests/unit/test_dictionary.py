"""The data dictionary: which tables a set of settings writes, a description for every column,
the documented codes."""

from __future__ import annotations

import pytest

from ogsync import dictionary
from ogsync.dictionary import CODES, CODES_TABLE, ColumnDoc, TableDoc, labels, table, tables
from ogsync.endpoints import BY_NAME, ENDPOINTS, FieldType
from ogsync.governance import DEFAULT_HISTORY, NONE, FieldRules, Governance

BOOKKEEPING = (
    "_ogsync_runs",
    "_ogsync_state",
    "_ogsync_deletions",
    "_ogsync_backfill",
    "_ogsync_rejected",
    "_ogsync_rules",
    "events",
    CODES_TABLE,
)
LOGICAL_TYPES = {"text", "timestamp", "date", "decimal", "integer", "boolean", "json"}
EVERYTHING = Governance(history=frozenset(BY_NAME))


def test_tables_without_settings_are_the_endpoints_their_views_and_the_bookkeeping():
    names = [t.name for t in tables()]
    endpoint_tables = [
        n for ep in ENDPOINTS for n in (ep.name, f"{ep.name}_current", f"{ep.name}_live")
    ]
    assert names == [*endpoint_tables, *BOOKKEEPING]
    assert tables(NONE) == tables()


def test_history_tables_follow_the_settings():
    names = {t.name for t in tables(Governance(history=frozenset(DEFAULT_HISTORY)))}
    assert {n for n in names if n.endswith("_history")} == {f"{n}_history" for n in DEFAULT_HISTORY}
    # One table is found by name whether or not the settings keep its history.
    assert table("payments_history").key == ("public_id", "_version_hash")
    assert "_ogsync_inbox" not in {t.name for t in tables()}
    assert "_ogsync_inbox" in {t.name for t in tables(also=["_ogsync_inbox"])}
    assert table("_ogsync_leases").columns[0].name == "name"
    with pytest.raises(KeyError):
        table("no_such_table")


def test_every_column_of_every_table_is_described():
    for doc in tables(EVERYTHING, also=dictionary.WAREHOUSE_TABLES):
        assert isinstance(doc, TableDoc) and doc.description.strip(), doc.name
        names = [c.name for c in doc.columns]
        assert len(names) == len(set(names)), doc.name
        assert set(doc.key) <= set(names), doc.name
        for column in doc.columns:
            assert isinstance(column, ColumnDoc)
            where = f"{doc.name}.{column.name}"
            assert column.type in LOGICAL_TYPES, where
            assert len(column.description) >= 10, where
            # Written into COMMENT statements, where `?` would read as a placeholder.
            assert "?" not in column.description and "\n" not in column.description, where
        assert "?" not in doc.description


def test_endpoint_tables_describe_the_fields_then_the_metadata():
    for ep in ENDPOINTS:
        doc = table(ep.name)
        assert doc.key == (ep.column_key,)
        columns = {c.name: c for c in doc.columns}
        for f in ep.fields:
            assert columns[f.column].description.startswith(f.description)
            expected = "json" if f.type == FieldType.JSON_TEXT else str(f.type)
            assert columns[f.column].type == expected
        meta = [c.name for c in doc.columns][len(ep.fields) :]
        assert meta == [
            "_raw", "_updated_latest", "_synced_at", "_run_id", "_deleted_at", "_deleted_reason"
        ]  # fmt: skip
        assert table(f"{ep.name}_current").columns == doc.columns
        alias = table(f"{ep.name}_live")  # the deprecated name of the view, until 0.2
        assert alias.columns == doc.columns and alias.description.startswith("Deprecated: use ")
    history = [c.name for c in table("orders_history").columns][len(BY_NAME["orders"].fields) :]
    assert history == [
        "_raw", "_valid_from", "_valid_to", "_is_current", "_closed_reason", "_version_hash",
        "_updated_latest", "_synced_at", "_run_id",
    ]  # fmt: skip
    assert table("items").columns[1].name == "order_id"  # the API's `order`


def test_field_rules_leave_columns_out_and_describe_hashed_ones():
    rules = Governance(
        rules={
            "customers": FieldRules(exclude=frozenset({"phone_number"}), hash=frozenset({"email"}))
        },
        hash_key=b"k",
    )
    columns = {c.name: c for c in table("customers", rules).columns}
    assert "phone_number" not in columns
    assert columns["email"].type == "text" and "HMAC-SHA-256" in columns["email"].description
    assert "phone_number" in {c.name for c in table("customers").columns}


def test_codes_are_unique_and_name_real_columns():
    keys = [(c.endpoint, c.field, c.code) for c in CODES]
    assert len(keys) == len(set(keys))
    for code in CODES:
        ep = BY_NAME[code.endpoint]
        field = next(f for f in ep.fields if f.column == code.field)
        if field.type == FieldType.INTEGER:
            assert code.code.isdigit(), code
        assert code.label and "?" not in code.label + code.description


def test_the_documented_codes():
    assert labels("orders", "status") == {
        "1": "unsent", "3": "rejected", "4": "cancelled", "5": "success", "6": "send now",
        "9": "pending batch", "10": "pending verification", "11": "pending placement",
        "12": "preparation error", "13": "connection error", "14": "response error",
        "15": "generic error", "17": "merged", "18": "credit card retry",
        "19": "awaiting retry instructions", "20": "awaiting classification",
    }  # fmt: skip
    assert labels("subscriptions", "every_period") == {"1": "days", "2": "weeks", "3": "months"}
    assert labels("customers", "phone_type") == {
        "0": "invalid", "1": "landline", "2": "mobile", "3": "VoIP"
    }  # fmt: skip
    assert labels("payments", "cc_type")["3"] == "American Express"
    assert labels("orders", "type") == {"1": "subscription"}
    assert labels("orders", "nothing") == {}
    coded = {(c.endpoint, c.field) for c in CODES}
    assert coded == {
        ("orders", "status"), ("orders", "type"), ("subscriptions", "every_period"),
        ("subscriptions", "raw_subscription_type"), ("customers", "phone_type"),
        ("payments", "cc_type"), ("payments", "payment_method"), ("products", "every_period"),
        ("products", "product_type"), ("offer_profiles", "status"),
    }  # fmt: skip
    # A coded column's description lists its codes.
    status = {c.name: c for c in table("orders").columns}["status"].description
    assert "Codes (table codes): 1 = unsent, 3 = rejected" in status


def test_the_codes_table_is_described_as_the_dbt_package_reads_it():
    doc = table(CODES_TABLE)
    assert [(c.name, c.type) for c in doc.columns] == [
        (n, "text") for n in ("endpoint", "field", "code", "label", "description")
    ]
    assert doc.key == ("endpoint", "field", "code")
    assert dictionary.CODES_TABLE == "codes"
