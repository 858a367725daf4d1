"""SCAFFOLDING until part A of issue 18 (the data dictionary) lands; delete this file then.

Part A gives `ogsync.dictionary.tables()` (every table ogsync writes, every column described)
and makes the warehouse create the `codes` table. Until it does, the dbt tests stand in for
both here, minimally:
- `tables()`: each table the dbt package reads, with the columns the warehouse has and a
  placeholder description (the real ones come from the endpoint table);
- `create_codes_table()`: the `codes` table filled from `ogsync.dictionary.CODES`.

`install()` puts `tables` on `ogsync.dictionary` only while the real one is missing, and
`ensure_codes_table()` creates the table only while the warehouse has not: once part A is
merged, both do nothing, and this file and its callers (conftest.py, and the one line in
`python tests/analytics/dictionary_scaffold.py`) can go.

    .venv/bin/python tests/analytics/dictionary_scaffold.py   # `make dbt-package`, until then
"""

from __future__ import annotations

from typing import Any

import duckdb
import psycopg

from ogsync import dictionary
from ogsync.destinations.base import META_COLUMNS
from ogsync.destinations.sql_history import HISTORY_COLUMNS
from ogsync.dictionary import CODES, CODES_TABLE, ColumnDoc, TableDoc
from ogsync.endpoints import ENDPOINTS
from ogsync.governance import NONE, Governance

_META_TYPES = {
    "_raw": "json",
    "_updated_latest": "timestamp",
    "_synced_at": "timestamp",
    "_run_id": "text",
    "_deleted_at": "timestamp",
    "_deleted_reason": "text",
}
_HISTORY_TYPES = {"TIMESTAMPTZ": "timestamp", "BOOLEAN": "boolean", "VARCHAR": "text"}


def _placeholder(name: str) -> str:
    return f"The `{name}` column (described once the data dictionary lands)."


def tables(governance: Governance = NONE) -> list[TableDoc]:
    """A minimal stand-in for part A's `ogsync.dictionary.tables`."""
    out = []
    for plain in ENDPOINTS:
        ep = governance.endpoint(plain)
        fields = [ColumnDoc(f.column, f.type.value, _placeholder(f.column)) for f in ep.fields]
        meta = [ColumnDoc(name, _META_TYPES[name], _placeholder(name)) for name in META_COLUMNS]
        out.append(
            TableDoc(ep.name, f"One row per {ep.name} record.", (*fields, *meta), (ep.column_key,))
        )
        if ep.history:
            history = [
                ColumnDoc(name, _HISTORY_TYPES[kind], _placeholder(name))
                for name, kind in HISTORY_COLUMNS
            ]
            out.append(
                TableDoc(
                    f"{ep.name}_history",
                    f"One row per version of a {ep.name} record.",
                    (*fields, ColumnDoc("_raw", "json", _placeholder("_raw")), *history),
                    (ep.column_key, "_version_hash"),
                )
            )

    def text(*names: str) -> tuple[ColumnDoc, ...]:
        return tuple(ColumnDoc(n, "text", _placeholder(n)) for n in names)

    out.append(
        TableDoc(
            "events",
            "One row per webhook event received.",
            (
                *text("event_id", "type"),
                ColumnDoc("created", "timestamp", _placeholder("created")),
                *text("object_type", "object_id"),
                ColumnDoc("payload", "json", _placeholder("payload")),
                ColumnDoc("stored_at", "timestamp", _placeholder("stored_at")),
            ),
            ("event_id",),
        )
    )
    out.append(
        TableDoc(
            "_ogsync_deletions",
            "One row per deletion ogsync learned of.",
            (
                *text("endpoint", "record_id"),
                ColumnDoc("deleted_at", "timestamp", _placeholder("deleted_at")),
                *text("reason", "source"),
                ColumnDoc("recorded_at", "timestamp", _placeholder("recorded_at")),
            ),
        )
    )
    out.append(
        TableDoc(
            CODES_TABLE,
            "One row per documented code of a coded column.",
            text("endpoint", "field", "code", "label", "description"),
            ("endpoint", "field", "code"),
        )
    )
    return out


def install() -> None:
    """Give `ogsync.dictionary` the stand-in `tables` while it has none of its own."""
    if not hasattr(dictionary, "tables"):
        dictionary.tables = tables  # type: ignore[attr-defined]


def _codes_sql(schema: str) -> tuple[str, str, list[tuple[str, ...]]]:
    create = (
        f'CREATE TABLE IF NOT EXISTS "{schema}".{CODES_TABLE} (endpoint VARCHAR, '
        "field VARCHAR, code VARCHAR, label VARCHAR, description VARCHAR)"
    )
    rows = [(c.endpoint, c.field, c.code, c.label, c.description) for c in CODES]
    return create, f'INSERT INTO "{schema}".{CODES_TABLE} VALUES (?, ?, ?, ?, ?)', rows


def ensure_codes_table(url: str, schema: str) -> None:
    """Create and fill the `codes` table in the warehouse at `url`, unless it has one."""
    create, insert, rows = _codes_sql(schema)
    exists = (
        "SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = '{schema}' AND table_name = '{CODES_TABLE}'"
    )
    if url.startswith("duckdb:///"):
        with duckdb.connect(url.removeprefix("duckdb:///")) as conn:
            if not _scalar(conn.execute(exists).fetchone()):
                conn.execute(create)
                conn.executemany(insert, rows)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        if not _scalar(conn.execute(exists).fetchone()):
            conn.execute(create)
            with conn.cursor() as cursor:
                cursor.executemany(insert.replace("?", "%s"), rows)


def _scalar(row: Any) -> Any:
    return row[0] if row else None


if __name__ == "__main__":
    from ogsync.analytics.generate import main

    install()
    raise SystemExit(main())
