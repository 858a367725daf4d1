"""DuckDB, the embedded default: one file, Arrow batches in, upserts in one transaction each."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from ogsync.destinations.base import (
    DELETIONS_TABLE,
    META_COLUMNS,
    RUN_COLUMNS,
    RUNS_TABLE,
    STATE_TABLE,
    AlreadyRunning,
    BatchWrite,
    Commit,
    DestinationError,
    RunLog,
    TableSql,
    WriteResult,
    quote,
)
from ogsync.endpoints import Endpoint, FieldType
from ogsync.plan import Checkpoint, EndpointState

log = logging.getLogger("ogsync.duckdb")
T = TypeVar("T")

SQL_TYPES: dict[FieldType, str] = {
    FieldType.TEXT: "VARCHAR",
    FieldType.TIMESTAMP: "TIMESTAMPTZ",
    FieldType.DATE: "DATE",
    FieldType.DECIMAL: "DECIMAL(38, 9)",
    FieldType.INTEGER: "BIGINT",
    FieldType.BOOLEAN: "BOOLEAN",
    FieldType.JSON: "JSON",
    FieldType.JSON_TEXT: "JSON",
}
META_TYPES = {
    "_raw": "JSON",
    "_updated_latest": "TIMESTAMPTZ",
    "_synced_at": "TIMESTAMPTZ",
    "_run_id": "VARCHAR",
    "_deleted_at": "TIMESTAMPTZ",
    "_deleted_reason": "VARCHAR",
}


UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _bytes(setting: str) -> int | None:
    """DuckDB's memory setting ("244.1 MiB") in bytes."""
    number, _, unit = setting.strip().partition(" ")
    try:
        return int(float(number) * UNITS[unit.strip().lower() or "b"])
    except (KeyError, ValueError):
        return None


