"""PostgreSQL: batches go in with COPY to a staging table, then one INSERT ... ON CONFLICT.

Advisory locks held for the whole run keep two hosts from syncing one warehouse. A run takes
the schema's lock exclusively, unless it claims only some endpoints (as the Airflow tasks do,
one endpoint each): then it shares the schema's lock and takes each claimed endpoint's lock
exclusively, so runs of different endpoints go side by side and nothing else gets in. If the
connection drops, the batch in flight has rolled back with it; we reconnect, take the locks
again and run the batch again, a few times, before the endpoint fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg.conninfo import conninfo_to_dict

from ogsync.destinations.base import (
    AlreadyRunning,
    BatchWrite,
    DestinationError,
    RunLog,
    WriteResult,
    quote,
)
from ogsync.destinations.registry import OpenOptions
from ogsync.destinations.sql import Dialect, SqlDestination
from ogsync.destinations.sql_dictionary import comments_by_name
from ogsync.destinations.sql_rules import RulesChanged
from ogsync.endpoints import Endpoint, FieldType
from ogsync.plan import EndpointState
from ogsync.records import RAW

if TYPE_CHECKING:
    from ogsync.webhooks.inbox import GroupCommitInbox

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
    hash_template="md5(CAST(CAST({} AS JSONB) AS TEXT))",
    comments=True,
)
RECONNECTS = 3


def _try_lock(conn: psycopg.Connection[Any], function: str, name: str) -> bool:
    row = conn.execute(f"SELECT {function}(hashtextextended(%s, 0))", [name]).fetchone()
    return bool(row and row[0])


def _password(url: str) -> str:
    """The password however the URL carries it (user info or `?password=`), or ""."""
    try:
        return conninfo_to_dict(url).get("password") or ""
    except psycopg.Error:
        return urlsplit(url).password or ""


def masked(url: str) -> str:
    """The URL with its password replaced, for messages; an unreadable URL is hidden whole."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{url.split(':', 1)[0]}://***"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)],
        safe="*",
    )
    shown = urlunsplit(parts._replace(netloc=netloc, query=query))
    secret = _password(url)
    return shown.replace(secret, "***") if secret else shown


def _staging_type(field: pa.Field) -> str:
    kind = field.type
    if field.name == RAW:
        # The record is parsed once, by COPY: the current table's insert and the history's
        # then copy the JSONB, where each cast from text had parsed it again.
        return "JSONB"
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


def _without_nul(table: pa.Table) -> pa.Table:
    """PostgreSQL text and JSONB cannot hold U+0000: it becomes U+FFFD, in text and in JSON
    escapes alike, rather than fail the whole batch. (DuckDB keeps it as received.)"""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            column = pc.replace_substring(table.column(i), "\x00", "\ufffd")
            column = pc.replace_substring(column, "\\u0000", "\\ufffd")
            table = table.set_column(i, field, column)
    return table


