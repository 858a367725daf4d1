"""Delta Lake through delta-rs (`deltalake`, no JVM): a folder of Delta tables per schema,
on local disk (`delta:///abs/path`) or S3 (`delta+s3://bucket/prefix`).

Newer-wins is a MERGE whose update carries the version condition, so the commit itself never
replaces a newer row. On S3, delta-rs would need a lock service to keep two writers from
committing the same log entry; ogsync's own writer lock (`lakehouse_lock`) already keeps a
lakehouse to one writer, so the store is told that unsafe renames are safe here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, Schema, write_deltalake
from deltalake.exceptions import TableNotFoundError

from ogsync.destinations import lakehouse_location
from ogsync.destinations.lakehouse import LakehouseDestination
from ogsync.destinations.lakehouse_lock import acquire
from ogsync.destinations.lakehouse_store import TABLE_NAMES, DatasetCache
from ogsync.destinations.registry import OpenOptions

SCHEME = "delta"
KIND = "Delta Lake"


class DeltaStore:
    """The Delta tables of one schema: `<root>/<schema>/<table>`."""

    def __init__(self, root: str, options: dict[str, str], *, sole_writer: bool = False) -> None:
        """`sole_writer`: this store's own commits are the only ones (ogsync's writer lock is
        held), so a table it has open is current without reading the log again."""
        self.location = root
        self._options = options
        self._sole_writer = sole_writer
        self._tables: dict[str, DeltaTable] = {}
        self._names: set[str] | None = None
        self._datasets = DatasetCache()

    def _uri(self, name: str) -> str:
        return f"{self.location}/{name}"

    def tables(self) -> set[str]:
        if self._names is None:
            self._names = {
                name
                for name in TABLE_NAMES
                if DeltaTable.is_deltatable(self._uri(name), storage_options=self._options)
            }
        return self._names

    def _table(self, name: str) -> DeltaTable:
        """The table at its latest commit. Appends and merges move the open table on to the
        commit they make; the operations that don't (`_reopen`) drop it."""
        table = self._tables.get(name)
        if table is None:
            table = DeltaTable(self._uri(name), storage_options=self._options)
            self._tables[name] = table
        elif not self._sole_writer:
            table.update_incremental()  # lists the log: on S3, a request per call
        return table

    def _reopen(self, name: str) -> None:
        self._tables.pop(name, None)

    def ensure(self, name: str, schema: pa.Schema) -> None:
        if name not in self.tables():
            try:
                self._table(name)
            except TableNotFoundError:
                DeltaTable.create(self._uri(name), schema, storage_options=self._options)
            self.tables().add(name)
        table = self._table(name)
        have = {f.name for f in table.schema().fields}
        added = [f for f in schema if f.name not in have]
        if added:
            table.alter.add_columns(Schema.from_arrow(pa.schema(added)).fields)
            self._reopen(name)

    def dataset(self, name: str) -> ds.Dataset:
        table = self._table(name)
        return self._datasets.get(name, table.version(), table.to_pyarrow_dataset)

    def append(self, name: str, rows: pa.Table) -> None:
        write_deltalake(self._table(name), rows, mode="append")

    def replace(
        self, name: str, rows: pa.Table, keys: Sequence[str], predicate: str | None = None
    ) -> None:
        on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
        merge = self._table(name).merge(rows, on, source_alias="s", target_alias="t")
        merge.when_matched_update_all(predicate=predicate).when_not_matched_insert_all().execute()

    def overwrite(self, name: str, rows: pa.Table) -> None:
        write_deltalake(self._table(name), rows, mode="overwrite")

    def file_count(self, name: str) -> int:
        return len(self._table(name).file_uris())

    def compact(self, name: str) -> None:
        self._table(name).optimize.compact()
        self._reopen(name)

    def expire(self, name: str, retention: timedelta) -> int:
        # Vacuum counts whole hours: round up, never delete what the retention keeps.
        hours = math.ceil(retention.total_seconds() / 3600)
        removed = self._table(name).vacuum(
            retention_hours=hours, dry_run=False, enforce_retention_duration=False
        )
        self._reopen(name)
        return len(removed)

    def close(self) -> None:
        self._tables.clear()
        self._datasets.clear()


def open_warehouse(url: str, schema: str, options: OpenOptions) -> LakehouseDestination:
    where = lakehouse_location.parse(url, KIND, SCHEME)
    storage = lakehouse_location.aws_environment() if where.on_s3 else {}
    if where.on_s3:
        # One writer is ogsync's own lock's to keep (module docstring).
        storage["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
    root = where.of(schema)
    lock = None if options.read_only else acquire(root)
    try:
        store = DeltaStore(root, storage, sole_writer=lock is not None)
        return LakehouseDestination(store, schema, KIND, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def masked(url: str) -> str:
    return lakehouse_location.masked(url)


def local_path(url: str) -> Path | None:
    return lakehouse_location.local_path(url, SCHEME)
