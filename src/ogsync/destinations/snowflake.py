"""Snowflake: batches go in as Parquet, `PUT` to a temporary stage and `COPY INTO` a staging
table, then a newer-wins `UPDATE ... FROM` and an `INSERT ... WHERE NOT EXISTS` write them into
the endpoint's table, in one transaction with the checkpoint and the run-log row.

Why it is shaped this way:
- Snowflake commits the open transaction before any DDL. So everything a batch needs staged
  (its rows, a full refresh's keys, webhook events) is loaded before the transaction begins,
  and nothing but DML runs inside it (`execute` refuses DDL there rather than split a batch).
- No `MERGE`: the emulator the tests run cannot MERGE inside a transaction that also writes
  elsewhere, and the UPDATE-then-INSERT pair does the same on Snowflake, with one code path.
  Snowflake does not enforce primary keys; the run's lease (below) keeps writers of one table
  to one, so the INSERT's NOT EXISTS is what keeps a key unique.
- Quoted identifiers resolve in upper case in every session (QUOTED_IDENTIFIERS_IGNORE_CASE):
  the tables are ORDERS, PUBLIC_ID, ..., which analysts query unquoted; the views name
  their tables in upper case themselves, so they read the same in any session.
- A run holds its schema (or its endpoints) by a lease (`snowflake_lease`); a lost session rolls
  the batch back, and the batch runs again on a new session, a few times, before it fails.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ogsync.deletions import DELETABLE, DELETION_EVENTS
from ogsync.destinations import snowflake_history as history
from ogsync.destinations import sql_dictionary, sql_rules
from ogsync.destinations.base import (
    BACKFILL_TABLE,
    CURRENT_VIEW_SUFFIX,
    DELETIONS_TABLE,
    DEPRECATED_VIEW_SUFFIX,
    EVENTS_TABLE,
    META_COLUMNS,
    REJECTED_TABLE,
    RUNS_TABLE,
    STATE_TABLE,
    ApplyResult,
    BatchWrite,
    Commit,
    Rejected,
    RunLog,
    StatusFacts,
    WebhookEvent,
    WriteResult,
    quote,
)
from ogsync.destinations.errors import DestinationError
from ogsync.destinations.registry import OpenOptions
from ogsync.destinations.snowflake_access import check_access
from ogsync.destinations.snowflake_connect import (
    Credentials,
    Target,
    connect,
    credentials,
    is_error,
    masked,
    parse_url,
    session_lost,
)
from ogsync.destinations.snowflake_lease import LEASES_TABLE, Lease, Run
from ogsync.destinations.sql import Dialect, SqlDestination, tombstone_links
from ogsync.dictionary import BOOKKEEPING, TableDoc
from ogsync.endpoints import ENDPOINTS, Endpoint, FieldType
from ogsync.governance import Governance
from ogsync.plan import EndpointState
from ogsync.vocabulary import DeletionReason

__all__ = ["SnowflakeDestination", "check_access", "masked", "open_warehouse"]

log = logging.getLogger("ogsync.snowflake")
DELETABLE_NAMES = frozenset(ep.name for ep in DELETABLE)
BOOKKEEPING_DOCS = {doc.name: doc for doc in BOOKKEEPING}
T = TypeVar("T")

SNOWFLAKE = Dialect(
    types={
        FieldType.TEXT: "VARCHAR",
        FieldType.TIMESTAMP: "TIMESTAMP_TZ",
        FieldType.DATE: "DATE",
        FieldType.DECIMAL: "NUMBER(38, 9)",
        FieldType.INTEGER: "BIGINT",
        FieldType.BOOLEAN: "BOOLEAN",
        FieldType.JSON: "VARIANT",
        FieldType.JSON_TEXT: "VARIANT",
    },
    json="VARIANT",
    hash_template="md5(to_json({}))",  # of a stored VARIANT (snowflake_history.version_hash)
    comments=True,
)
JSON_TYPES = (FieldType.JSON, FieldType.JSON_TEXT)
RECONNECTS = 3
STAGE = '"_ogsync_load"'  # the session's temporary stage, in the schema
DDL = re.compile(
    r"^\s*(CREATE|ALTER|DROP|TRUNCATE|UNDROP|PUT|GET|REMOVE|LIST|USE|GRANT|REVOKE|COMMENT)\b",
    re.IGNORECASE,
)
INSERT_VALUES = re.compile(r"^(?P<head>.*\bVALUES\s*)(?P<row>\(\s*\?(?:\s*,\s*\?)*\s*\))\s*$", re.S)
ROWS_PER_INSERT = 1000
TS = "TIMESTAMP_TZ"


# The run log's times, which a bound parameter gives Snowflake as text.
RUN_STAMPS = frozenset({"started_at", "window_start", "window_end", "finished_at"})


def _ts(placeholder: str = "?") -> str:
    return f"CAST({placeholder} AS {TS})"


def _staging_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return TS
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_decimal(kind):
        return f"NUMBER({kind.precision}, {kind.scale})"
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    return "VARCHAR"


def _bindable(value: Any) -> Any:
    """The connector binds plain types only: the vocabulary's enums go as their values."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