def _csv(table: pa.Table) -> bytes:
    """The rows as COPY reads them."""
    buffer = io.BytesIO()
    pacsv.write_csv(_without_nul(table), buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


class _Encoded:
    """Batches' CSV, made by the workers that typed them (`ready`), each kept while its
    batch lives: the single writer then only sends it."""

    def __init__(self) -> None:
        self._csv: dict[int, tuple[weakref.ref[pa.Table], bytes]] = {}

    def put(self, table: pa.Table, csv: bytes) -> None:
        key = id(table)
        self._csv[key] = (weakref.ref(table), csv)
        weakref.finalize(table, self._csv.pop, key, None)

    def take(self, table: pa.Table) -> bytes:
        found = self._csv.pop(id(table), None)
        if found is not None and found[0]() is table:
            return found[1]
        return _csv(table)


class PostgresDestination(SqlDestination):
    dialect = POSTGRES

    def __init__(
        self,
        url: str,
        schema: str,
        claims: Collection[str] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.url = url
        self.schema = schema
        self.read_only = read_only  # a reader (`ogsync status`) takes no lock
        self.claims = sorted(set(claims)) if claims is not None else None
        self._password = _password(url)
        self._encoded = _Encoded()
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
        schema_lock = f"ogsync:{self.schema}"
        if self.read_only:
            return conn
        if self.claims is None:
            held = _try_lock(conn, "pg_try_advisory_lock", schema_lock)
        else:
            held = _try_lock(conn, "pg_try_advisory_lock_shared", schema_lock) and all(
                _try_lock(conn, "pg_try_advisory_lock", f"{schema_lock}:{name}")
                for name in self.claims
            )
        if not held:
            conn.close()  # closing the session releases whatever it took
            what = f"schema {self.schema}"
            if self.claims is not None:
                what = f"{', '.join(self.claims)} in {what}"
            raise AlreadyRunning(
                f"another ogsync process is syncing {what} on {masked(self.url)}; "
                "wait for it to finish"
            )
        return conn

    def _reconnecting(self, action: Callable[[], T]) -> T:
        problem = ""
        for attempt in range(1, RECONNECTS + 1):
            try:
                return action()
            except (psycopg.OperationalError, DestinationError) as exc:
                if isinstance(exc, AlreadyRunning | RulesChanged):  # not the connection's fault
                    raise
                problem = self._safe(exc)
                if attempt == RECONNECTS:
                    break
                log.warning("lost the connection to PostgreSQL (%s); reconnecting", problem)
                with contextlib.suppress(psycopg.Error):
                    self.conn.close()
                time.sleep(0.2 * attempt)
                with contextlib.suppress(DestinationError):  # the next attempt says if it failed
                    self.conn = self._connect()
        raise DestinationError(f"lost the connection to {masked(self.url)}: {problem}")

    # -- what SqlDestination needs -------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.conn.execute(self.q(sql), list(params))  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []

    def execute_script(self, statements: Sequence[str]) -> None:
        # Without parameters psycopg sends the text as it is, several statements in one trip.
        self.conn.execute(";\n".join(statements))

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
        columns = ", ".join(f"{quote(f.name)} {_staging_type(f)}" for f in table.schema)
        self.conn.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
        with (
            self.conn.cursor() as cursor,
            cursor.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(self._encoded.take(table))
        try:
            yield name
        finally:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute(f"DROP TABLE IF EXISTS {name}")

    def ready(self, ep: Endpoint, batch: pa.Table) -> None:
        self._encoded.put(batch, _csv(batch))

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        return self._reconnecting(lambda: SqlDestination.write(self, writes))

    def log_run(self, run: RunLog) -> None:
        self._reconnecting(lambda: SqlDestination.log_run(self, run))

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        def prepare() -> None:
            # Runs that share the schema may both find a table missing; one creates it.
            with self.transaction():
                self.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                    [f"ogsync:{self.schema}:ddl"],
                )
                SqlDestination.prepare(self, endpoints)

        self._reconnecting(prepare)

    def stored_comments(self) -> dict[tuple[str, str | None], str]:
        return comments_by_name(
            self.execute(
                "SELECT c.relname, a.attname, d.description FROM pg_description AS d "
                "JOIN pg_class AS c ON c.oid = d.objoid "
                "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = d.objsubid "
                "WHERE d.classoid = 'pg_class'::regclass AND n.nspname = ? "
                "AND (d.objsubid = 0 OR a.attnum IS NOT NULL)",
                [self.schema],
            )
        )

    def load_states(self) -> Mapping[str, EndpointState]:
        return self._reconnecting(lambda: SqlDestination.load_states(self))

    def close(self) -> None:
        # Closing the session releases its locks too, but only once the server's backend has
        # gone, a moment later: a run started right after this one ends would be refused.
        with contextlib.suppress(psycopg.Error):
            if not self.read_only and not self.conn.closed:
                self.conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(psycopg.Error):
            self.conn.close()


def open_warehouse(url: str, schema: str, options: OpenOptions) -> PostgresDestination:
    return PostgresDestination(url, schema, options.claims, read_only=options.read_only)


def open_inbox(url: str, schema: str) -> GroupCommitInbox:
    from ogsync.destinations.postgres_inbox import PostgresInbox

    return PostgresInbox(url, schema)
