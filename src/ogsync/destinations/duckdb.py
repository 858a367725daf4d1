"""DuckDB, the embedded default: one file, Arrow batches in, upserts in one transaction each."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from ogsync.destinations.base import (
    AlreadyRunning,
    ApplyResult,
    BatchWrite,
    DestinationError,
    RunLog,
    WebhookEvent,
    WriteResult,
    quote,
)
from ogsync.destinations.duckdb_memory import keep_headroom, with_memory
from ogsync.destinations.registry import OpenOptions
from ogsync.destinations.sql import Dialect, SqlDestination
from ogsync.destinations.sql_dictionary import comments_by_name
from ogsync.endpoints import Endpoint, FieldType
from ogsync.private import tighten
from ogsync.records import RAW
from ogsync.status_snapshot import running_syncs, snapshot_path

log = logging.getLogger("ogsync.duckdb")
T = TypeVar("T")

DUCKDB = Dialect(
    types={
        FieldType.TEXT: "VARCHAR",
        FieldType.TIMESTAMP: "TIMESTAMPTZ",
        FieldType.DATE: "DATE",
        FieldType.DECIMAL: "DECIMAL(38, 9)",
        FieldType.INTEGER: "BIGINT",
        FieldType.BOOLEAN: "BOOLEAN",
        FieldType.JSON: "JSON",
        FieldType.JSON_TEXT: "JSON",
    },
    json="JSON",
    comments=True,
    key_lookups=False,
    # DuckDB picks a string column's compression at each checkpoint by trying its methods on
    # it; for the records as received, zstd is both the smallest and the quickest to write,
    # for a full scan of them that is somewhat slower (figures in the commit that chose it).
    raw_column="JSON USING COMPRESSION zstd",
    duplicate_key=(duckdb.ConstraintException,),
    staged_json=True,
)

# A log this large is written into the database file after a write. Checkpoints are rare while
# loading: each rewrites row groups, which slows a large load. Data not yet checkpointed stays
# in memory, so this also sets DuckDB's peak: the trade-off is measured by bench/sync.py.
CHECKPOINT_BYTES = 192 * 2**20
# A log this large is written into the database file when the loader has nothing else to do.
IDLE_CHECKPOINT_BYTES = 16 * 2**20
# DuckDB spreads a checkpoint's row groups over its threads: with two, one takes about 60% of
# the time for the same CPU. Its statements run on one (see `__init__`).
CHECKPOINT_THREADS = 2
# How long a run waits for the file while a reader (`ogsync status`) has it open.
LOCK_WAIT_SECONDS = 10.0
# How often a run holding the file refreshes what `ogsync status` reads meanwhile.
SNAPSHOT_EVERY = 2.0


SUPPORTED = (
    "ogsync writes a DuckDB file on this machine: duckdb:///FILE (relative to the current "
    "folder, e.g. duckdb:///ogsync.duckdb) or duckdb:////ABSOLUTE/PATH"
)


def path_from_url(url: str) -> str:
    """`duckdb:///relative.duckdb`, `duckdb:////absolute/path.duckdb` or `duckdb:///:memory:`.

    Anything else DuckDB itself might open (MotherDuck, a remote file, connection options)
    is refused by name: ogsync relies on a local file's lock, permissions and snapshot.
    """
    prefix = "duckdb:///"
    if url.startswith("duckdb://") and not url.startswith(prefix):
        rest = url.removeprefix("duckdb://")
        raise DestinationError(
            f"DuckDB destination {url!r} has two slashes, which make {rest.split('/')[0]!r} a "
            f"host: {SUPPORTED} (here duckdb:///{rest})"
        )
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise DestinationError(f"bad DuckDB destination {url!r}: {SUPPORTED}")
    path = url[len(prefix) :]
    if path.lower().startswith(("md:", "motherduck:")):
        raise DestinationError(f"MotherDuck ({path}) is not supported: {SUPPORTED}")
    if "://" in path:
        raise DestinationError(f"a remote DuckDB database ({path}) is not supported: {SUPPORTED}")
    if "?" in path:
        raise DestinationError(
            f"DuckDB connection options ({path.partition('?')[2]}) are not supported: "
            f"{SUPPORTED}; its memory is the duckdb_memory_limit setting"
        )
    return path


class DuckDBDestination(SqlDestination):
    dialect = DUCKDB

    def __init__(
        self,
        url: str,
        schema: str,
        memory_limit: str | None = None,
        *,
        read_only: bool = False,
        lock_wait: float | None = None,
    ) -> None:
        """`read_only`: a reader, which holds nothing and gives up on a held file at once (a
        run holding it keeps a snapshot for it instead: ogsync.status_snapshot)."""
        self.path = path_from_url(url)
        self.schema = schema
        self.read_only = read_only
        self._snapshot_at = 0.0
        if read_only and self.path != ":memory:" and not Path(self.path).expanduser().is_file():
            raise DestinationError(
                f"no warehouse at {self.path}: nothing synced there yet (see --destination)"
            )
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise DestinationError(f"cannot create {self.path}: folder {parent} does not exist")
        if lock_wait is None:
            lock_wait = 0.0 if read_only else LOCK_WAIT_SECONDS
        self.conn = self._connect(lock_wait)
        (self.catalog,) = self.conn.execute("SELECT current_database()").fetchone()  # type: ignore[misc]
        if not read_only:
            tighten(self.path, f"{self.path}.wal")
        self.conn.execute("SET TimeZone = 'UTC'")
        # The loader checkpoints itself, on more threads (`_checkpoint`); DuckDB's own, in a
        # commit on one thread, is left for what writes a larger log some other way.
        self.conn.execute("SET checkpoint_threshold = '1GB'")
        # One thread: the loader shares the cores with the workers fetching and typing pages,
        # and a second DuckDB thread for its statements costs more CPU than it saves
        # (bench/sync.py).
        self.conn.execute("SET threads = 1")
        if memory_limit:
            try:
                self.conn.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error:
                raise DestinationError(f"bad DuckDB memory limit {memory_limit!r}") from None
        if not read_only and self.path != ":memory:":
            self._committed(force=True)  # status can tell from the start that a run holds it

    # A file named like its schema (shop.duckdb, schema shop) makes `shop.t` ambiguous between
    # catalog and schema: statements name both. A view names its table unqualified, which
    # DuckDB resolves in the view's own schema (a qualified name there fails the same way).
    in_catalog = "AND table_catalog = current_database()"

    @property
    def s(self) -> str:
        return f"{quote(self.catalog)}.{quote(self.schema)}"

    def view_source(self, ep: Endpoint) -> str:
        return quote(ep.name)

    def stored_comments(self) -> dict[tuple[str, str | None], str]:
        where = "WHERE database_name = current_database() AND schema_name = ?"
        return comments_by_name(
            self.execute(
                f"SELECT table_name, NULL, comment FROM duckdb_tables() {where} UNION ALL "
                f"SELECT view_name, NULL, comment FROM duckdb_views() {where} UNION ALL "
                f"SELECT table_name, column_name, comment FROM duckdb_columns() {where}",
                [self.schema] * 3,
            )
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.conn.execute(sql, list(params))
        return cursor.fetchall() if cursor.description else []

    def execute_script(self, statements: Sequence[str]) -> None:
        self.conn.execute(";\n".join(statements))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, [list(r) for r in rows])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.begin()
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()
        if not self.read_only and self.path != ":memory:":
            tighten(f"{self.path}.wal")  # DuckDB makes a new log after each checkpoint

    @contextlib.contextmanager
    def stage(self, name: str, table: pa.Table) -> Iterator[str]:
        self.conn.register(name, _raw_as_json(table))
        try:
            yield name
        finally:
            # After a failed statement this fails too (the transaction is aborted); it must
            # not hide the error that matters.
            with contextlib.suppress(duckdb.Error):
                self.conn.unregister(name)

    def _connect(self, lock_wait: float) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting a moment if a reader holds it (`ogsync status` opens it only
        briefly); DuckDB's lock on the file is the run guard."""
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                return duckdb.connect(self.path, read_only=self.read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise DestinationError(f"cannot open {self.path}: {exc}") from None
                held = self._held_by(str(exc))
                if held.snapshot is not None or time.monotonic() >= deadline:
                    raise held from None  # another run holds it: no use waiting
                time.sleep(0.05)

    def _held_by(self, message: str) -> AlreadyRunning:
        """Who holds the file, in one line: another ogsync run (whose status snapshot a reader
        may use instead), or some other program."""
        found = re.search(r"held in (.+?) \(PID (\d+)\)", message)
        if found is None:
            return AlreadyRunning(
                f"another process is using {self.path}: {message.splitlines()[0]}"
            )
        program, pid = Path(found.group(1)).name, int(found.group(2))
        if pid in running_syncs(self.path):
            return AlreadyRunning(
                f"another ogsync process (PID {pid}) is using {self.path}; wait for it to finish",
                snapshot_path(self.path, self.schema),
            )
        return AlreadyRunning(
            f"{program} (PID {pid}) has {self.path} open, and DuckDB lets no other process in "
            "meanwhile: close it there (a notebook or BI tool) and run again"
        )

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        results = self._with_memory(lambda: SqlDestination.write(self, writes))
        try:
            self._with_memory(lambda: self._checkpoint(CHECKPOINT_BYTES))
        except duckdb.Error as exc:  # the batches are committed: the log is written in later
            log.warning("could not write the log into %s yet: %s", self.path, exc)
        self._committed()
        return results

    def log_run(self, run: RunLog) -> None:
        self._with_memory(lambda: SqlDestination.log_run(self, run))
        self._committed()

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        endpoints = list(endpoints)
        self._with_memory(lambda: SqlDestination.prepare(self, endpoints))

    def apply_events(self, events: Sequence[WebhookEvent]) -> ApplyResult:
        return self._with_memory(lambda: SqlDestination.apply_events(self, events))

    def _committed(self, force: bool = False) -> None:
        """After a commit: every few seconds `ogsync status` gets a fresh snapshot to read
        while this process holds the file."""
        if self.path == ":memory:":
            return
        if force or time.monotonic() - self._snapshot_at >= SNAPSHOT_EVERY:
            from ogsync.status_snapshot import write_snapshot

            try:
                write_snapshot(self)
            except Exception as exc:  # a monitor's convenience must never fail a sync
                log.warning("could not write the status snapshot: %s", exc)
            self._snapshot_at = time.monotonic()

    def _with_memory(self, action: Callable[[], T]) -> T:
        """Primary-key indexes must fit in DuckDB's memory, so a merchant larger than the
        limit allows gets more memory rather than a failed sync; the failed attempt rolled
        back."""
        return with_memory(self.conn, action)

    def idle(self) -> None:
        """Checkpoint while the loader waits on the API, once the log has grown.

        Checkpoints are rare while loading (see `CHECKPOINT_BYTES`), which leaves all the
        writing to the end of the run; a run that waits on the API anyway does it as it goes.
        """
        if self.path == ":memory:":
            return
        self._committed()
        self._checkpoint(IDLE_CHECKPOINT_BYTES)

    def _checkpoint(self, at_bytes: int) -> None:
        """Write the log into the database file once it holds `at_bytes`, on
        `CHECKPOINT_THREADS` threads."""
        if self.read_only or self.path == ":memory:":
            return
        try:
            logged = Path(f"{self.path}.wal").stat().st_size
        except OSError:
            return
        if logged < at_bytes:
            return
        keep_headroom(self.conn)
        self.conn.execute(f"SET threads = {CHECKPOINT_THREADS}")
        try:
            self.conn.execute("CHECKPOINT")
        finally:
            with contextlib.suppress(duckdb.Error):  # the checkpoint's error is the one to tell
                self.conn.execute("SET threads = 1")

    def close(self) -> None:
        if not self.read_only and self._snapshot_at:
            self._committed(force=True)
        with contextlib.suppress(duckdb.Error):  # the checkpoint on close, on more threads
            if not self.read_only:
                keep_headroom(self.conn)
            self.conn.execute(f"SET threads = {CHECKPOINT_THREADS}")
        self.conn.close()


# Arrow's JSON extension type (pyarrow 19 and later), which DuckDB reads as its JSON type.
_ARROW_JSON = pa.json_(pa.string()) if hasattr(pa, "json_") else None


def _raw_as_json(table: pa.Table) -> pa.Table:
    """The table with `_raw` marked as JSON, which DuckDB then stores without parsing each
    record to check it (`Dialect.staged_json`): ogsync.records writes it with orjson, so it
    is valid JSON. Without the type, DuckDB casts the text to JSON itself."""
    at = table.schema.get_field_index(RAW)
    if _ARROW_JSON is None or at < 0 or table.schema.field(at).type != pa.string():
        return table
    return table.set_column(at, pa.field(RAW, _ARROW_JSON), table.column(at).cast(_ARROW_JSON))


def open_warehouse(url: str, schema: str, options: OpenOptions) -> DuckDBDestination:
    """DuckDB cannot share its file between writing processes: a claim holds all of it."""
    return DuckDBDestination(url, schema, options.memory_limit, read_only=options.read_only)


def masked(url: str) -> str:
    return url  # a file name holds no secret


def local_path(url: str) -> Path | None:
    path = path_from_url(url)
    return None if path == ":memory:" else Path(path).expanduser()


def file_url(path: str | os.PathLike[str]) -> str:
    """The destination URL of a DuckDB file."""
    return f"duckdb:///{path}"
