"""Apache Iceberg through pyiceberg: a namespace (the schema) of Iceberg tables in a SQL
catalog. `iceberg:///abs/path` keeps the catalog in `catalog.db` (SQLite) in that folder with
the data files beside it; `iceberg+s3://bucket/prefix` keeps the data files on S3 and the
catalog where the `OGSYNC_ICEBERG_CATALOG` setting says (a SQLite file or a PostgreSQL URL;
the URL's `catalog=` parameter may name a SQLite file instead).

pyiceberg's upsert has no version condition, so newer-wins is decided before the commit
(`LakehouseDestination`, with ogsync's writer lock keeping the table still), and a replace is
one transaction: delete the keys, append their rows.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchNamespaceError
from pyiceberg.expressions import AlwaysTrue, In
from pyiceberg.table import Table

from ogsync.destinations import lakehouse_location
from ogsync.destinations.errors import DestinationError
from ogsync.destinations.lakehouse import LakehouseDestination
from ogsync.destinations.lakehouse_lock import acquire
from ogsync.destinations.lakehouse_store import DatasetCache
from ogsync.destinations.registry import OpenOptions

SCHEME = "iceberg"
KIND = "Iceberg"
CATALOG_SETTING = "OGSYNC_ICEBERG_CATALOG"
# Rows a compaction writes per data file (it reads and writes this many at a time).
COMPACT_ROWS = 250_000
# A small table written whole at each batch (state, run log, backfill progress) keeps only
# its latest snapshots once it has this many: pyiceberg copies a table's metadata, every
# snapshot listed in it, at each commit, so keeping them all made each batch slower than
# the last. Their files stay until `maintain`'s retention, for a reader that began meanwhile.
TRIM_AFTER_SNAPSHOTS = 50
KEEP_SNAPSHOTS = 5


class IcebergStore:
    """The tables of one namespace in a SQL catalog."""

    def __init__(
        self, catalog: SqlCatalog, namespace: str, location: str, *, sole_writer: bool = False
    ) -> None:
        """`sole_writer`: this store's own commits are the only ones (ogsync's writer lock is
        held), so a table it has loaded stays current: pyiceberg moves a table to each commit
        made through it, and loading one reads its whole metadata again."""
        self.location = location
        self._catalog = catalog
        self._namespace = namespace
        self._sole_writer = sole_writer
        self._loaded: dict[str, Table] = {}
        self._names: set[str] | None = None
        self._datasets = DatasetCache()

    def _table(self, name: str) -> Table:
        table = self._loaded.get(name)
        if table is None:
            table = self._catalog.load_table((self._namespace, name))
            if self._sole_writer:
                self._loaded[name] = table
        return table

    @contextlib.contextmanager
    def _committing(self, name: str) -> Iterator[Table]:
        """The table to commit to; after a commit that raised (it may have landed anyway),
        it is loaded again when next needed."""
        try:
            yield self._table(name)
        except BaseException:
            self._loaded.pop(name, None)
            raise

    def tables(self) -> set[str]:
        if self._names is None:
            try:
                listed = self._catalog.list_tables(self._namespace)
            except NoSuchNamespaceError:
                listed = []
            self._names = {identifier[-1] for identifier in listed}
        return self._names

    def ensure(self, name: str, schema: pa.Schema) -> None:
        if name not in self.tables():
            self._catalog.create_namespace_if_not_exists(self._namespace)
            self._catalog.create_table_if_not_exists((self._namespace, name), schema=schema)
            self.tables().add(name)
        with self._committing(name) as table:
            have = set(table.schema().as_arrow().names)
            if any(f.name not in have for f in schema):
                with table.update_schema() as update:
                    update.union_by_name(schema)

    def dataset(self, name: str) -> ds.Dataset:
        """The data files of the current snapshot, as one dataset: DuckDB then reads only the
        columns and files a query needs. Copy-on-write (all pyiceberg writes) leaves no delete
        files; a table that has some (written by another engine) is read whole instead."""
        table = self._table(name)
        return self._datasets.get(name, table.metadata_location, lambda: _dataset(table))

    def append(self, name: str, rows: pa.Table) -> None:
        with self._committing(name) as table:
            table.append(rows)

    def replace(
        self, name: str, rows: pa.Table, keys: Sequence[str], predicate: str | None = None
    ) -> None:
        with self._committing(name) as table:
            if len(keys) == 1:
                (key,) = keys
                with table.transaction() as tx, _quiet():
                    tx.delete(In(key, rows.column(key).to_pylist()))
                    tx.append(rows)
                return
            # A table keyed on several columns is a small bookkeeping table: written whole.
            stored = table.scan().to_arrow().select(rows.column_names).cast(rows.schema)
            kept = stored.join(rows.select(keys), keys=list(keys), join_type="left anti")
            with _quiet():
                table.overwrite(pa.concat_tables([kept.select(rows.column_names), rows]))
            _trim_snapshots(table)

    def overwrite(self, name: str, rows: pa.Table) -> None:
        with self._committing(name) as table:
            with _quiet():
                table.overwrite(rows)
            _trim_snapshots(table)

    def file_count(self, name: str) -> int:
        """From the current snapshot's summary, which pyiceberg and other engines write;
        else by listing the snapshot's files."""
        table = self._table(name)
        snapshot = table.current_snapshot()
        if snapshot is None:
            return 0
        total = snapshot.summary.get("total-data-files") if snapshot.summary else None
        if total is not None:
            return int(total)
        return sum(1 for _ in table.scan().plan_files())

    def compact(self, name: str) -> None:
        """Every row read and written again as few files, in one transaction."""
        with self._committing(name) as table:
            reader = table.scan().to_arrow_batch_reader()
            with table.transaction() as tx, _quiet():
                tx.delete(AlwaysTrue())
                for chunk in _chunks(reader, COMPACT_ROWS):
                    tx.append(chunk)

    def expire(self, name: str, retention: timedelta) -> int:
        """Expire the snapshots older than `retention` (keeping the current one), then delete
        the data and manifest files none of the remaining snapshots reads."""
        table = self._table(name)
        cutoff = datetime.now(UTC) - retention
        current = table.current_snapshot()
        old = [
            s.snapshot_id
            for s in table.snapshots()
            if s.timestamp_ms < cutoff.timestamp() * 1000
            and (current is None or s.snapshot_id != current.snapshot_id)
        ]
        if old:
            with self._committing(name):
                table.maintenance.expire_snapshots().by_ids(old).commit()
        kept = set(table.inspect.all_files().column("file_path").to_pylist())
        kept |= set(table.inspect.all_manifests().column("path").to_pylist())
        kept |= {s.manifest_list for s in table.snapshots()}
        return _delete_unread(f"{table.location()}/data", kept, cutoff) + _delete_unread(
            f"{table.location()}/metadata", kept, cutoff, only=(".avro",)
        )

    def close(self) -> None:
        self._loaded.clear()
        self._datasets.clear()
        engine = getattr(self._catalog, "engine", None)
        if engine is not None:
            engine.dispose()


