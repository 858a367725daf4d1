"""The warehouse logic every SQL destination shares: schema, newer-wins upserts, soft deletes,
checkpoints and the run log, each batch in one transaction.

A dialect supplies its types and parameter style; a destination supplies a connection, and a
way to put an Arrow batch in front of the database as a relation (`stage`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ogsync.deletions import DELETABLE, DELETION_EVENTS, UNSENT
from ogsync.destinations import sql_dictionary, sql_history, sql_rules
from ogsync.destinations.base import (
    BACKFILL_TABLE,
    CURRENT_VIEW_SUFFIX,
    DELETIONS_TABLE,
    DEPRECATED_VIEW_SUFFIX,
    EVENTS_TABLE,
    META_COLUMNS,
    REJECTED_TABLE,
    RUN_COLUMNS,
    RUNS_TABLE,
    STATE_TABLE,
    ApplyResult,
    BatchWrite,
    Commit,
    Rejected,
    RunLog,
    RunRow,
    StatusFacts,
    TableSql,
    TableUpkeep,
    WebhookEvent,
    WriteResult,
    quote,
)
from ogsync.endpoints import ENDPOINTS, Endpoint, FieldType
from ogsync.governance import Governance
from ogsync.plan import Checkpoint, EndpointState
from ogsync.vocabulary import DeletionReason

log = logging.getLogger("ogsync.destinations")
DELETABLE_NAMES = frozenset(ep.name for ep in DELETABLE)


@dataclass(frozen=True)
class Dialect:
    types: Mapping[FieldType, str]
    json: str  # the JSON type: _raw and the JSON fields
    param: str = "?"
    # A hash of a JSON value's content, the same for the text staged and the value stored.
    hash_template: str = "md5(CAST({} AS VARCHAR))"
    # The warehouse keeps COMMENT ON tables, views and columns: `prepare` writes the data
    # dictionary's descriptions there (ogsync.destinations.sql_dictionary).
    comments: bool = False
    # The database finds a batch's keys in a table through indexes, one key at a time
    # (PostgreSQL): each history table gets an index on its key, and a batch's checks are
    # written as lookups by key, which its planner would otherwise answer with a scan of the
    # whole table. DuckDB joins a batch to a table by hash over a columnar scan, which is
    # cheap, and never reads such an index: it would only hold memory that grows with the
    # table.
    key_lookups: bool = True
    # `_raw`'s type where a table is created, when the warehouse is told how to store it.
    raw_column: str | None = None
    # The errors a duplicate key raises, where a plain INSERT costs much less than one with
    # `ON CONFLICT` (DuckDB: about a third): a table empty when a run begins is then loaded
    # with plain INSERTs until one meets a stored key (`SqlDestination._first_load`).
    # PostgreSQL's costs no more, so it keeps the one path.
    duplicate_key: tuple[type[Exception], ...] = ()
    # A staged batch's `_raw` is already of the JSON type, so statements take it as it is:
    # DuckDB reads Arrow's JSON extension type as its own (`DuckDBDestination.stage`), while
    # a cast would parse every record again to check it, which costs more than its insert.
    staged_json: bool = False

    @property
    def raw_type(self) -> str:
        return self.raw_column or self.json

    @property
    def staged_raw(self) -> str:
        """A staged batch's `_raw` as the JSON type."""
        return "_raw" if self.staged_json else f"CAST(_raw AS {self.json})"

    def column_type(self, kind: FieldType) -> str:
        return self.types[kind]

    def content_hash(self, value: str) -> str:
        return self.hash_template.format(value)

    @property
    def meta_types(self) -> dict[str, str]:
        return {
            "_raw": self.raw_type,
            "_updated_latest": "TIMESTAMPTZ",
            "_synced_at": "TIMESTAMPTZ",
            "_run_id": "VARCHAR",
            "_deleted_at": "TIMESTAMPTZ",
            "_deleted_reason": "VARCHAR",
        }


