"""PostgreSQL: batches go in with COPY to a staging table, then one INSERT ... ON CONFLICT.

An advisory lock held for the whole run keeps two hosts from syncing one warehouse. If the
connection drops, the batch in flight has rolled back with it; we reconnect, take the lock
again and run the batch again, a few times, before the endpoint fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from ogsync.destinations.base import (
    AlreadyRunning,
    BatchWrite,
    DestinationError,
    RunLog,
    WriteResult,
    quote,
)
from ogsync.destinations.sql import Dialect, SqlDestination
from ogsync.endpoints import Endpoint, FieldType

log = logging.getLogger("ogsync.postgres")
T = TypeVar("T")

POSTGRES = Dialect(
    types={
        FieldType.TEXT: "TEXT",
        FieldType.TIMESTAMP: "TIMESTAMPTZ",
        FieldType.DATE: "DATE",
        FieldType.DECIMAL: "NUMERIC",
        FieldType.INTEGER: "BIGINT",
        FieldType.BOOLEAN: "BOOLEAN",
        FieldType.JSON: "JSONB",
        FieldType.JSON_TEXT: "JSONB",
    },
    json="JSONB",
    param="%s",
)
RECONNECTS = 3


def masked(url: str) -> str:
    """The URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def _staging_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_decimal(kind):
        return "NUMERIC"
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    return "TEXT"


class PostgresDestination(SqlDestination):
    dialect = POSTGRES

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self._password = urlsplit(url).password or ""
        self.conn = self._connect()

    # -- connection and lock -------------------------------------------------------------

    def _safe(self, message: object) -> str:
        text = str(message).strip().splitlines()[0] if str(message).strip() else ""
        return text.replace(self._password, "***") if self._password else text

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise DestinationError(
                f"cannot connect to {masked(self.url)}: {self._safe(exc)}"
            ) from None
        (locked,) = conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [f"ogsync:{self.schema}"]
        ).fetchone() or (False,)
        if not locked:
            conn.close()
            raise AlreadyRunning(
                f"another ogsync process is syncing schema {self.schema} on "
                f"{masked(self.url)}; wait for it to finish"
            )
        return conn

    def _reconnecting(self, action: Callable[[], T]) -> T:
        for attempt in range(1, RECONNECTS + 1):
            try:
                return action()
            except psycopg.OperationalError as exc:
                if attempt == RECONNECTS:
                    raise DestinationError(
                        f"lost the connection to {masked(self.url)}: {self._safe(exc)}"
                    ) from None
                log.warning("lost the connection to PostgreSQL (%s); reconnecting", self._safe(exc))
                with contextlib.suppress(psycopg.Error):
                    self.conn.close()
                time.sleep(0.2 * attempt)
                self.conn = self._connect()
        raise AssertionError("unreachable")

    # -- what SqlDestination needs -------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.conn.execute(self.q(sql), list(params))  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(self.q(sql), [list(r) for r in rows])  # type: ignore[arg-type]

    def upserted(self, statement: str, params: Sequence[Any]) -> int:
        cursor = self.conn.execute(self.q(statement), list(params))  # type: ignore[arg-type]
        return max(cursor.rowcount, 0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    @contextlib.contextmanager
    def stage(self, name: str, table: pa.Table) -> Iterator[str]:
        columns = ", ".join(f"{quote(f.name)} {_staging_type(f.type)}" for f in table.schema)
        self.conn.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
        with (
            self.conn.cursor() as cursor,
            cursor.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(buffer.getvalue())
        try:
            yield name
        finally:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(f"DROP TABLE IF EXISTS {name}")

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        return self._reconnecting(lambda: SqlDestination.write(self, writes))

    def log_run(self, run: RunLog) -> None:
        self._reconnecting(lambda: SqlDestination.log_run(self, run))

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        self._reconnecting(lambda: SqlDestination.prepare(self, endpoints))

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()  # closing the session releases the advisory lock
