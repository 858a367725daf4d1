"""What a lakehouse warehouse needs of a table format, and the tables it keeps.

A lakehouse (Delta Lake, Iceberg) is a set of tables in one folder or namespace, each commit
to one table atomic and nothing spanning two. `ogsync.destinations.lakehouse` keeps every
promise of a warehouse on top of the few operations here; each format implements them with
its own library.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import timedelta
from typing import Protocol

import pyarrow as pa
import pyarrow.dataset as ds

from ogsync.destinations.base import (
    BACKFILL_TABLE,
    DELETIONS_TABLE,
    EVENTS_TABLE,
    REJECTED_TABLE,
    RUNS_TABLE,
    STATE_TABLE,
)
from ogsync.endpoints import ENDPOINTS, Endpoint
from ogsync.records import ARROW_TYPES, TIMESTAMP_TYPE

RULES_TABLE = "_ogsync_rules"
TEXT = pa.string()
BIGINT = pa.int64()


class DatasetCache:
    """Each table's dataset for the commit it was built at. Building one lists the commit's
    files, which costs more than most batches' own work; the loader asks for it at every
    batch, and a table changes only when one of them commits to it."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Hashable, ds.Dataset]] = {}

    def get(self, name: str, version: Hashable, build: Callable[[], ds.Dataset]) -> ds.Dataset:
        held = self._held.get(name)
        if held is not None and held[0] == version:
            return held[1]
        dataset = build()
        self._held[name] = (version, dataset)
        return dataset

    def clear(self) -> None:
        self._held.clear()


class TableStore(Protocol):
    """The tables of one schema in one lakehouse."""

    location: str  # where it is, as messages may show it (no secret)

    def tables(self) -> set[str]:
        """Which of `TABLE_NAMES` are there (looked up once, then kept up by `ensure`)."""
        ...

    def ensure(self, name: str, schema: pa.Schema) -> None:
        """Create the table, or add the columns of `schema` it lacks (as empty)."""
        ...

    def dataset(self, name: str) -> ds.Dataset:
        """The table as its latest commit left it, every column of it, to scan."""
        ...

    def append(self, name: str, rows: pa.Table) -> None: ...

    def replace(
        self, name: str, rows: pa.Table, keys: Sequence[str], predicate: str | None = None
    ) -> None:
        """In one commit, each row of `rows` takes the place of the stored row with the same
        `keys`, or is added. `predicate` (SQL over the stored row `t` and the new one `s`)
        says when a stored row may be replaced; a format that can check it in its commit
        does, one that can't relies on the caller having chosen `rows` by it (the writer
        lock keeps the table still meanwhile)."""
        ...

    def overwrite(self, name: str, rows: pa.Table) -> None:
        """Replace all of a (small) table's rows in one commit."""
        ...

    def file_count(self, name: str) -> int:
        """Data files the table's latest commit reads."""
        ...

    def compact(self, name: str) -> None:
        """Rewrite the table's small data files as few large ones, in one commit."""
        ...

    def expire(self, name: str, retention: timedelta) -> int:
        """Delete the files no commit younger than `retention` reads; how many."""
        ...

    def close(self) -> None: ...


def endpoint_schema(ep: Endpoint) -> pa.Schema:
    """An endpoint table: every field typed, then the metadata columns."""
    return pa.schema(
        [pa.field(f.column, ARROW_TYPES[f.type]) for f in ep.fields]
        + [
            pa.field("_raw", TEXT),
            pa.field("_updated_latest", TIMESTAMP_TYPE),
            pa.field("_synced_at", TIMESTAMP_TYPE),
            pa.field("_run_id", TEXT),
            pa.field("_deleted_at", TIMESTAMP_TYPE),
            pa.field("_deleted_reason", TEXT),
        ]
    )


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in columns])


TS = TIMESTAMP_TYPE
BOOKKEEPING: dict[str, pa.Schema] = {
    STATE_TABLE: _schema(
        ("endpoint", TEXT), ("watermark", TS), ("checkpoint_start", TS), ("checkpoint_end", TS),
        ("checkpoint_url", TEXT), ("checkpoint_watermark", TS), ("last_records", BIGINT),
        ("updated_at", TS),
    ),
    RUNS_TABLE: _schema(
        ("run_id", TEXT), ("endpoint", TEXT), ("kind", TEXT), ("started_at", TS),
        ("window_start", TS), ("window_end", TS), ("pages", BIGINT), ("requests", BIGINT),
        ("retries", BIGINT), ("rate_limit_waits", BIGINT), ("records", BIGINT),
        ("soft_deletes", BIGINT), ("warnings", BIGINT), ("status", TEXT), ("error", TEXT),
        ("finished_at", TS), ("rejected", BIGINT), ("clock", TEXT),
    ),
    REJECTED_TABLE: _schema(
        ("source", TEXT), ("item_id", TEXT), ("reason", TEXT), ("payload", TEXT),
        ("run_id", TEXT), ("rejected_at", TS),
    ),
    DELETIONS_TABLE: _schema(
        ("endpoint", TEXT), ("record_id", TEXT), ("deleted_at", TS), ("reason", TEXT),
        ("source", TEXT), ("recorded_at", TS),
    ),
    BACKFILL_TABLE: _schema(
        ("endpoint", TEXT), ("window_start", TS), ("window_end", TS), ("next_url", TEXT),
        ("done_at", TS),
    ),
    EVENTS_TABLE: _schema(
        ("event_id", TEXT), ("type", TEXT), ("created", TS), ("object_type", TEXT),
        ("object_id", TEXT), ("payload", TEXT), ("stored_at", TS),
    ),
    RULES_TABLE: _schema(("endpoint", TEXT), ("rules", TEXT), ("recorded_at", TS)),
}  # fmt: skip


def rows_of(schema: pa.Schema, rows: Sequence[Sequence[object]]) -> pa.Table:
    """Python rows (tuples in the schema's column order) as a table of that schema."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    return pa.table(
        [pa.array(list(values), f.type) for values, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


# Every table a lakehouse warehouse may hold: the endpoints', then the bookkeeping tables.
TABLE_NAMES: tuple[str, ...] = (*(ep.name for ep in ENDPOINTS), *BOOKKEEPING)