class SqlDestination(ABC):
    dialect: Dialect
    schema: str

    # -- what each database provides -----------------------------------------------------

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement (placeholders `?`); return its rows, if any."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def execute_script(self, statements: Sequence[str]) -> None:
        """Run statements that take no parameters, in order. A database that runs several
        in one call overrides this: a new warehouse's comments are hundreds of statements."""
        for statement in statements:
            self.execute(statement)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Commit on success, roll back on any error."""

    @abstractmethod
    def stage(self, name: str, table: pa.Table) -> AbstractContextManager[str]:
        """Make `table` queryable as a relation for the duration; yields its name."""

    # -- shared ----------------------------------------------------------------------------

    def q(self, sql: str) -> str:
        """Our `?` placeholders in the dialect's style (`%s` escapes literal `%` first)."""
        if self.dialect.param == "?":
            return sql
        return sql.replace("%", "%%").replace("?", self.dialect.param)

    def table_sql(self, ep: Endpoint) -> TableSql:
        return TableSql(ep, self.s)

    @property
    def s(self) -> str:
        """The schema as every statement names it."""
        return quote(self.schema)

    def view_source(self, ep: Endpoint) -> str:
        """How a view in the schema names the endpoint's table."""
        return self.table_sql(ep).table

    # Narrows information_schema to this warehouse's own catalog, where there may be others.
    in_catalog = ""

    def existing_tables(self) -> set[str]:
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = ? {self.in_catalog}",
            [self.schema],
        )
        return {row[0] for row in rows}

    # The endpoints as `prepare` was given them (with the settings' rules): the tables'
    # columns and which keep history. A caller may name an endpoint by its plain table entry.
    _prepared: Mapping[str, Endpoint] = MappingProxyType({})  # set per instance in prepare

    def governed(self, ep: Endpoint) -> Endpoint:
        return self._prepared.get(ep.name, ep)

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        endpoints = list(endpoints)
        self._prepared = {ep.name: ep for ep in endpoints}
        self._met_stored_keys = frozenset()
        self._first_load = frozenset()
        with self.transaction():
            sql_rules.check_rules(self, endpoints)  # before anything is changed
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.s}")
            for ep in endpoints:
                self._create_table(ep)
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.s}.{STATE_TABLE} (endpoint VARCHAR PRIMARY KEY, "
                "watermark TIMESTAMPTZ, checkpoint_start TIMESTAMPTZ, checkpoint_end TIMESTAMPTZ, "
                "checkpoint_url VARCHAR, checkpoint_watermark TIMESTAMPTZ, last_records BIGINT, "
                "updated_at TIMESTAMPTZ)"
            )
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.s}.{RUNS_TABLE} (run_id VARCHAR, "
                "endpoint VARCHAR, kind VARCHAR, started_at TIMESTAMPTZ, "
                "window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, pages BIGINT, "
                "requests BIGINT, retries BIGINT, rate_limit_waits BIGINT, records BIGINT, "
                "soft_deletes BIGINT, warnings BIGINT, status VARCHAR, error VARCHAR, "
                "finished_at TIMESTAMPTZ, rejected BIGINT, clock VARCHAR, "
                "PRIMARY KEY (run_id, endpoint))"
            )
            for name, kind in (("rejected", "BIGINT"), ("clock", "VARCHAR")):  # added later
                self.execute(
                    f"ALTER TABLE {self.s}.{RUNS_TABLE} ADD COLUMN IF NOT EXISTS {name} {kind}"
                )
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.s}.{REJECTED_TABLE} (source VARCHAR, "
                "item_id VARCHAR, reason VARCHAR, payload VARCHAR, run_id VARCHAR, "
                "rejected_at TIMESTAMPTZ)"
            )
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.s}.{DELETIONS_TABLE} (endpoint VARCHAR, "
                "record_id VARCHAR, deleted_at TIMESTAMPTZ, reason VARCHAR, source VARCHAR, "
                "recorded_at TIMESTAMPTZ)"
            )
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.s}.{BACKFILL_TABLE} (endpoint VARCHAR, "
                "window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, next_url VARCHAR, "
                "done_at TIMESTAMPTZ, PRIMARY KEY (endpoint, window_start, window_end))"
            )
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.s}.{EVENTS_TABLE} "
                "(event_id VARCHAR PRIMARY KEY, type VARCHAR, created TIMESTAMPTZ, "
                f"object_type VARCHAR, object_id VARCHAR, payload {self.dialect.json}, "
                "stored_at TIMESTAMPTZ)"
            )
            sql_rules.create_rules_table(self)
            sql_rules.record_rules(self, endpoints)
            for ep in endpoints:
                if ep.history and sql_history.create_history(self, ep):
                    seeded = sql_history.seed(self, ep)
                    if seeded:
                        log.warning(
                            "%s: history begins now, with its %d current rows; earlier "
                            "versions were never seen", ep.name, seeded,
                        )  # fmt: skip
            sql_dictionary.create_codes(self)
            sql_dictionary.comment(self, endpoints)
            if self.dialect.duplicate_key:
                self._first_load = frozenset(ep.name for ep in endpoints if self._empty(ep))

    def _empty(self, ep: Endpoint) -> bool:
        """No row in the endpoint's table, nor a version in its history."""
        tables = [self.table_sql(ep).table]
        if ep.history:
            tables.append(sql_history.history_table(self, ep))
        return not any(self.execute(f"SELECT 1 FROM {t} LIMIT 1") for t in tables)

    def _columns(self, ep: Endpoint) -> list[tuple[str, str]]:
        fields = [(f.column, self.dialect.column_type(f.type)) for f in ep.fields]
        return fields + list(self.dialect.meta_types.items())

    def _create_table(self, ep: Endpoint) -> None:
        sql = self.table_sql(ep)
        columns = ", ".join(f"{quote(name)} {kind}" for name, kind in self._columns(ep))
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {sql.table} ({columns}, PRIMARY KEY ({quote(sql.key)}))"
        )
        views = [ep.name + CURRENT_VIEW_SUFFIX, ep.name + DEPRECATED_VIEW_SUFFIX]
        present: dict[str, set[str]] = {}
        for relation, column in self.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            f"WHERE table_schema = ? AND table_name IN (?, ?, ?) {self.in_catalog}",
            [self.schema, ep.name, *views],
        ):
            present.setdefault(relation, set()).add(column)
        existing = present.get(ep.name, set())
        for name, kind in self._columns(ep):  # fields added to the table since it was made
            if name not in existing:
                self.execute(f"ALTER TABLE {sql.table} ADD COLUMN {quote(name)} {kind}")
        # `<table>_current`: the rows not soft-deleted. Its old name, `<table>_live`, read as the
        # API's own `live` field (an active subscription) and is kept one release as an alias.
        # Each is made again only when the table's columns changed: replacing a view drops its
        # comments in some warehouses (DuckDB), which the data dictionary writes (the alias's
        # says it is deprecated).
        columns = {name for name, _ in self._columns(ep)}
        for view in views:
            if present.get(view) != columns:
                self.execute(
                    f"CREATE OR REPLACE VIEW {self.s}.{quote(view)} AS "
                    f"SELECT * FROM {self.view_source(ep)} WHERE _deleted_at IS NULL"
                )

    def stored_comments(self) -> dict[tuple[str, str | None], str] | None:
        """The comments the schema holds, by (relation, column or None); None when the
        warehouse can't tell, and every comment is written again."""
        return None

    def commentable(self) -> tuple[dict[str, str], dict[str, set[str]]]:
        """The schema's relations (name -> TABLE or VIEW) and each one's columns, as the data
        dictionary names them."""
        relations = {
            str(name): "VIEW" if kind == "VIEW" else "TABLE"
            for name, kind in self.execute(
                "SELECT table_name, table_type FROM information_schema.tables "
                f"WHERE table_schema = ? {self.in_catalog}",
                [self.schema],
            )
        }
        columns: dict[str, set[str]] = {}
        for name, column in self.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            f"WHERE table_schema = ? {self.in_catalog}",
            [self.schema],
        ):
            columns.setdefault(str(name), set()).add(str(column))
        return relations, columns

    def comment_statement(self, kind: str, relation: str, column: str | None, text: str) -> str:
        """Set the comment of a TABLE or VIEW (`kind`), or of one of its columns."""
        name = f"{self.s}.{quote(relation)}"
        if column is None:
            return f"COMMENT ON {kind} {name} IS {sql_dictionary.literal(text)}"
        return f"COMMENT ON COLUMN {name}.{quote(column)} IS {sql_dictionary.literal(text)}"

    def load_states(self) -> Mapping[str, EndpointState]:
        rows = self.execute(
            "SELECT endpoint, watermark, checkpoint_start, checkpoint_end, checkpoint_url, "
            f"checkpoint_watermark, last_records FROM {self.s}.{STATE_TABLE}"
        )
        states = {}
        for endpoint, watermark, cp_start, cp_end, cp_url, cp_mark, last_records in rows:
            checkpoint = Checkpoint(cp_start, cp_end, cp_url, cp_mark) if cp_url else None
            states[endpoint] = EndpointState(watermark, checkpoint, last_records or 0)
        return states

    def load_backfill(self, ep: Endpoint) -> dict[tuple[datetime, datetime], str | None]:
        rows = self.execute(
            f"SELECT window_start, window_end, next_url, done_at FROM {self.s}.{BACKFILL_TABLE} "
            "WHERE endpoint = ?",
            [ep.name],
        )
        return {(start, end): None if done else link for start, end, link, done in rows}

    def ready(self, ep: Endpoint, batch: pa.Table) -> None:
        """Nothing to prepare by default: the batch is staged as it is."""
        return

    def idle(self) -> None:
        """Nothing to tidy by default."""
        return

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        while True:
            try:
                return self._write_group(writes)
            except _StoredKeyMet as met:  # rolled back: written again, the usual way
                self._first_load -= {met.endpoint}
                self._met_stored_keys |= {met.endpoint}

    def _write_group(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        results: list[WriteResult] = []
        synced_at = datetime.now(UTC)
        with self.transaction():
            deleted = self._webhook_deletions() if _deletable_rows(writes) else frozenset()
            for ep, batch, commit in writes:
                result = WriteResult()
                if batch is not None and batch.num_rows:
                    result.written = self._upsert(
                        ep, batch, commit.run.run_id, synced_at, deleted=deleted
                    )
                if commit.refreshed_keys is not None:
                    result.soft_deleted = self._soft_delete_unseen(
                        ep, commit.refreshed_keys, commit.run.run_id, synced_at
                    )
                results.append(result)
                self.record_rejected(commit.rejected, commit.run.run_id, synced_at)
                self._save_state(ep, commit, synced_at)
                self._upsert_run(commit.run.counted(result))
        return results

    def record_rejected(self, rows: Sequence[Rejected], run_id: str | None, at: datetime) -> None:
        """Keep input that could not be applied, in the caller's transaction."""
        if rows:
            self.executemany(  # executemany puts `?` in the dialect's style itself
                f"INSERT INTO {self.s}.{REJECTED_TABLE} (source, item_id, reason, payload, "
                "run_id, rejected_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.source, r.item_id, r.reason, r.payload, run_id, at) for r in rows],
            )

    def reject(self, rows: Sequence[Rejected], run_id: str | None = None) -> None:
        if rows:
            with self.transaction():
                self.record_rejected(rows, run_id, datetime.now(UTC))

    def typed_columns(self, ep: Endpoint) -> list[str]:
        """The endpoint's columns as a staged batch gives them, JSON fields cast to JSON."""
        json_types = (FieldType.JSON, FieldType.JSON_TEXT)
        return [
            f"CAST({quote(f.column)} AS {self.dialect.json}) AS {quote(f.column)}"
            if f.type in json_types
            else quote(f.column)
            for f in ep.fields
        ]

    def upsert_statement(
        self,
        ep: Endpoint,
        staged: str,
        batch: pa.Table,
        *,
        repeats: bool,
        new_only: bool = False,
        skip: str | None = None,
        plain: bool = False,
    ) -> str:
        """The newer-wins upsert of a staged batch. A batch whose keys repeat is first cut to
        one copy a key (`TableSql.dedupe_order`); most batches' keys don't, and skip that.

        `new_only`: insert only the keys not stored yet, and return them. `skip`: a relation
        of keys (its column `key`) to leave out. `plain`: insert them all, a stored key
        failing the statement."""
        sql = self.table_sql(ep)
        selected = self.typed_columns(ep)
        names = [quote(c) for c in sql.columns] + list(META_COLUMNS)
        key = quote(sql.key)
        if not repeats:
            newest = f"SELECT * FROM {staged}"
        else:
            upd = sql.update_column
            undated = upd is not None and batch.column(upd).null_count > 0
            order = sql.dedupe_order(undated)
            newest = f"SELECT DISTINCT ON ({key}) * FROM {staged} ORDER BY {key}, {order}"
        left_out = f" WHERE {key} NOT IN (SELECT key FROM {skip})" if skip else ""
        insert = (
            f"INSERT INTO {sql.table} AS cur ({', '.join(names)}) "
            f"SELECT {', '.join(selected)}, {self.dialect.staged_raw}, _updated_latest, "
            f"CAST(? AS TIMESTAMPTZ), ?, NULL, NULL FROM ({newest}) AS newest{left_out} "
        )
        if plain:
            return insert
        if new_only:
            return insert + f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
        # Not the key, which the conflict makes equal: DuckDB takes setting it for a change of
        # the key, each row deleted and inserted again, about 16 times the work.
        updates = ", ".join(f"{c} = excluded.{c}" for c in names if c != key)
        return insert + f"ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE {sql.newer_wins()}"

    def _upsert(
        self,
        ep: Endpoint,
        batch: pa.Table,
        run_id: str,
        synced_at: datetime,
        *,
        deleted: frozenset[str] | None = None,
    ) -> int:
        """`deleted`: the endpoints with recorded webhook deletions, if known."""
        ep = self.governed(ep)
        distinct = pc.count_distinct(batch.column(ep.column_key), mode="all").as_py()
        repeats = distinct < batch.num_rows
        with self.stage(f"ogsync_batch_{ep.name}", batch) as staged:
            all_new = False
            if ep.name in self._first_load:
                self._insert_all(ep, staged, batch, repeats, [synced_at, run_id])
                written, all_new = distinct, True
            elif ep.history and ep.name not in self._met_stored_keys:
                written, all_new = self._insert_then_update(
                    ep, staged, batch, distinct, [synced_at, run_id]
                )
                if not all_new:
                    self._met_stored_keys |= {ep.name}
            else:
                statement = self.upsert_statement(ep, staged, batch, repeats=repeats)
                written = self.upserted(statement, [synced_at, run_id])
            if ep.name in DELETABLE_NAMES:  # deletions that arrived before these records did
                key = quote(ep.column_key)
                self._apply_tombstones(
                    ep, f"{key} IN (SELECT {key} FROM {staged})", deleted=deleted
                )
            if ep.history:
                sql_history.add_versions(
                    self, ep, staged, synced_at, run_id, none_kept=all_new, repeats=repeats
                )
            return written

    def _insert_all(
        self, ep: Endpoint, staged: str, batch: pa.Table, repeats: bool, params: list[Any]
    ) -> None:
        """Insert a batch whose keys are not stored yet, as while a table is first loaded, in
        a plain INSERT (one row a key). A stored key (the same record fetched twice in a run,
        its update having moved it to a later page) raises `_StoredKeyMet`."""
        statement = self.upsert_statement(ep, staged, batch, repeats=repeats, plain=True)
        try:
            self.execute(statement, params)
        except self.dialect.duplicate_key:
            raise _StoredKeyMet(ep.name) from None

    # The endpoints whose tables were empty at `prepare`, and whose batches have met no stored
    # key since: their batches are plain INSERTs (`Dialect.duplicate_key`).
    _first_load: frozenset[str] = frozenset()

    # The history endpoints whose batches, since `prepare`, met keys already stored: an
    # incremental run's, mostly. They go back to the one-statement upsert, since the first
    # step of `_insert_then_update` costs about as much as the upsert when it inserts
    # nothing.
    _met_stored_keys: frozenset[str] = frozenset()

    def _insert_then_update(
        self, ep: Endpoint, staged: str, batch: pa.Table, distinct: int, params: list[Any]
    ) -> tuple[int, bool]:
        """The upsert in two steps, the keys not stored yet and then newer versions of the
        others: (rows written, whether every key was new). A key new to the table has no
        version in its history either, so the history need not look for the batch's
        versions there, which for a warehouse that finds them by scanning (DuckDB) costs a
        scan of the whole history a batch. `distinct`: how many keys the batch has."""
        repeats = distinct < batch.num_rows
        statement = self.upsert_statement(ep, staged, batch, repeats=repeats, new_only=True)
        new = self.execute(statement, params)
        if len(new) == distinct:
            return len(new), True
        fresh = pa.table({"key": pa.array([k for (k,) in new], pa.string())})
        with self.stage(f"ogsync_new_{ep.name}", fresh) as skip:
            statement = self.upsert_statement(ep, staged, batch, repeats=repeats, skip=skip)
            return len(new) + self.upserted(statement, params), False

    def _apply_tombstones(
        self,
        ep: Endpoint,
        where: str,
        params: Sequence[Any] = (),
        *,
        deleted: frozenset[str] | None = None,
    ) -> int:
        """Soft-delete rows of `ep` (matching `where`) that a recorded deletion covers.

        A row whose version is newer than the deletion stays live. Deletions of a parent
        (an order) cover its children (its items) through the cascade's linking column.
        `deleted`, read in the same transaction: the endpoints that have recorded webhook
        deletions; an UPDATE for any other would find nothing.
        """
        ep = self.governed(ep)
        sql = self.table_sql(ep)
        upd = quote(sql.update_column) if sql.update_column else "NULL"
        gone: list[tuple[Any, ...]] = []
        for source, column in tombstone_links(ep, deleted):
            gone.extend(
                self.execute(
                    f"UPDATE {sql.table} AS cur SET _deleted_at = d.deleted_at, "
                    f"_deleted_reason = d.reason FROM (SELECT record_id, max(deleted_at) AS "
                    f"deleted_at, max(reason) AS reason FROM {self.s}.{DELETIONS_TABLE} "
                    f"WHERE endpoint = ? AND {DeletionReason.is_webhook_sql('reason')} "
                    "GROUP BY record_id) AS d "
                    f"WHERE cur.{column} = d.record_id AND cur._deleted_at IS NULL "
                    f"AND (cur.{upd} IS NULL OR cur.{upd} <= d.deleted_at) AND ({where}) "
                    f"RETURNING cur.{quote(ep.column_key)}",
                    [source.name, *params],
                )
            )
        self._redraw_history(ep, [k for (k,) in gone])
        return len(gone)

    def _webhook_deletions(self) -> frozenset[str]:
        """The endpoints that have webhook deletions recorded (read once per batch group,
        rather than an UPDATE per batch that mostly finds nothing)."""
        rows = self.execute(
            f"SELECT DISTINCT endpoint FROM {self.s}.{DELETIONS_TABLE} "
            f"WHERE {DeletionReason.is_webhook_sql('reason')}"
        )
        return frozenset(str(endpoint) for (endpoint,) in rows)

    def _redraw_history(self, ep: Endpoint, keys: Sequence[str]) -> None:
        """Rows of these keys were soft-deleted: their last versions close."""
        if not keys or not ep.history:
            return
        with self.stage(
            f"ogsync_closed_{ep.name}", pa.table({"key": pa.array(keys, pa.string())})
        ) as staged:
            sql_history.redraw(self, ep, f"SELECT key FROM {staged}")

    def apply_events(self, events: Sequence[WebhookEvent]) -> ApplyResult:
        """Store webhook events and apply the deletions among them, in one transaction.

        Idempotent: an event already stored is not stored again, and a deletion already
        recorded is not recorded twice; applying tombstones again changes nothing.
        """
        result = ApplyResult()
        if not events:
            return result
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
        with self.transaction(), self.stage("ogsync_events", table) as staged:
            result.stored = len(
                self.execute(
                    f"INSERT INTO {self.s}.{EVENTS_TABLE} SELECT DISTINCT ON (event_id) "
                    f"event_id, type, created, object_type, object_id, "
                    f"CAST(payload AS {self.dialect.json}), CAST(? AS TIMESTAMPTZ) FROM {staged} "
                    f"WHERE event_id NOT IN (SELECT event_id FROM {self.s}.{EVENTS_TABLE}) "
                    f"RETURNING event_id",
                    [now],
                )
            )
            for event in DELETION_EVENTS.values():
                result.deletions += len(
                    self.execute(
                        f"INSERT INTO {self.s}.{DELETIONS_TABLE} SELECT DISTINCT ON (event_id) "
                        f"?, object_id, created, ?, event_id, CAST(? AS TIMESTAMPTZ) "
                        f"FROM {staged} WHERE type = ? AND object_id IS NOT NULL "
                        f"AND event_id NOT IN (SELECT source FROM {self.s}.{DELETIONS_TABLE} "
                        "WHERE reason = ?) "
                        f"RETURNING record_id",
                        [event.endpoint.name, event.reason, now, event.event_type, event.reason],
                    )
                )
            for ep in DELETABLE:
                result.soft_deleted += self._apply_tombstones(ep, "TRUE")
        return result

    def upserted(self, statement: str, params: Sequence[Any]) -> int:
        """Run an upsert and return how many rows it wrote."""
        rows = self.execute(statement, params)
        return int(rows[0][0]) if rows else 0

    def _soft_delete_unseen(
        self, ep: Endpoint, seen: pa.ChunkedArray, run_id: str, synced_at: datetime
    ) -> int:
        """After a complete full refresh: every live row the API did not return."""
        return self._soft_delete(ep, seen, "NOT IN", DeletionReason.FULL_REFRESH, run_id, synced_at)

    def soft_delete(
        self, ep: Endpoint, keys: Sequence[str], reason: DeletionReason, source: str
    ) -> int:
        if not keys:
            return 0
        with self.transaction():
            staged = pa.chunked_array([pa.array(list(keys), pa.string())])
            return self._soft_delete(ep, staged, "IN", reason, source, datetime.now(UTC))

    def _soft_delete(
        self,
        ep: Endpoint,
        keys: pa.ChunkedArray,
        membership: str,
        reason: str,
        source: str,
        now: datetime,
    ) -> int:
        """Soft-delete the live rows whose key is `membership` ("IN"/"NOT IN") `keys`, and
        record a tombstone for each in `_ogsync_deletions`."""
        ep = self.governed(ep)
        sql = self.table_sql(ep)
        key = quote(sql.key)
        staged_keys = pa.table({"key": keys})
        with self.stage(f"ogsync_keys_{ep.name}", staged_keys) as staged:
            gone = self.execute(
                f"UPDATE {sql.table} SET _deleted_at = ?, _deleted_reason = ? "
                f"WHERE _deleted_at IS NULL AND {key} {membership} (SELECT key FROM {staged}) "
                f"RETURNING {key}",
                [now, reason],
            )
        if gone:
            self.executemany(
                f"INSERT INTO {self.s}.{DELETIONS_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                [(ep.name, k, now, reason, source, now) for (k,) in gone],
            )
        self._redraw_history(ep, [k for (k,) in gone])
        return len(gone)

    def _save_state(self, ep: Endpoint, commit: Commit, now: datetime) -> None:
        table = f"{self.s}.{STATE_TABLE}"
        values: dict[str, Any] = {"updated_at": now}
        if commit.keep_checkpoint:  # one statement for a batch's usual state
            cp = commit.checkpoint
            values |= {
                "checkpoint_start": cp.window_start if cp else None,
                "checkpoint_end": cp.window_end if cp else None,
                "checkpoint_url": cp.next_url if cp else None,
                "checkpoint_watermark": cp.watermark_after if cp else None,
            }
        self._update_else_insert(table, {"endpoint": ep.name}, values)
        if commit.watermark is not None and commit.watermark_replaces:
            self.execute(
                f"UPDATE {table} SET watermark = ? WHERE endpoint = ?", [commit.watermark, ep.name]
            )
        elif commit.watermark is not None:  # a watermark never moves backwards
            self.execute(
                f"UPDATE {table} SET watermark = greatest(coalesce(watermark, ?), ?) "
                "WHERE endpoint = ?",
                [commit.watermark, commit.watermark, ep.name],
            )
        if commit.backfill_window is not None:
            done = None if commit.backfill_next else now
            self.execute(
                f"INSERT INTO {self.s}.{BACKFILL_TABLE} VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (endpoint, window_start, window_end) DO UPDATE SET "
                "next_url = excluded.next_url, done_at = excluded.done_at",
                [ep.name, *commit.backfill_window, commit.backfill_next, done],
            )
        if commit.last_records is not None:
            self.execute(
                f"UPDATE {table} SET last_records = ? WHERE endpoint = ?",
                [commit.last_records, ep.name],
            )

    def run_slot(self, column: str) -> str:
        """How a run-log column's value is bound (Snowflake casts its times)."""
        return "?"

    def _upsert_run(self, run: RunLog) -> None:
        values = dict(zip(RUN_COLUMNS, run.values(), strict=True))
        keys = {c: values.pop(c) for c in RUN_COLUMNS[:2]}
        self._update_else_insert(f"{self.s}.{RUNS_TABLE}", keys, values, self.run_slot)

    def _update_else_insert(
        self,
        table: str,
        keys: dict[str, Any],
        values: dict[str, Any],
        slot: Callable[[str], str] = lambda column: "?",
    ) -> None:
        """One row by its key: an UPDATE, and an INSERT when it found none. The rows written
        with every batch (state, run log) are there after the first, and a one-row ON
        CONFLICT costs DuckDB about three times the UPDATE. `slot`: how a column's value is
        bound."""
        moved = self.upserted(
            f"UPDATE {table} SET {', '.join(f'{c} = {slot(c)}' for c in values)} "
            f"WHERE {' AND '.join(f'{k} = ?' for k in keys)}",
            [*values.values(), *keys.values()],
        )
        if not moved:
            row = {**keys, **values}
            self.execute(
                f"INSERT INTO {table} ({', '.join(row)}) "
                f"VALUES ({', '.join(slot(c) for c in row)})",
                list(row.values()),
            )

    def log_run(self, run: RunLog) -> None:
        with self.transaction():
            self._upsert_run(run)

    def maintain(self, retention: timedelta) -> list[TableUpkeep]:
        """The database keeps its own files."""
        return []

    def rewrite(self, governance: Governance) -> list[str]:
        done = sql_rules.rewrite(self, governance)
        if done:  # columns were dropped and made again, without their comments
            with self.transaction():
                sql_dictionary.comment(self, governance.endpoints(ENDPOINTS))
        return done

    def recreate(self, ep: Endpoint) -> None:
        """The endpoint's tables, view and index as `prepare` makes them (after a rewrite)."""
        self._create_table(ep)
        if ep.history:
            sql_history.create_history(self, ep)

    def unsent_keys(self, ep: Endpoint) -> set[str]:
        orders = f"{self.s}.orders"
        if ep.name == "orders":
            sql = f"SELECT public_id FROM {orders} WHERE _deleted_at IS NULL AND status = {UNSENT}"
        else:
            order = quote(ep.field_named("order").column)
            sql = (
                f"SELECT i.public_id FROM {self.s}.items AS i JOIN {orders} AS o "
                f"ON i.{order} = o.public_id WHERE i._deleted_at IS NULL AND o.status = {UNSENT}"
            )
        return {row[0] for row in self.execute(sql)}

    def status_facts(self, endpoints: Iterable[Endpoint]) -> StatusFacts:
        """Tables that do not exist yet (a warehouse never synced) read as empty."""
        tables = self.existing_tables()
        watermarks: dict[str, datetime | None] = {}
        if STATE_TABLE in tables:
            rows = self.execute(f"SELECT endpoint, watermark FROM {self.s}.{STATE_TABLE}")
            watermarks = {endpoint: _utc(mark) for endpoint, mark in rows}
        runs: list[RunRow] = []
        if RUNS_TABLE in tables:
            rows = self.execute(
                "SELECT endpoint, run_id, kind, status, started_at, finished_at, records, error "
                f"FROM {self.s}.{RUNS_TABLE} ORDER BY started_at, run_id"
            )
            runs = [
                RunRow(ep, run_id, kind, status, _utc(start), _utc(end), int(n or 0), error)
                for ep, run_id, kind, status, start, end, n, error in rows
            ]
        counts: dict[str, tuple[int, int]] = {}
        for ep in endpoints:
            if ep.name in tables:
                ((live, deleted),) = self.execute(
                    # CASE rather than FILTER or COUNT_IF: every dialect runs it.
                    "SELECT sum(CASE WHEN _deleted_at IS NULL THEN 1 ELSE 0 END), "
                    "sum(CASE WHEN _deleted_at IS NULL THEN 0 ELSE 1 END) "
                    f"FROM {self.table_sql(ep).table}"
                )
                counts[ep.name] = (int(live or 0), int(deleted or 0))
        return StatusFacts(watermarks, runs, counts)


class _StoredKeyMet(Exception):
    """A first load's plain INSERT met a stored key, which failed its transaction."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.endpoint = endpoint


def tombstone_links(ep: Endpoint, deleted: frozenset[str] | None) -> list[tuple[Endpoint, str]]:
    """Whose recorded deletions cover rows of `ep`, and through which of its columns
    (quoted): its own, by its key, and a parent's through the cascade's linking column.
    `deleted`: the endpoints that have recorded webhook deletions, if known (others are left
    out: an UPDATE for them would find nothing)."""
    links = [(ep, quote(ep.column_key))]
    links += [
        (event.endpoint, quote(event.cascade[1]))
        for event in DELETION_EVENTS.values()
        if event.cascade and event.cascade[0].name == ep.name
    ]
    return [link for link in links if deleted is None or link[0].name in deleted]


def _deletable_rows(writes: Sequence[BatchWrite]) -> bool:
    return any(
        ep.name in DELETABLE_NAMES and batch is not None and batch.num_rows
        for ep, batch, _ in writes
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