def _unregister(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a registered Arrow view; after a failed statement this fails too (the transaction
    is aborted), and must not hide the error that matters."""
    with contextlib.suppress(duckdb.Error):
        conn.unregister(name)


def path_from_url(url: str) -> str:
    """`duckdb:///relative.duckdb`, `duckdb:////absolute/path.duckdb` or `duckdb:///:memory:`."""
    prefix = "duckdb:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise DestinationError(
            f"bad DuckDB destination {url!r}: expected duckdb:///FILE (e.g. duckdb:///ogsync.duckdb)"
        )
    return url[len(prefix) :]


class DuckDBDestination:
    def __init__(self, url: str, schema: str, memory_limit: str | None = None) -> None:
        self.path = path_from_url(url)
        self.schema = schema
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise DestinationError(f"cannot create {self.path}: folder {parent} does not exist")
        try:
            self.conn = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise AlreadyRunning(
                    f"another ogsync process is using {self.path}; wait for it to finish"
                ) from None
            raise DestinationError(f"cannot open {self.path}: {exc}") from None
        self.conn.execute("SET TimeZone = 'UTC'")
        # Checkpoint less often while loading (the default is every 16 MB of log): each
        # checkpoint rewrites row groups, and a million-record load took a third longer.
        self.conn.execute("SET checkpoint_threshold = '256MB'")
        if memory_limit:
            try:
                self.conn.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error:
                raise DestinationError(f"bad DuckDB memory limit {memory_limit!r}") from None
        self._sql: dict[str, TableSql] = {}

    # -- schema --------------------------------------------------------------------------

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        c = self.conn
        s = quote(self.schema)
        c.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        for ep in endpoints:
            sql = self.table_sql(ep)
            columns = [f"{quote(f.column)} {SQL_TYPES[f.type]}" for f in ep.fields]
            columns += [f"{name} {kind}" for name, kind in META_TYPES.items()]
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {sql.table} "
                f"({', '.join(columns)}, PRIMARY KEY ({quote(sql.key)}))"
            )
            self._add_missing_columns(ep, sql)
            c.execute(
                f"CREATE OR REPLACE VIEW {s}.{quote(ep.name + '_live')} AS "
                f"SELECT * FROM {sql.table} WHERE _deleted_at IS NULL"
            )
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.{STATE_TABLE} (endpoint VARCHAR PRIMARY KEY, "
            "watermark TIMESTAMPTZ, checkpoint_start TIMESTAMPTZ, checkpoint_end TIMESTAMPTZ, "
            "checkpoint_url VARCHAR, checkpoint_watermark TIMESTAMPTZ, last_records BIGINT, "
            "updated_at TIMESTAMPTZ)"
        )
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.{RUNS_TABLE} (run_id VARCHAR, endpoint VARCHAR, "
            "kind VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, pages BIGINT, "
            "requests BIGINT, retries BIGINT, rate_limit_waits BIGINT, records BIGINT, "
            "soft_deletes BIGINT, warnings BIGINT, status VARCHAR, error VARCHAR, "
            "started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, PRIMARY KEY (run_id, endpoint))"
        )
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.{DELETIONS_TABLE} (endpoint VARCHAR, "
            "record_id VARCHAR, deleted_at TIMESTAMPTZ, reason VARCHAR, source VARCHAR, "
            "recorded_at TIMESTAMPTZ)"
        )

    def _add_missing_columns(self, ep: Endpoint, sql: TableSql) -> None:
        existing = {
            row[0]
            for row in self.conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [self.schema, ep.name],
            ).fetchall()
        }
        wanted = [(f.column, SQL_TYPES[f.type]) for f in ep.fields] + list(META_TYPES.items())
        for name, kind in wanted:
            if name not in existing:
                self.conn.execute(f"ALTER TABLE {sql.table} ADD COLUMN {quote(name)} {kind}")

    def table_sql(self, ep: Endpoint) -> TableSql:
        if ep.name not in self._sql:
            self._sql[ep.name] = TableSql(ep, self.schema)
        return self._sql[ep.name]

    # -- state ---------------------------------------------------------------------------

    def load_states(self) -> Mapping[str, EndpointState]:
        rows = self.conn.execute(
            "SELECT endpoint, watermark, checkpoint_start, checkpoint_end, checkpoint_url, "
            f"checkpoint_watermark, last_records FROM {quote(self.schema)}.{STATE_TABLE}"
        ).fetchall()
        states = {}
        for endpoint, watermark, cp_start, cp_end, cp_url, cp_mark, last_records in rows:
            checkpoint = Checkpoint(cp_start, cp_end, cp_url, cp_mark) if cp_url else None
            states[endpoint] = EndpointState(watermark, checkpoint, last_records or 0)
        return states

    # -- writing -------------------------------------------------------------------------

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        return self._with_memory(self._write, writes)

    def _with_memory(self, action: Callable[..., T], *args: Any) -> T:
        """Run a transaction; if DuckDB runs out of memory, raise its limit and run it again.

        Primary-key indexes must fit in DuckDB's memory, so a merchant larger than the limit
        allows gets more memory rather than a failed sync; the failed attempt rolled back.
        """
        while True:
            try:
                return action(*args)
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

    def _write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        c = self.conn
        results: list[WriteResult] = []
        synced_at = datetime.now(UTC)
        c.begin()
        try:
            for ep, batch, commit in writes:
                result = WriteResult()
                if batch is not None and batch.num_rows:
                    result.written = self._upsert(ep, batch, commit.run.run_id, synced_at)
                if commit.refreshed_keys is not None:
                    result.soft_deleted = self._soft_delete_unseen(
                        ep, commit.refreshed_keys, commit.run.run_id, synced_at
                    )
                results.append(result)
                commit.run.records += result.written
                commit.run.soft_deletes += result.soft_deleted
                self._save_state(ep, commit, synced_at)
                self._upsert_run(commit.run)
            c.commit()
        except BaseException:
            c.rollback()
            for (_, _, commit), result in zip(writes, results, strict=False):
                commit.run.records -= result.written
                commit.run.soft_deletes -= result.soft_deleted
            raise
        return results

    def _upsert(self, ep: Endpoint, batch: pa.Table, run_id: str, synced_at: datetime) -> int:
        sql = self.table_sql(ep)
        cols = [quote(c) for c in sql.columns]
        names = ", ".join([*cols, *META_COLUMNS])
        updates = ", ".join(f"{c} = excluded.{c}" for c in [*cols, *META_COLUMNS])
        statement = (
            f"INSERT INTO {sql.table} AS cur ({names}) "
            f"SELECT {', '.join(cols)}, _raw::JSON, _updated_latest, ?::TIMESTAMPTZ, ?, NULL, NULL "
            "FROM ("
            f"  SELECT *, row_number() OVER (PARTITION BY {quote(sql.key)} "
            f"  ORDER BY {sql.dedupe_order()}) AS _rank FROM ogsync_batch"
            f") WHERE _rank = 1 "
            f"ON CONFLICT ({quote(sql.key)}) DO UPDATE SET {updates} WHERE {sql.newer_wins()}"
        )
        self.conn.register("ogsync_batch", batch)
        try:
            (count,) = self.conn.execute(statement, [synced_at, run_id]).fetchone() or (0,)
        finally:
            _unregister(self.conn, "ogsync_batch")
        return int(count)

    def _soft_delete_unseen(
        self, ep: Endpoint, seen: set[str], run_id: str, synced_at: datetime
    ) -> int:
        sql = self.table_sql(ep)
        key = quote(sql.key)
        self.conn.register("ogsync_seen", pa.table({"key": pa.array(sorted(seen), pa.string())}))
        try:
            gone = self.conn.execute(
                f"UPDATE {sql.table} SET _deleted_at = ?, _deleted_reason = 'full_refresh' "
                f"WHERE _deleted_at IS NULL AND {key} NOT IN (SELECT key FROM ogsync_seen) "
                f"RETURNING {key}",
                [synced_at],
            ).fetchall()
        finally:
            _unregister(self.conn, "ogsync_seen")
        if gone:
            self.conn.executemany(
                f"INSERT INTO {quote(self.schema)}.{DELETIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                [(ep.name, k, synced_at, "full_refresh", run_id, synced_at) for (k,) in gone],
            )
        return len(gone)

    def _save_state(self, ep: Endpoint, commit: Commit, now: datetime) -> None:
        table = f"{quote(self.schema)}.{STATE_TABLE}"
        self.conn.execute(
            f"INSERT INTO {table} (endpoint, updated_at) VALUES (?, ?) "
            "ON CONFLICT (endpoint) DO UPDATE SET updated_at = excluded.updated_at",
            [ep.name, now],
        )
        if commit.keep_checkpoint:
            cp = commit.checkpoint
            self.conn.execute(
                f"UPDATE {table} SET checkpoint_start = ?, checkpoint_end = ?, "
                "checkpoint_url = ?, checkpoint_watermark = ? WHERE endpoint = ?",
                [
                    cp.window_start if cp else None,
                    cp.window_end if cp else None,
                    cp.next_url if cp else None,
                    cp.watermark_after if cp else None,
                    ep.name,
                ],
            )
        if commit.watermark is not None:
            # A watermark never moves backwards.
            self.conn.execute(
                f"UPDATE {table} SET watermark = greatest(coalesce(watermark, ?), ?) "
                "WHERE endpoint = ?",
                [commit.watermark, commit.watermark, ep.name],
            )
        if commit.last_records is not None:
            self.conn.execute(
                f"UPDATE {table} SET last_records = ? WHERE endpoint = ?",
                [commit.last_records, ep.name],
            )

    def _upsert_run(self, run: RunLog) -> None:
        columns = ", ".join(RUN_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS[2:])
        self.conn.execute(
            f"INSERT INTO {quote(self.schema)}.{RUNS_TABLE} ({columns}) "
            f"VALUES ({', '.join('?' * len(RUN_COLUMNS))}) "
            f"ON CONFLICT (run_id, endpoint) DO UPDATE SET {updates}",
            list(run.values()),
        )

    def log_run(self, run: RunLog) -> None:
        self._with_memory(self._upsert_run, run)

    def close(self) -> None:
        self.conn.close()