class SnowflakeDestination(SqlDestination):
    dialect = SNOWFLAKE

    def __init__(
        self,
        url: str,
        schema: str,
        claims: Sequence[str] | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.url = url
        self.target: Target = parse_url(url)
        self.schema = schema
        self.read_only = read_only  # a reader (`ogsync status`) takes no lease and makes nothing
        self.claims = sorted(set(claims)) if claims is not None else None
        self._creds: Credentials = credentials()
        self._tag = uuid.uuid4().hex[:12]  # this destination's lease, and its staging names
        self._in_transaction = False
        self._stage_made = False
        self._staged: dict[int, str] = {}  # id() of an Arrow batch or key array -> its table
        self.lease: Lease | None = None
        self.conn = self._connect()
        if read_only:
            return
        what = f"schema {schema}"
        if self.claims is not None:
            what = f"{', '.join(self.claims)} in {what}"
        self.lease = Lease(
            f"{self.s}.{LEASES_TABLE}",
            self._tag,
            self.claims,
            self.target.lease_seconds,
            self._session,
            f"{what} on {masked(url)}",
        )
        try:
            self._ensure_schema()
            self._abort_sessions(self.lease.acquire(self._run, self._session_id()))
        except BaseException as exc:
            self._close_connection()
            if is_error(exc):
                raise self._refused("take", exc) from None
            raise
        self.lease.start()

    # -- sessions ------------------------------------------------------------------------

    def _connect(self) -> Any:
        conn = connect(self.target, self._creds, self.url)
        self._in_transaction = False
        self._stage_made = False
        return conn

    def _session_id(self) -> str | None:
        session = getattr(self.conn, "session_id", None)
        return None if session is None else str(session)

    def _session(self) -> tuple[Run, Callable[[], None]]:
        """A session of its own, for the lease's renewals."""
        conn = connect(self.target, self._creds, self.url)
        return (lambda sql, params: _run_on(conn, sql, params)), conn.close

    def _run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple], int]:
        self._refuse_ddl_in_transaction(sql)
        return _run_on(self.conn, sql, params)

    def _abort_sessions(self, sessions: Iterable[str]) -> None:
        """End sessions that left a transaction open (a run that died, or this run's own lost
        session): Snowflake keeps their locks until it aborts them itself, after minutes."""
        for session in sessions:
            try:
                self._run("SELECT SYSTEM$ABORT_SESSION(?)", [int(session)])
            except Exception as exc:  # Snowflake aborts it in the end anyway
                log.info("could not end Snowflake session %s: %s", session, self._safe(exc))

    def _safe(self, message: object) -> str:
        return self._creds.hide(message)

    def _reconnecting(self, action: Callable[[], T]) -> T:
        """Run `action`; if the session is lost, the transaction in flight went with it: run it
        again on a new session, a few times, before the endpoint fails."""
        problem = ""
        for attempt in range(1, RECONNECTS + 1):
            if self.lease is not None:
                self.lease.check()
            try:
                return action()
            except Exception as exc:
                if not session_lost(exc):  # a statement's own error, or not Snowflake's
                    raise
                problem = self._safe(exc)
                if attempt == RECONNECTS:
                    break
                log.warning("lost the session with Snowflake (%s); reconnecting", problem)
                old = self._session_id()
                self._close_connection()
                time.sleep(0.2 * attempt)
                try:
                    self.conn = self._connect()
                    if self.lease is not None:
                        self.lease.moved(self._run, self._session_id())
                except Exception:  # the next attempt says if it failed
                    continue
                self._abort_sessions([old] if old else [])
        raise DestinationError(f"lost the session with {masked(self.url)}: {problem}")

    def _close_connection(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release(self._run if not self.conn.is_closed() else None)
        self._close_connection()

    # -- what SqlDestination needs -------------------------------------------------------

    def _refuse_ddl_in_transaction(self, sql: str) -> None:
        if self._in_transaction and DDL.match(sql):
            raise RuntimeError(
                f"DDL inside a transaction (Snowflake would commit the batch halfway): {sql[:60]}"
            )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._run(sql, params)[0]

    def count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a DML statement; how many rows it wrote."""
        return max(self._run(sql, params)[1], 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """An `INSERT ... VALUES (?, ...)` for many rows, as one statement per thousand rows
        (the emulator cannot read the connector's array binding of timestamps)."""
        shape = INSERT_VALUES.match(sql)
        if shape is None:
            raise ValueError(f"executemany takes INSERT ... VALUES (?, ...): {sql[:60]}")
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            values = ", ".join([shape["row"]] * len(chunk))
            self._run(shape["head"] + values, [v for row in chunk for v in row])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._run("BEGIN")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with contextlib.suppress(Exception):  # a lost session rolled it back already
                self._run("ROLLBACK")
            raise
        self._in_transaction = False
        self._run("COMMIT")

    @contextlib.contextmanager
    def stage(self, name: str, table: pa.Table) -> Iterator[str]:
        """Load `table` into a staging table through the stage (outside any transaction)."""
        staged = self._load(name, table)
        try:
            yield staged
        finally:
            if self.target.staging == "transient":  # a temporary one goes with the session
                with contextlib.suppress(Exception):
                    self._run(f"DROP TABLE IF EXISTS {staged}")

    @contextlib.contextmanager
    def staged_tables(self, name: str, tables: Sequence[pa.Table]) -> Iterator[list[str]]:
        """Several tables staged at once (before a transaction that reads them)."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.stage(f"{name}_{i}", t)) for i, t in enumerate(tables)]

    def _load(self, name: str, table: pa.Table) -> str:
        if self._in_transaction:
            raise RuntimeError("staging inside a transaction: Snowflake would commit it")
        columns = ", ".join(f"{quote(f.name)} {_staging_type(f.type)}" for f in table.schema)
        if self.target.staging == "temporary":
            staged = f"{self.s}.{quote(f'_ogsync_{name}')}"
            self._run(f"CREATE OR REPLACE TEMPORARY TABLE {staged} ({columns})")
        else:  # what the emulator can COPY into: a table of the schema, named for this run
            staged = f"{self.s}.{quote(f'_ogsync_{self._tag}_{name}')}"
            self._run(f"CREATE OR REPLACE TRANSIENT TABLE {staged} ({columns})")
        if not table.num_rows:
            return staged
        if not self._stage_made:
            self._run(f"CREATE TEMPORARY STAGE IF NOT EXISTS {self.s}.{STAGE}")
            self._stage_made = True
        folder = f"{self._tag}/{uuid.uuid4().hex}"
        with tempfile.TemporaryDirectory(prefix="ogsync-") as scratch:  # owner-only
            path = Path(scratch) / "batch.parquet"
            pq.write_table(table, path)
            self._run(
                f"PUT 'file://{path.as_posix()}' @{self.s}.{STAGE}/{folder} AUTO_COMPRESS=FALSE"
            )
        rows, _ = self._run(
            f"COPY INTO {staged} FROM @{self.s}.{STAGE}/{folder}/ FILE_FORMAT = (TYPE = PARQUET) "
            "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE PURGE = TRUE"
        )
        loaded = sum(int(row[3] or 0) for row in rows) if rows and len(rows[0]) > 3 else 0
        if loaded != table.num_rows:
            raise DestinationError(
                f"COPY INTO loaded {loaded} of {table.num_rows} rows into {staged}: {rows[:1]}"
            )
        return staged

    # -- schema --------------------------------------------------------------------------

    def view_source(self, ep: Endpoint) -> str:
        # In upper case, as stored: the view reads the same in a session that does not
        # resolve quoted names in upper case (an analyst's).
        return f"{quote(self.schema.upper())}.{quote(ep.name.upper())}"

    def _ensure_schema(self) -> None:
        """Create the schema if it is missing. Only then: a role that may use a schema made
        for it need not be allowed to create schemas in the database."""
        (found,) = self.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE upper(schema_name) = upper(?)",
            [self.schema],
        )[0]
        if not found:
            self._run(f"CREATE SCHEMA IF NOT EXISTS {self.s}")

    def existing_tables(self) -> set[str]:
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables WHERE upper(table_schema) = upper(?)",
            [self.schema],
        )
        return {row[0].lower() for row in rows}

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        try:
            self._reconnecting(lambda: self._prepare(list(endpoints)))
        except Exception as exc:
            if is_error(exc):
                raise self._refused("prepare", exc) from None
            raise

    def _refused(self, doing: str, exc: BaseException) -> DestinationError:
        """Making or taking the schema failed: most often a grant the role lacks."""
        return DestinationError(
            f"cannot {doing} schema {self.schema} on {masked(self.url)}: {self._safe(exc)} "
            "(ogsync check names any grant the role lacks)"
        )

    def _prepare(self, endpoints: list[Endpoint]) -> None:
        """Each DDL statement is its own transaction on Snowflake; all of them are idempotent.
        The bookkeeping tables are those of `SqlDestination.prepare` (the contract suite reads
        both)."""
        self._prepared = {ep.name: ep for ep in endpoints}
        sql_rules.check_rules(self, endpoints)  # before anything is changed
        self._ensure_schema()
        columns = self._known_columns()
        for ep in endpoints:
            self._make_table(ep, columns)
        s, json = self.s, self.dialect.json
        for name, definition in (
            (STATE_TABLE, "endpoint VARCHAR PRIMARY KEY, watermark TIMESTAMP_TZ, "
             "checkpoint_start TIMESTAMP_TZ, checkpoint_end TIMESTAMP_TZ, checkpoint_url VARCHAR, "
             "checkpoint_watermark TIMESTAMP_TZ, last_records BIGINT, updated_at TIMESTAMP_TZ"),
            (RUNS_TABLE, "run_id VARCHAR, endpoint VARCHAR, kind VARCHAR, "
             "started_at TIMESTAMP_TZ, window_start TIMESTAMP_TZ, window_end TIMESTAMP_TZ, "
             "pages BIGINT, requests BIGINT, retries BIGINT, rate_limit_waits BIGINT, "
             "records BIGINT, soft_deletes BIGINT, warnings BIGINT, status VARCHAR, "
             "error VARCHAR, finished_at TIMESTAMP_TZ, rejected BIGINT, clock VARCHAR, "
             "PRIMARY KEY (run_id, endpoint)"),
            (REJECTED_TABLE, "source VARCHAR, item_id VARCHAR, reason VARCHAR, payload VARCHAR, "
             "run_id VARCHAR, rejected_at TIMESTAMP_TZ"),
            (DELETIONS_TABLE, "endpoint VARCHAR, record_id VARCHAR, deleted_at TIMESTAMP_TZ, "
             "reason VARCHAR, source VARCHAR, recorded_at TIMESTAMP_TZ"),
            (BACKFILL_TABLE, "endpoint VARCHAR, window_start TIMESTAMP_TZ, "
             "window_end TIMESTAMP_TZ, next_url VARCHAR, done_at TIMESTAMP_TZ, "
             "PRIMARY KEY (endpoint, window_start, window_end)"),
            (EVENTS_TABLE, "event_id VARCHAR PRIMARY KEY, type VARCHAR, created TIMESTAMP_TZ, "
             f"object_type VARCHAR, object_id VARCHAR, payload {json}, stored_at TIMESTAMP_TZ"),
        ):  # fmt: skip
            if name not in columns:
                doc = BOOKKEEPING_DOCS[name]
                self._run(
                    f"CREATE TABLE IF NOT EXISTS {s}.{name} ({_described(definition, doc)}) "
                    f"COMMENT = {history.comment_literal(doc.description)}"
                )
        sql_rules.create_rules_table(self)
        sql_dictionary.create_codes(self)  # the documented codes, as every warehouse has them
        history.record_rules(self, endpoints)
        for ep in endpoints:
            if ep.history and history.create_history(self, ep, columns):
                seeded = history.seed(self, ep)
                if seeded:
                    log.warning(
                        "%s: history begins now, with its %d current rows; earlier versions "
                        "were never seen", ep.name, seeded,
                    )  # fmt: skip
        # Outside any transaction: each comment is DDL, its own transaction on Snowflake.
        sql_dictionary.comment(self, endpoints)

    def _known_columns(self) -> dict[str, set[str]]:
        """Table (and view) -> its columns, all in lower case, from one query."""
        columns: dict[str, set[str]] = {}
        for table, column in self.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE upper(table_schema) = upper(?)",
            [self.schema],
        ):
            columns.setdefault(table.lower(), set()).add(column.lower())
        return columns

    def _create_table(self, ep: Endpoint) -> None:
        self._make_table(ep, self._known_columns())

    def recreate(self, ep: Endpoint) -> None:
        """The endpoint's tables and view as `prepare` makes them (after a rewrite)."""
        self._create_table(ep)
        if ep.history:
            history.create_history(self, ep, self._known_columns())

    def rewrite(self, governance: Governance) -> list[str]:
        done = self._reconnecting(lambda: history.rewrite(self, governance))
        if done:  # columns and views were made again, without their comments
            self._reconnecting(
                lambda: sql_dictionary.comment(self, governance.endpoints(ENDPOINTS))
            )
        return done

    # -- the data dictionary's comments ----------------------------------------------------

    def commentable(self) -> tuple[dict[str, str], dict[str, set[str]]]:
        """Names in lower case, as the dictionary has them (Snowflake keeps them in upper
        case). Snowflake lists views among the tables; the emulator only among the views."""
        where = "WHERE upper(table_schema) = upper(?)"
        relations = {
            str(name).lower(): "VIEW" if kind == "VIEW" else "TABLE"
            for name, kind in self.execute(
                f"SELECT table_name, table_type FROM information_schema.tables {where}",
                [self.schema],
            )
        }
        for (name,) in self.execute(
            f"SELECT table_name FROM information_schema.views {where}", [self.schema]
        ):
            relations[str(name).lower()] = "VIEW"
        return relations, self._known_columns()

    def stored_comments(self) -> dict[tuple[str, str | None], str]:
        where = "WHERE upper(table_schema) = upper(?)"
        rows = self.execute(
            f"SELECT table_name, NULL, comment FROM information_schema.tables {where} "
            f"UNION ALL SELECT table_name, NULL, comment FROM information_schema.views {where} "
            f"UNION ALL SELECT table_name, column_name, comment FROM information_schema.columns "
            f"{where}",
            [self.schema] * 3,
        )
        return sql_dictionary.comments_by_name(
            [(str(r).lower(), None if c is None else str(c).lower(), t) for r, c, t in rows]
        )

    def comment_statement(self, kind: str, relation: str, column: str | None, text: str) -> str:
        """A column's comment by ALTER TABLE|VIEW ... ALTER COLUMN ... COMMENT: Snowflake
        documents COMMENT ON COLUMN for table columns; this form serves a view's as well."""
        name = f"{self.s}.{quote(relation)}"
        literal = history.comment_literal(text)
        if column is None:
            return f"COMMENT ON {kind} {name} IS {literal}"
        return f"ALTER {kind} {name} ALTER COLUMN {quote(column)} COMMENT {literal}"

    def _make_table(self, ep: Endpoint, known: Mapping[str, set[str]]) -> None:
        """The endpoint's table, columns added since, and its views of the rows not
        soft-deleted, `<table>_current` and its deprecated alias `<table>_live` (remade
        whenever the table changes; COPY GRANTS keeps what analysts were granted on them).
        Each is made with the data dictionary's comments."""
        sql = self.table_sql(ep)
        wanted = self._columns(ep)
        docs = sql_dictionary.endpoint_docs(ep)
        texts = sql_dictionary.column_texts(docs[ep.name])
        current, alias = (ep.name + s for s in (CURRENT_VIEW_SUFFIX, DEPRECATED_VIEW_SUFFIX))
        changed = current not in known or alias not in known
        if ep.name not in known:
            columns = ", ".join(history.described(name, kind, texts) for name, kind in wanted)
            self._run(
                f"CREATE TABLE IF NOT EXISTS {sql.table} ({columns}, "
                f"PRIMARY KEY ({quote(sql.key)})) "
                f"COMMENT = {history.comment_literal(docs[ep.name].description)}"
            )
            changed = True
        else:
            for name, kind in wanted:  # fields added to the table since it was made
                if name.lower() not in known[ep.name]:
                    self._run(
                        f"ALTER TABLE {sql.table} ADD COLUMN IF NOT EXISTS "
                        f"{history.described(name, kind, texts)}"
                    )
                    changed = True
        if not changed:
            return
        # The view's column list, in the table's order (SELECT *), carries their comments.
        view_texts = sql_dictionary.column_texts(docs[current])
        order = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE upper(table_schema) = upper(?) AND upper(table_name) = upper(?) "
            "ORDER BY ordinal_position",
            [self.schema, ep.name],
        )
        listed = ", ".join(_view_column(str(column).lower(), view_texts) for (column,) in order)
        for view, columns in ((current, f" ({listed})"), (alias, "")):
            self._run(
                f"CREATE OR REPLACE VIEW {self.s}.{quote(view)}{columns} COPY GRANTS "
                f"COMMENT = {history.comment_literal(docs[view].description)} AS "
                f"SELECT * FROM {self.view_source(ep)} WHERE _deleted_at IS NULL"
            )

    # -- writing -------------------------------------------------------------------------

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        return self._reconnecting(lambda: self._write(writes))

    def _write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        with contextlib.ExitStack() as staging:
            staging.callback(self._staged.clear)
            for i, (ep, batch, commit) in enumerate(writes):
                if batch is not None and batch.num_rows:
                    name = f"batch_{i}_{ep.name}"
                    self._staged[id(batch)] = staging.enter_context(self.stage(name, batch))
                if commit.refreshed_keys is not None:
                    keys = pa.table({"key": commit.refreshed_keys})
                    name = f"keys_{i}_{ep.name}"
                    staged = staging.enter_context(self.stage(name, keys))
                    self._staged[id(commit.refreshed_keys)] = staged
            return SqlDestination.write(self, writes)

    def _newest(self, ep: Endpoint, staged: str, batch: pa.Table) -> str:
        """The staged batch with one row a key: where keys repeat, the copy `newer_wins` would
        keep (the newer; where any copy has no update time, the one fetched last)."""
        sql = self.table_sql(ep)
        if pc.count_distinct(batch.column(sql.key), mode="all").as_py() == batch.num_rows:
            return staged
        key, upd = quote(sql.key), sql.update_column
        if upd is None:
            order = "_seq DESC"
        else:
            undated = (
                f"max(CASE WHEN {quote(upd)} IS NULL THEN 1 ELSE 0 END) OVER (PARTITION BY {key})"
            )
            order = (
                f"CASE WHEN _undated = 1 THEN NULL ELSE {quote(upd)} END DESC NULLS LAST, _seq DESC"
            )
            staged = f"(SELECT *, {undated} AS _undated FROM {staged}) AS dated"
        return (
            f"(SELECT * FROM {staged} QUALIFY row_number() OVER (PARTITION BY {key} "
            f"ORDER BY {order}) = 1)"
        )

    def _upsert(
        self,
        ep: Endpoint,
        batch: pa.Table,
        run_id: str,
        synced_at: datetime,
        *,
        deleted: frozenset[str] | None = None,
    ) -> int:
        ep = self.governed(ep)
        staged = self._staged[id(batch)]
        sql = self.table_sql(ep)
        key = quote(sql.key)
        newest = self._newest(ep, staged, batch)

        def value(column: str, kind: FieldType | None) -> str:
            named = f"excluded.{quote(column)}"
            return f"parse_json({named})" if kind in JSON_TYPES else named

        typed = [(f.column, value(f.column, f.type)) for f in ep.fields]
        meta = [
            ("_raw", value("_raw", FieldType.JSON)),
            ("_updated_latest", "excluded._updated_latest"),
            ("_synced_at", _ts()),
            ("_run_id", "?"),
            ("_deleted_at", "NULL"),
            ("_deleted_reason", "NULL"),
        ]
        assert [name for name, _ in meta] == list(META_COLUMNS)
        sets = ", ".join(f"{quote(c)} = {v}" for c, v in typed if c != sql.key)
        sets += ", " + ", ".join(f"{c} = {v}" for c, v in meta)
        updated = self.count(
            f"UPDATE {sql.table} AS cur SET {sets} FROM {newest} AS excluded "
            f"WHERE cur.{key} = excluded.{key} AND {sql.newer_wins()}",
            [synced_at, run_id],
        )
        names = [quote(c) for c, _ in typed] + [c for c, _ in meta]
        inserted = self.count(
            f"INSERT INTO {sql.table} ({', '.join(names)}) "
            f"SELECT {', '.join(v for _, v in typed + meta)} FROM {newest} AS excluded "
            f"WHERE NOT EXISTS (SELECT 1 FROM {sql.table} AS cur WHERE cur.{key} = excluded.{key})",
            [synced_at, run_id],
        )
        if ep.name in DELETABLE_NAMES:  # deletions that arrived before these records did
            column = quote(ep.column_key)
            self._apply_tombstones(
                ep, f"cur.{column} IN (SELECT {column} FROM {staged})", deleted=deleted
            )
        if ep.history:
            history.add_versions(self, ep, staged, synced_at, run_id)
        return updated + inserted

    def _apply_tombstones(
        self,
        ep: Endpoint,
        where: str,
        params: Sequence[Any] = (),
        *,
        deleted: frozenset[str] | None = None,
    ) -> int:
        """As `SqlDestination._apply_tombstones`, counted by the UPDATE (no RETURNING here);
        `where` may name the row as `cur`."""
        ep = self.governed(ep)
        sql = self.table_sql(ep)
        upd = f"cur.{quote(sql.update_column)}" if sql.update_column else "NULL"
        done = 0
        for source, column in tombstone_links(ep, deleted):
            done += self.count(
                f"UPDATE {sql.table} AS cur SET _deleted_at = d.deleted_at, "
                "_deleted_reason = d.reason FROM (SELECT record_id, max(deleted_at) AS "
                f"deleted_at, max(reason) AS reason FROM {self.s}.{DELETIONS_TABLE} "
                f"WHERE endpoint = ? AND {DeletionReason.is_webhook_sql('reason')} "
                "GROUP BY record_id) AS d "
                f"WHERE cur.{column} = d.record_id AND cur._deleted_at IS NULL "
                f"AND ({upd} IS NULL OR {upd} <= d.deleted_at) AND ({where})",
                [source.name, *params],
            )
        if done and ep.history:  # their last versions close
            key = quote(ep.column_key)
            history.redraw(
                self,
                ep,
                f"SELECT cur.{key} FROM {sql.table} AS cur WHERE cur._deleted_at IS NOT NULL "
                f"AND ({where})",
                params,
            )
        return done

    def apply_events(self, events: Sequence[WebhookEvent]) -> ApplyResult:
        if not events:
            return ApplyResult()
        return self._reconnecting(lambda: self._apply_events(events))

    def _apply_events(self, events: Sequence[WebhookEvent]) -> ApplyResult:
        result = ApplyResult()
        now = datetime.now(UTC)
        table = pa.table(
            {
                "event_id": pa.array([e.event_id for e in events], pa.string()),
                "type": pa.array([e.type for e in events], pa.string()),
                "created": pa.array(
                    [datetime.fromtimestamp(e.created, UTC) if e.created else None for e in events],
                    pa.timestamp("us", tz="UTC"),
                ),
                "object_type": pa.array([_text(e.object_type) for e in events], pa.string()),
                "object_id": pa.array([_text(e.object_id) for e in events], pa.string()),
                "payload": pa.array([e.payload for e in events], pa.string()),
            }
        )
        once = "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY event_id) = 1"
        with self.stage("events", table) as staged, self.transaction():
            result.stored = self.count(
                f"INSERT INTO {self.s}.{EVENTS_TABLE} (event_id, type, created, object_type, "
                "object_id, payload, stored_at) SELECT event_id, type, created, object_type, "
                f"object_id, parse_json(payload), {_ts()} FROM {staged} AS e WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self.s}.{EVENTS_TABLE} AS s WHERE s.event_id = e.event_id) "
                f"{once}",
                [now],
            )
            for event in DELETION_EVENTS.values():
                result.deletions += self.count(
                    f"INSERT INTO {self.s}.{DELETIONS_TABLE} (endpoint, record_id, deleted_at, "
                    f"reason, source, recorded_at) SELECT ?, object_id, created, ?, event_id, "
                    f"{_ts()} FROM {staged} AS e WHERE type = ? AND object_id IS NOT NULL "
                    f"AND NOT EXISTS (SELECT 1 FROM {self.s}.{DELETIONS_TABLE} AS d "
                    f"WHERE d.reason = ? AND d.source = e.event_id) {once}",
                    [event.endpoint.name, event.reason, now, event.event_type, event.reason],
                )
            # The rows these events name (an order's items by their order): a deletion
            # recorded before applied to its rows then, or when they arrived.
            named = f"(SELECT object_id FROM {staged} WHERE object_id IS NOT NULL)"
            for ep in DELETABLE:
                columns = [ep.column_key] + [
                    event.cascade[1]
                    for event in DELETION_EVENTS.values()
                    if event.cascade and event.cascade[0].name == ep.name
                ]
                where = " OR ".join(f"cur.{quote(c)} IN {named}" for c in columns)
                result.soft_deleted += self._apply_tombstones(ep, where)
        return result

    def soft_delete(
        self, ep: Endpoint, keys: Sequence[str], reason: DeletionReason, source: str
    ) -> int:
        if not keys:
            return 0
        staged_keys = pa.chunked_array([pa.array(list(keys), pa.string())])

        def soft_delete() -> int:
            with self.stage(f"keys_{ep.name}", pa.table({"key": staged_keys})) as staged:
                self._staged[id(staged_keys)] = staged
                try:
                    with self.transaction():
                        return self._soft_delete(
                            ep, staged_keys, "IN", reason, source, datetime.now(UTC)
                        )
                finally:
                    self._staged.clear()

        return self._reconnecting(soft_delete)

    def _soft_delete(
        self,
        ep: Endpoint,
        keys: pa.ChunkedArray,
        membership: str,
        reason: str,
        source: str,
        now: datetime,
    ) -> int:
        """Tombstones first, for the rows the UPDATE then soft-deletes (the same condition)."""
        ep = self.governed(ep)
        sql = self.table_sql(ep)
        key = quote(sql.key)
        where = (
            f"_deleted_at IS NULL AND {key} {membership} (SELECT key FROM {self._staged[id(keys)]})"
        )
        self.execute(
            f"INSERT INTO {self.s}.{DELETIONS_TABLE} (endpoint, record_id, deleted_at, reason, "
            f"source, recorded_at) SELECT ?, {key}, {_ts()}, ?, ?, {_ts()} FROM {sql.table} "
            f"WHERE {where}",
            [ep.name, now, reason, source, now],
        )
        gone = self.count(
            f"UPDATE {sql.table} SET _deleted_at = {_ts()}, _deleted_reason = ? WHERE {where}",
            [now, reason],
        )
        if gone and ep.history:  # their last versions close
            history.redraw(
                self,
                ep,
                f"SELECT {key} FROM {sql.table} WHERE _deleted_at = {_ts()} "
                "AND _deleted_reason = ?",
                [now, reason],
            )
        return gone

    def _save_state(self, ep: Endpoint, commit: Commit, now: datetime) -> None:
        """As `SqlDestination._save_state`, without ON CONFLICT: one UPDATE sets what the
        commit moves, on a row made first if the UPDATE found none (each statement is a round
        trip, and the row is there after an endpoint's first batch)."""
        table = f"{self.s}.{STATE_TABLE}"
        sets, params = [f"updated_at = {_ts()}"], [now]
        if commit.keep_checkpoint:
            cp = commit.checkpoint
            sets += [
                f"checkpoint_start = {_ts()}",
                f"checkpoint_end = {_ts()}",
                "checkpoint_url = ?",
                f"checkpoint_watermark = {_ts()}",
            ]
            params += [
                cp.window_start if cp else None,
                cp.window_end if cp else None,
                cp.next_url if cp else None,
                cp.watermark_after if cp else None,
            ]
        if commit.watermark is not None and commit.watermark_replaces:
            sets.append(f"watermark = {_ts()}")
            params.append(commit.watermark)
        elif commit.watermark is not None:  # a watermark never moves backwards
            sets.append(
                f"watermark = CASE WHEN watermark IS NULL OR watermark < {_ts()} "
                f"THEN {_ts()} ELSE watermark END"
            )
            params += [commit.watermark, commit.watermark]
        if commit.last_records is not None:
            sets.append("last_records = ?")
            params.append(commit.last_records)
        update = f"UPDATE {table} SET {', '.join(sets)} WHERE endpoint = ?", [*params, ep.name]
        if not self.count(*update):
            self.execute(
                f"INSERT INTO {table} (endpoint, updated_at) VALUES (?, {_ts()})", [ep.name, now]
            )
            self.count(*update)
        if commit.backfill_window is not None:
            done = None if commit.backfill_next else now
            backfill = f"{self.s}.{BACKFILL_TABLE}"
            window = [ep.name, *commit.backfill_window]
            moved = self.count(
                f"UPDATE {backfill} SET next_url = ?, done_at = {_ts()} WHERE endpoint = ? "
                f"AND window_start = {_ts()} AND window_end = {_ts()}",
                [commit.backfill_next, done, *window],
            )
            if not moved:
                self.execute(
                    f"INSERT INTO {backfill} (endpoint, window_start, window_end, next_url, "
                    f"done_at) VALUES (?, {_ts()}, {_ts()}, ?, {_ts()})",
                    [*window, commit.backfill_next, done],
                )

    def run_slot(self, column: str) -> str:
        return _ts() if column in RUN_STAMPS else "?"

    def upserted(self, statement: str, params: Sequence[Any]) -> int:
        return self.count(statement, params)

    def log_run(self, run: RunLog) -> None:
        """Outside a transaction: each statement is a round trip to Snowflake, and a run logs
        each endpoint as it starts and ends. The row's UPDATE, or INSERT when it finds none,
        each commits whole, and run again after a lost session they write the same row."""
        self._reconnecting(lambda: self._upsert_run(run))

    def reject(self, rows: Sequence[Rejected], run_id: str | None = None) -> None:
        self._reconnecting(lambda: SqlDestination.reject(self, rows, run_id))

    # -- reading -------------------------------------------------------------------------

    def load_states(self) -> Mapping[str, EndpointState]:
        return self._reconnecting(lambda: SqlDestination.load_states(self))

    def load_backfill(self, ep: Endpoint) -> dict[tuple[datetime, datetime], str | None]:
        return self._reconnecting(lambda: SqlDestination.load_backfill(self, ep))

    def unsent_keys(self, ep: Endpoint) -> set[str]:
        return self._reconnecting(lambda: SqlDestination.unsent_keys(self, ep))

    def status_facts(self, endpoints: Iterable[Endpoint]) -> StatusFacts:
        return self._reconnecting(lambda: SqlDestination.status_facts(self, endpoints))


def _described(definition: str, doc: TableDoc) -> str:
    """A CREATE TABLE's column list (`name TYPE [constraint]`, one-word types) with each
    column's description where Snowflake's grammar puts it, after the type; a key clause,
    whose parentheses hold commas, is left as it is."""
    texts = sql_dictionary.column_texts(doc)
    out = []
    for part in re.split(r",\s*(?![^()]*\))", definition):
        name, kind, *rest = part.split(" ", 2)
        if name in texts:
            part = " ".join([name, kind, f"COMMENT {history.comment_literal(texts[name])}", *rest])
        out.append(part)
    return ", ".join(out)


def _view_column(name: str, texts: Mapping[str, str]) -> str:
    text = texts.get(name)
    return quote(name) + (f" COMMENT {history.comment_literal(text)}" if text else "")


def _run_on(conn: Any, sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]:
    """One statement on a session: its rows (DML answers with a row of counts) and rowcount."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, [_bindable(p) for p in params] or None)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.rowcount if cursor.rowcount is not None else -1
    finally:
        cursor.close()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def open_warehouse(url: str, schema: str, options: OpenOptions) -> SnowflakeDestination:
    return SnowflakeDestination(url, schema, options.claims, read_only=options.read_only)
