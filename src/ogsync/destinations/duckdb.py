"""DuckDB, the embedded default: one file, Arrow batches in, upserts in one transaction each."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from ogsync.destinations.base import (
    AlreadyRunning,
    BatchWrite,
    DestinationError,
    RunLog,
    WriteResult,
)
from ogsync.destinations.sql import Dialect, SqlDestination
from ogsync.endpoints import FieldType

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
)
UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


# A log this large is written into the database file when the loader has nothing else to do.
IDLE_CHECKPOINT_BYTES = 16 * 2**20


def _bytes(setting: str) -> int | None:
    """DuckDB's memory setting ("244.1 MiB") in bytes."""
    number, _, unit = setting.strip().partition(" ")
    try:
        return int(float(number) * UNITS[unit.strip().lower() or "b"])
    except (KeyError, ValueError):
        return None


def path_from_url(url: str) -> str:
    """`duckdb:///relative.duckdb`, `duckdb:////absolute/path.duckdb` or `duckdb:///:memory:`."""
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise DestinationError(
            f"bad DuckDB destination {url!r}: expected duckdb:///FILE (e.g. duckdb:///ogsync.duckdb)"
        )
    return url[len(prefix) :]


class DuckDBDestination(SqlDestination):
    dialect = DUCKDB

    def __init__(self, url: str, schema: str, memory_limit: str | None = None) -> None:
        self.path = path_from_url(url)
        self.schema = schema
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise DestinationError(f"cannot create {self.path}: folder {parent} does not exist")
        try:
            # DuckDB locks its file: a second process cannot open it, which is the run guard.
            self.conn = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise AlreadyRunning(
                    f"another ogsync process is using {self.path}; wait for it to finish"
                ) from None
            raise DestinationError(f"cannot open {self.path}: {exc}") from None
        self.conn.execute("SET TimeZone = 'UTC'")
        # Checkpoint less often while loading (the default is every 16 MB of log): each
        # checkpoint rewrites row groups, and a million-record load took a third longer. Data
        # not yet checkpointed stays in memory, so this also sets DuckDB's peak: at 192 MB a
        # million records load in 80 MB (at 256 MB they needed 96).
        self.conn.execute("SET checkpoint_threshold = '192MB'")
        if memory_limit:
            try:
                self.conn.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error:
                raise DestinationError(f"bad DuckDB memory limit {memory_limit!r}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.conn.execute(sql, list(params))
        return cursor.fetchall() if cursor.description else []

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

    @contextlib.contextmanager
    def stage(self, name: str, table: pa.Table) -> Iterator[str]:
        self.conn.register(name, table)
        try:
            yield name
        finally:
            # After a failed statement this fails too (the transaction is aborted); it must
            # not hide the error that matters.
            with contextlib.suppress(duckdb.Error):
                self.conn.unregister(name)

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        return self._with_memory(lambda: SqlDestination.write(self, writes))

    def log_run(self, run: RunLog) -> None:
        self._with_memory(lambda: SqlDestination.log_run(self, run))

    def _with_memory(self, action: Callable[[], T]) -> T:
        """Run a transaction; if DuckDB runs out of memory, raise its limit and run it again.

        Primary-key indexes must fit in DuckDB's memory, so a merchant larger than the limit
        allows gets more memory rather than a failed sync; the failed attempt rolled back.
        """
        while True:
            try:
                return action()
            except duckdb.OutOfMemoryException:
                if not self._raise_memory_limit():
                    raise

    def _raise_memory_limit(self) -> bool:
        (current,) = self.conn.execute("SELECT current_setting('memory_limit')").fetchone()
        now = _bytes(current)
        ceiling = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)
        if now is None or now >= ceiling:
            return False
        raised = min(now * 2, ceiling) // 2**20
        log.warning("DuckDB needed more memory: limit raised from %s to %d MiB", current, raised)
        self.conn.execute(f"SET memory_limit = '{raised}MiB'")
        return True

    def idle(self) -> None:
        """Checkpoint while the loader waits on the API, once the log has grown.

        Checkpoints are rare while loading (see `checkpoint_threshold`), which leaves all the
        writing to the end of the run; a run that waits on the API anyway does it as it goes.
        """
        if self.path == ":memory:":
            return
        try:
            logged = Path(f"{self.path}.wal").stat().st_size
        except OSError:
            return
        if logged >= IDLE_CHECKPOINT_BYTES:
            self.conn.execute("CHECKPOINT")

    def close(self) -> None:
        self.conn.close()
