"""The data dictionary in the warehouse: every table, view and column ogsync writes is
described (and, where the warehouse keeps comments, commented); the `codes` table holds the
documented codes; columns added to the endpoint table reach an existing warehouse."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ogsync import dictionary
from ogsync.destinations import kind_of
from ogsync.dictionary import CODES, CODES_TABLE
from ogsync.endpoints import BY_NAME, ENDPOINTS
from ogsync.governance import FieldRules, Governance

from .history_support import advance, merchant, run

KEY = b"dictionary-test-key"
RULES = Governance(
    history=frozenset({"subscriptions", "orders", "items", "offer_profiles"}),
    rules={"customers": FieldRules(exclude=frozenset({"phone_number"}), hash=frozenset({"email"}))},
    hash_key=KEY,
)
START = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)


def comments(wh: Any) -> dict[tuple[str, str | None], str]:
    """Every comment of the schema, by (relation, column or None), read as an analyst would
    (names in lower case: Snowflake answers in upper case)."""
    if wh.backend == "duckdb":
        where = "WHERE schema_name = ?"
        rows = wh.rows(
            f"SELECT table_name AS r, NULL AS c, comment AS t FROM duckdb_tables() {where} "
            f"UNION ALL SELECT view_name, NULL, comment FROM duckdb_views() {where} "
            f"UNION ALL SELECT table_name, column_name, comment FROM duckdb_columns() {where}",
            [wh.schema] * 3,
        )
    elif wh.backend == "snowflake":
        where = "WHERE upper(table_schema) = upper(?)"
        rows = wh.rows(
            f"SELECT table_name AS r, NULL AS c, comment AS t FROM information_schema.tables "
            f"{where} UNION ALL SELECT table_name, NULL, comment FROM information_schema.views "
            f"{where} UNION ALL SELECT table_name, column_name, comment "
            f"FROM information_schema.columns {where}",
            [wh.schema] * 3,
        )
    else:
        rows = wh.rows(
            "SELECT c.relname AS r, a.attname AS c, d.description AS t FROM pg_description d "
            "JOIN pg_class c ON c.oid = d.objoid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid "
            "WHERE d.classoid = 'pg_class'::regclass AND n.nspname = ?",
            [wh.schema],
        )
    return {(r["r"].lower(), r["c"] and r["c"].lower()): r["t"] for r in rows if r["t"]}


def columns(wh: Any) -> dict[str, list[str]]:
    """Each table's and view's columns (in lower case: Snowflake answers in upper case)."""
    rows = wh.rows(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE upper(table_schema) = upper(?)",
        [wh.schema],
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["table_name"].lower(), []).append(r["column_name"].lower())
    return out


def test_every_table_and_column_of_a_synced_warehouse_is_described_and_commented(wh, tmp_path):
    with merchant(tmp_path, START) as (sim, inbox):
        run(sim, wh.open_dest(), inbox, RULES)
        advance(sim, minutes=60, changes=300)  # webhooks: events and deletions
        run(sim, wh.open_dest(), inbox, RULES)
    relations = wh.relations()
    own = kind_of(wh.url).own_tables  # the inbox (here in SQLite) or leases, where written
    written = {d.name for d in dictionary.tables(RULES, also=[t for t in own if t in relations])}
    assert set(relations) == written  # the dictionary lists exactly what a sync writes
    assert wh.count("events") and wh.count("_ogsync_deletions")
    stored = comments(wh)
    in_warehouse = columns(wh)
    for name in relations:
        doc = dictionary.table(name, RULES)
        assert doc.description, name
        assert stored.get((name, None)) == doc.description, name
        described = {c.name: c for c in doc.columns}
        assert set(in_warehouse[name]) == set(described), name
        for column in in_warehouse[name]:
            text = described[column].description
            assert text.strip(), f"{name}.{column}"
            if name.endswith("_live"):  # the deprecated alias: its note names the view to use
                assert (name, column) not in stored
                continue
            assert stored.get((name, column)) == text, f"{name}.{column}"
    # The field rules show: a left-out field is in no table, a hashed one says so.
    assert "phone_number" not in in_warehouse["customers"]
    email = {c.name: c for c in dictionary.table("customers", RULES).columns}["email"]
    assert "HMAC-SHA-256" in email.description and email.type == "text"
    status = stored[("orders", "status")]
    assert "1 = unsent" in status and "5 = success" in status
    # The README's decoding join: every status the simulator serves is a documented code.
    decoded = wh.rows(
        "SELECT o.public_id, o.status, c.label AS status_label FROM {s}.orders AS o "
        "LEFT JOIN {s}.codes AS c ON c.endpoint = 'orders' AND c.field = 'status' "
        "AND c.code = CAST(o.status AS VARCHAR)"
    )
    assert decoded and all(r["status_label"] for r in decoded)
    assert {r["status_label"] for r in decoded} >= {"unsent", "success"}


def test_a_second_prepare_changes_no_comment(wh):
    endpoints = RULES.endpoints(ENDPOINTS)
    wh.open_dest().prepare(endpoints)
    before = comments(wh)
    assert before[("orders", None)] == dictionary.table("orders", RULES).description
    assert before[("orders_current", "status")] == before[("orders", "status")]
    dest = wh.open_dest()
    dest.prepare(endpoints)
    from ogsync.destinations import sql_dictionary

    with dest.transaction():
        assert sql_dictionary.comment(dest, endpoints) == 0
    assert comments(wh) == before


def test_the_codes_table_holds_the_documented_codes_and_follows_the_list(wh):
    dest = wh.open_dest()
    dest.prepare(ENDPOINTS)
    expected = sorted((c.endpoint, c.field, c.code, c.label, c.description) for c in CODES)

    def stored() -> list[tuple[str, ...]]:
        rows = wh.rows(f"SELECT * FROM {{s}}.{CODES_TABLE}")
        return sorted((r["endpoint"], r["field"], r["code"], r["label"], r["description"])
                      for r in rows)  # fmt: skip

    assert stored() == expected
    assert wh.column_types(CODES_TABLE) == dict.fromkeys(
        ("endpoint", "field", "code", "label", "description"), "text"
    )
    # A list that changed (here: a code gone, a stale one left) is replaced by the next prepare.
    dest = wh.open_dest()
    with dest.transaction():
        dest.execute(f"DELETE FROM {dest.s}.{CODES_TABLE} WHERE code = '5'")
        dest.execute(
            f"INSERT INTO {dest.s}.{CODES_TABLE} VALUES ('orders', 'status', '99', 'old', '')"
        )
    dest.prepare(ENDPOINTS)
    assert stored() == expected
    # Decoding is a join.
    labels = wh.rows(
        f"SELECT label FROM {{s}}.{CODES_TABLE} WHERE endpoint = 'orders' AND field = 'status' "
        "AND code = CAST(? AS VARCHAR)",
        [5],
    )
    assert labels == [{"label": "success"}]


def test_fields_added_to_the_endpoint_table_reach_an_existing_warehouse(wh):
    """A warehouse made before the dictionary's fields existed: the next prepare adds them,
    to the table, its view and its history, and comments them."""
    new = {"raw_subscription_type", "external_id", "prepaid_subscription_context", "club"}
    subs = BY_NAME["subscriptions"]
    old = replace(subs, fields=tuple(f for f in subs.fields if f.name not in new), history=True)
    wh.open_dest().prepare([old])
    assert not new & set(columns(wh)["subscriptions"])
    current = replace(subs, history=True)
    wh.open_dest().prepare([current])
    in_warehouse = columns(wh)
    stored = comments(wh)
    types = wh.column_types("subscriptions")
    assert types["prepaid_subscription_context"] == "json"
    for table in (
        "subscriptions",
        "subscriptions_current",
        "subscriptions_live",
        "subscriptions_history",
    ):
        assert new <= set(in_warehouse[table]), table
        described = {c.name: c.description for c in dictionary.table(table).columns}
        for name in new:
            assert subs.field_named(name).description in described[name]
            if not table.endswith("_live"):
                assert stored[(table, name)] == described[name], (table, name)