def _dataset(table: Table) -> ds.Dataset:
    schema = table.schema().as_arrow()
    tasks = list(table.scan().plan_files())
    if any(task.delete_files for task in tasks):
        return ds.dataset(table.scan().to_arrow())
    if not tasks:
        return ds.dataset(schema.empty_table())
    fs, first = pafs.FileSystem.from_uri(tasks[0].file.file_path)
    paths = [first] + [_path(t.file.file_path) for t in tasks[1:]]
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=fs)


def _trim_snapshots(table: Table) -> None:
    """Expire all but the latest `KEEP_SNAPSHOTS` of a table past `TRIM_AFTER_SNAPSHOTS`."""
    snapshots = table.snapshots()
    if len(snapshots) <= TRIM_AFTER_SNAPSHOTS:
        return
    current = table.current_snapshot()
    keep = {
        s.snapshot_id for s in sorted(snapshots, key=lambda s: s.timestamp_ms)[-KEEP_SNAPSHOTS:]
    }
    if current is not None:
        keep.add(current.snapshot_id)
    table.maintenance.expire_snapshots().by_ids(
        [s.snapshot_id for s in snapshots if s.snapshot_id not in keep]
    ).commit()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Rows new to a table (or an empty table overwritten) match no delete, which pyiceberg
    warns of at every commit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        yield


def _path(uri: str) -> str:
    return pafs.FileSystem.from_uri(uri)[1]


def _chunks(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _delete_unread(
    folder: str, kept: set[str], cutoff: datetime, only: tuple[str, ...] = (".parquet",)
) -> int:
    """Delete the files under `folder` older than `cutoff` that no snapshot reads."""
    fs, root = pafs.FileSystem.from_uri(folder)
    scheme = folder.split("://", 1)[0] + "://" if "://" in folder else ""
    try:
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return 0
    removed = 0
    kept_paths = {_path(uri) if "://" in uri else uri for uri in kept}
    for info in found:
        if info.type != pafs.FileType.File or not info.path.endswith(only):
            continue
        if info.path in kept_paths or f"{scheme}{info.path}" in kept:
            continue
        if info.mtime is not None and info.mtime.astimezone(UTC) > cutoff:
            continue
        fs.delete_file(info.path)
        removed += 1
    return removed


def _catalog(where: lakehouse_location.Location, schema: str) -> SqlCatalog:
    """The SQL catalog: beside the data on local disk; for S3, from the setting."""
    properties: dict[str, Any] = {
        "warehouse": where.root if where.on_s3 else f"file://{where.root}"
    }
    if where.on_s3:
        uri = os.environ.get(CATALOG_SETTING) or where.option("catalog")
        if not uri:
            raise DestinationError(
                f"an iceberg+s3 warehouse needs its catalog: set {CATALOG_SETTING} to a "
                "SQLite file (sqlite:////ABSOLUTE/catalog.db) or a PostgreSQL URL"
            )
        if uri.startswith(("postgresql://", "postgres://")):
            uri = "postgresql+psycopg2://" + uri.split("://", 1)[1]
        aws = lakehouse_location.aws_environment()
        for setting, variable in (
            ("s3.access-key-id", "AWS_ACCESS_KEY_ID"),
            ("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
            ("s3.session-token", "AWS_SESSION_TOKEN"),
            ("s3.region", "AWS_REGION"),
            ("s3.endpoint", "AWS_ENDPOINT_URL"),
        ):
            if variable in aws:
                properties[setting] = aws[variable]
    else:
        Path(where.root).mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{where.root}/catalog.db"
    properties["uri"] = uri
    try:
        return SqlCatalog("ogsync", **properties)
    except Exception as exc:  # the catalog URL may hold a password: never show it
        raise DestinationError(
            f"the Iceberg catalog could not be opened ({type(exc).__name__}); check "
            f"{CATALOG_SETTING}"
        ) from None


def open_warehouse(url: str, schema: str, options: OpenOptions) -> LakehouseDestination:
    where = lakehouse_location.parse(url, KIND, SCHEME)
    root = where.of(schema)
    lock = None if options.read_only else acquire(root)
    try:
        store = IcebergStore(_catalog(where, schema), schema, root, sole_writer=lock is not None)
        return LakehouseDestination(store, schema, KIND, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def masked(url: str) -> str:
    return lakehouse_location.masked(url)


def local_path(url: str) -> Path | None:
    return lakehouse_location.local_path(url, SCHEME)
