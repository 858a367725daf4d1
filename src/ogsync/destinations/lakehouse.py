"""A warehouse kept as open table files (Delta Lake, Iceberg): every promise of the SQL
warehouses, on a format that commits one table at a time.

Each decision (which version wins, which rows a deletion covers, what a full refresh leaves
out) is made by an in-memory DuckDB reading the tables' latest commits, with the same rules as
the SQL warehouses (`TableSql.newer_wins`); the format then commits the chosen rows. A group
of tables can't be committed at once, so commits go in an order from which any crash
converges on the next run:

1. the endpoint rows (newer-wins, so writing them again changes nothing), their soft deletes;
2. rejected input, the run log and backfill progress;
3. last, the state: checkpoint and watermark. A run killed before it starts from the old
   checkpoint and fetches again what step 1 already holds, which newer-wins absorbs.

One writer at a time (`lakehouse_lock`): the decisions read the tables, then commit to them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ogsync.deletions import DELETABLE, DELETION_EVENTS, UNSENT
from ogsync.destinations.base import (
    BACKFILL_TABLE,
    DELETIONS_TABLE,
    EVENTS_TABLE,
    REJECTED_TABLE,
    RUN_COLUMNS,
    RUNS_TABLE,
    STATE_TABLE,
    ApplyResult,
    BatchWrite,
    Commit,
    DestinationError,
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
from ogsync.destinations.duckdb_memory import with_memory
from ogsync.destinations.lakehouse_keys import KeyIndex, compared_columns
from ogsync.destinations.lakehouse_lock import WriterLock
from ogsync.destinations.lakehouse_store import (
    BOOKKEEPING,
    RULES_TABLE,
    TableStore,
    endpoint_schema,
    rows_of,
)
from ogsync.endpoints import BY_NAME, Endpoint
from ogsync.governance import Governance
from ogsync.plan import Checkpoint, EndpointState
from ogsync.vocabulary import DeletionReason

log = logging.getLogger("ogsync.lakehouse")
DELETABLE_NAMES = frozenset(ep.name for ep in DELETABLE)
# A sync compacts a table once its latest commit reads this many files (`ogsync maintain`
# does it whatever the count).
COMPACT_AFTER_FILES = 100
# Files no commit of the last week reads are deleted by `ogsync maintain`: a reader that
# began before a compaction, or a time-travel query, still finds what it reads.
DEFAULT_RETENTION = timedelta(days=7)
# The working DuckDB's memory: the key index and the queries on batches. Past it, DuckDB moves
# blocks out to files in a scratch folder, so a writer's memory stays flat however large its
# tables grow (the key index alone takes about 70 MB a million rows). A statement that needs
# more pinned at once raises it (`with_memory`).
WORKING_MEMORY = "64MB"
# The run log and the state are a commit each, which costs about what a batch's rows cost (an
# Iceberg commit writes its metadata anew). A batch in the middle of a window leaves them to a
# write, or a wait of the loader, at least this many seconds after they were last written; a
# window's end, and any read of them, writes them at once. A killed run then fetches again
# at most these seconds' pages, which newer-wins absorbs.
BOOKKEEPING_EVERY = 5.0


class LakehouseDestination:
    """A `Destination` over a `TableStore`; `kind` names the format in messages."""

    def __init__(
        self, store: TableStore, schema: str, kind: str, lock: WriterLock | None = None
    ) -> None:
        self.store = store
        self.schema = schema
        self.kind = kind
        self._lock = lock  # None: a reader, which writes nothing
        # Where the working DuckDB spills, removed on close or, failing that, when this
        # object is collected.
        scratch = Path(tempfile.mkdtemp(prefix="ogsync-lakehouse-"))
        self._scratch = weakref.finalize(self, shutil.rmtree, scratch, ignore_errors=True)
        self._db = working_db(scratch)
        self._keys = KeyIndex(self._db)
        self._prepared: dict[str, Endpoint] = {}
        # Each endpoint table's columns as stored; only `prepare` changes them (one writer).
        self._stored_schemas: dict[str, pa.Schema] = {}
        self._mutex = threading.RLock()  # the loader and `idle` may come from two threads
        # Bookkeeping of batches whose rows are committed, not yet written (BOOKKEEPING_EVERY).
        self._deferred: list[tuple[Endpoint, Commit]] = []
        self._deferred_runs: dict[tuple[str, str], RunLog] = {}
        self._books_kept_at = time.monotonic()

    # -- reading -------------------------------------------------------------------------

    def _sql(self, query: str, params: Sequence[Any] = (), **relations: Any) -> pa.Table:
        """Run `query` in the working DuckDB with `relations` (tables, datasets) by name."""
        for name, relation in relations.items():
            self._db.register(name, relation)
        try:
            return with_memory(
                self._db, lambda: self._db.sql(query, params=list(params)).to_arrow_table()
            )
        finally:
            for name in relations:
                self._db.unregister(name)

    def _read(self, table: str) -> Any:
        """A table as a relation for `_sql`: its latest commit, or empty before the first."""
        if table in self._existing():
            return self.store.dataset(table)
        schema = BOOKKEEPING.get(table) or endpoint_schema(self.governed(_endpoint(table)))
        return schema.empty_table()

    def _existing(self) -> set[str]:
        return self.store.tables()

    def governed(self, ep: Endpoint) -> Endpoint:
        return self._prepared.get(ep.name, ep)

    def load_states(self) -> Mapping[str, EndpointState]:
        with self._mutex:
            self._keep_deferred_books()
        states = {}
        for row in self._sql("SELECT * FROM s", s=self._read(STATE_TABLE)).to_pylist():
            cp = None
            if row["checkpoint_url"]:
                cp = Checkpoint(
                    row["checkpoint_start"],
                    row["checkpoint_end"],
                    row["checkpoint_url"],
                    row["checkpoint_watermark"],
                )
            states[row["endpoint"]] = EndpointState(row["watermark"], cp, row["last_records"] or 0)
        return states

    def load_backfill(self, ep: Endpoint) -> dict[tuple[datetime, datetime], str | None]:
        with self._mutex:
            self._keep_deferred_books()
        rows = self._sql(
            "SELECT window_start, window_end, next_url, done_at FROM b WHERE endpoint = ?",
            [ep.name],
            b=self._read(BACKFILL_TABLE),
        ).to_pylist()
        return {
            (r["window_start"], r["window_end"]): None if r["done_at"] else r["next_url"]
            for r in rows
        }

    def status_facts(self, endpoints: Iterable[Endpoint]) -> StatusFacts:
        with self._mutex:
            self._keep_deferred_books()
        existing = self._existing()
        watermarks = {
            r["endpoint"]: r["watermark"]
            for r in self._sql("SELECT endpoint, watermark FROM s", s=self._read(STATE_TABLE))
            .to_pylist()
        }  # fmt: skip
        runs = [
            RunRow(
                r["endpoint"],
                r["run_id"],
                r["kind"],
                r["status"],
                r["started_at"],
                r["finished_at"],
                int(r["records"] or 0),
                r["error"],
            )
            for r in self._sql(
                "SELECT * FROM r ORDER BY started_at, run_id", r=self._read(RUNS_TABLE)
            ).to_pylist()
        ]
        counts: dict[str, tuple[int, int]] = {}
        for ep in endpoints:
            if ep.name in existing:
                (row,) = self._sql(
                    "SELECT count(*) FILTER (WHERE _deleted_at IS NULL) AS live, "
                    "count(*) FILTER (WHERE _deleted_at IS NOT NULL) AS gone FROM t",
                    t=self.store.dataset(ep.name),
                ).to_pylist()
                live, deleted = row["live"], row["gone"]
                counts[ep.name] = (int(live or 0), int(deleted or 0))
        return StatusFacts(watermarks, runs, counts)

    def unsent_keys(self, ep: Endpoint) -> set[str]:
        if ep.name == "orders":
            query = f"SELECT public_id FROM o WHERE _deleted_at IS NULL AND status = {UNSENT}"
        else:
            order = quote(ep.field_named("order").column)
            query = (
                f"SELECT i.public_id FROM i JOIN o ON i.{order} = o.public_id "
                f"WHERE i._deleted_at IS NULL AND o.status = {UNSENT}"
            )
        found = self._sql(query, o=self._read("orders"), i=self._read("items"))
        return set(found.column(0).to_pylist())

    # -- the schema ----------------------------------------------------------------------

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        endpoints = list(endpoints)
        kept = [ep.name for ep in endpoints if ep.history]
        if kept:
            raise DestinationError(
                f"a {self.kind} warehouse does not keep history tables yet: remove "
                f"{', '.join(kept)} from the history setting, or sync them to DuckDB, "
                "PostgreSQL or Snowflake"
            )
        with self._mutex:
            self._writable()
            self._check_rules(endpoints)  # before anything is changed
            self._prepared = {ep.name: ep for ep in endpoints}
            self._stored_schemas.clear()
            for ep in endpoints:
                self.store.ensure(ep.name, endpoint_schema(ep))
            for name, schema in BOOKKEEPING.items():
                self.store.ensure(name, schema)
            self._record_rules(endpoints)

    def _stored_rules(self) -> dict[str, str]:
        rows = self._sql("SELECT endpoint, rules FROM r", r=self._read(RULES_TABLE))
        return dict(zip(*rows.to_pydict().values(), strict=True)) if rows.num_rows else {}

    def _check_rules(self, endpoints: Sequence[Endpoint]) -> None:
        """As the SQL warehouses (`sql_rules.check_rules`): rows written under other field
        rules would mix plain and hashed values. A table with no rows takes any rules."""
        stored = self._stored_rules()
        existing = self._existing()
        for ep in endpoints:
            before = stored.get(ep.name, "")
            if before == ep.rules or ep.name not in existing:
                continue
            if self.store.dataset(ep.name).count_rows() == 0:
                continue
            raise DestinationError(
                f"{ep.name}: the settings leave out or hash other fields "
                f"({Governance.described(ep.rules)}) than this warehouse was written with "
                f"({Governance.described(before)}); a {self.kind} warehouse can't be "
                "rewritten in place: restore the rules, or sync into a new location"
            )

    def _record_rules(self, endpoints: Sequence[Endpoint]) -> None:
        stored = self._stored_rules()
        wanted = {**stored, **{ep.name: ep.rules for ep in endpoints}}
        if wanted != stored:
            now = datetime.now(UTC)
            rows = [(name, rules, now) for name, rules in sorted(wanted.items())]
            self.store.overwrite(RULES_TABLE, rows_of(BOOKKEEPING[RULES_TABLE], rows))

    # -- writing -------------------------------------------------------------------------

    def _writable(self) -> None:
        if self._lock is None:
            raise DestinationError(f"this {self.kind} warehouse was opened to read only")
        self._lock.check()

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        with self._mutex:
            self._writable()
            synced_at = datetime.now(UTC)
            # Every batch is checked against its table before anything is committed, so a
            # group with a bad batch leaves no trace.
            batches = [
                None if b is None or not b.num_rows else _batch_of(self.governed(ep), b)
                for ep, b, _ in writes
            ]
            results: list[WriteResult] = []
            for (ep, _, commit), batch in zip(writes, batches, strict=True):
                ep = self.governed(ep)
                result = WriteResult()
                if batch is not None:
                    result.written = self._upsert(ep, batch, commit.run.run_id, synced_at)
                if commit.refreshed_keys is not None:
                    result.soft_deleted = self._soft_delete(
                        ep, commit.refreshed_keys, "NOT IN",
                        DeletionReason.FULL_REFRESH, commit.run.run_id, synced_at,
                    )  # fmt: skip
                results.append(result)
            commits = [commit for _, _, commit in writes]
            rejected = [(r, c.run.run_id) for c in commits for r in c.rejected]
            self._record_rejected(rejected, synced_at)
            for commit, result in zip(commits, results, strict=True):
                run = commit.run.counted(result)
                self._deferred_runs[(run.run_id, run.endpoint)] = run
            self._deferred += [(ep, c) for ep, _, c in writes]
            due = time.monotonic() - self._books_kept_at >= BOOKKEEPING_EVERY
            if due or not all(_in_progress(c) for c in commits):
                self._keep_books()
            return results

    def _keep_books(self) -> None:
        """Commit the deferred run log, backfill progress and state, in that order (after
        their batches' rows, which are committed already)."""
        if self._deferred_runs:
            self._upsert_runs(list(self._deferred_runs.values()))
        if self._deferred:
            now = datetime.now(UTC)
            self._save_backfill(self._deferred, now)
            self._save_state(self._deferred, now)
        self._deferred, self._deferred_runs = [], {}
        self._books_kept_at = time.monotonic()

    def _keep_deferred_books(self) -> None:
        """Before the state or the run log is read: what a writer deferred is written."""
        if self._lock is not None and (self._deferred or self._deferred_runs):
            self._writable()
            self._keep_books()

    def _upsert(self, ep: Endpoint, batch: pa.Table, run_id: str, synced_at: datetime) -> int:
        """Newer-wins: the batch's rows that may replace what is stored, committed with the
        same rule as the commit's own condition where the format checks one."""
        sql = TableSql(ep, "")
        key = quote(ep.column_key)
        upd = sql.update_column
        if pc.count_distinct(batch.column(ep.column_key), mode="all").as_py() == batch.num_rows:
            newest = "SELECT * FROM b"
        else:
            undated = upd is not None and batch.column(upd).null_count > 0
            newest = (
                f"SELECT DISTINCT ON ({key}) * FROM b ORDER BY {key}, {sql.dedupe_order(undated)}"
            )
        stored_keys = self._stored_keys(ep)
        winners = self._sql(
            f"WITH n AS ({newest}), cur AS (SELECT {', '.join(compared_columns(ep))} "
            f"FROM {stored_keys} WHERE {key} IN (SELECT {key} FROM n)) "
            "SELECT n.* EXCLUDE (_seq), CAST(? AS TIMESTAMPTZ) AS _synced_at, "
            "CAST(? AS VARCHAR) AS _run_id, CAST(NULL AS TIMESTAMPTZ) AS _deleted_at, "
            f"CAST(NULL AS VARCHAR) AS _deleted_reason, cur.{key} IS NOT NULL AS _stored "
            f"FROM n LEFT JOIN cur ON cur.{key} = n.{key} "
            f"WHERE cur.{key} IS NULL OR {sql.newer_wins('cur', 'n')}",
            [synced_at, run_id],
            b=batch,
        )
        if not winners.num_rows:
            return 0
        stored = pc.any(winners.column("_stored")).as_py()
        if ep.name in DELETABLE_NAMES:  # deletions that arrived before these records did
            winners = self._tombstoned(ep, winners)
        predicate = sql.newer_wins("t", "s") if stored else None
        self._commit_rows(ep, self._conformed(ep, winners), predicate, new=not stored)
        return winners.num_rows

    def _stored_keys(self, ep: Endpoint) -> str:
        """The key index's table of `ep`: the compared columns of each stored row."""
        return self._keys.table(ep, lambda: self._read(ep.name))

    def _commit_rows(
        self, ep: Endpoint, rows: pa.Table, predicate: str | None, *, new: bool = False
    ) -> None:
        """Commit `rows` to the endpoint's table (added if `new`, else each replacing its
        key's row where `predicate` allows), keeping the key index in step."""
        try:
            if new:
                self.store.append(ep.name, rows)
            else:
                self.store.replace(ep.name, rows, [ep.column_key], predicate)
        except BaseException:
            self._keys.forget(ep.name)
            raise
        self._keys.committed(ep, rows)

    def _conformed(self, ep: Endpoint, rows: pa.Table) -> pa.Table:
        """Rows for an endpoint's table as it is stored: in its column order, with columns
        the endpoint no longer names (written by another version of ogsync) left empty."""
        schema = self._stored_schemas.get(ep.name)
        if schema is None:
            wanted = endpoint_schema(ep)
            stored = self.store.dataset(ep.name).schema
            fields = [
                wanted.field(n) if n in wanted.names else stored.field(n) for n in stored.names
            ]
            fields += [f for f in wanted if f.name not in stored.names]
            schema = self._stored_schemas[ep.name] = pa.schema(fields)
        return conform(rows, schema)

    def _covered(self, ep: Endpoint) -> str:
        """SQL over live rows `r`: the key, time and reason of the recorded webhook deletion
        each one falls under (its own, or its parent's through a cascade), as the SQL
        warehouses apply them: a version newer than the deletion stays live."""
        upd = TableSql(ep, "").update_column
        newer = f'r."{upd}" IS NULL OR r."{upd}" <= d.deleted_at' if upd else "TRUE"
        links = [(ep.name, ep.column_key)] + [
            (event.endpoint.name, event.cascade[1])
            for event in DELETION_EVENTS.values()
            if event.cascade and event.cascade[0].name == ep.name
        ]
        webhook = DeletionReason.is_webhook_sql("reason")
        parts = [
            f"SELECT r.{quote(ep.column_key)} AS k, d.deleted_at AS del_at, d.reason AS why, "
            f"{rank} AS rank FROM r JOIN (SELECT record_id, max(deleted_at) AS deleted_at, "
            f"max(reason) AS reason FROM d WHERE endpoint = '{source}' AND {webhook} "
            f"GROUP BY record_id) AS d ON r.{quote(column)} = d.record_id "
            f"WHERE r._deleted_at IS NULL AND ({newer})"
            for rank, (source, column) in enumerate(links)
        ]
        union = " UNION ALL ".join(parts)
        return f"SELECT DISTINCT ON (k) k, del_at, why FROM ({union}) ORDER BY k, rank"

    def _tombstoned(self, ep: Endpoint, rows: pa.Table) -> pa.Table:
        """`rows` with the recorded deletions that cover them applied."""
        key = quote(ep.column_key)
        return self._sql(
            f"WITH c AS ({self._covered(ep)}) SELECT r.* REPLACE "
            "(coalesce(c.del_at, r._deleted_at) AS _deleted_at, "
            "coalesce(c.why, r._deleted_reason) AS _deleted_reason) "
            f"FROM r LEFT JOIN c ON c.k = r.{key}",
            r=rows,
            d=self._read(DELETIONS_TABLE),
        )

    def _apply_tombstones(self, ep: Endpoint) -> int:
        """Soft-delete every stored row a recorded webhook deletion covers."""
        ep = self.governed(ep)
        key = quote(ep.column_key)
        gone = self._sql(
            f"WITH c AS ({self._covered(ep)}) SELECT r.* REPLACE (c.del_at AS _deleted_at, "
            f"c.why AS _deleted_reason) FROM r JOIN c ON c.k = r.{key}",
            r=self._read(ep.name),
            d=self._read(DELETIONS_TABLE),
        )
        if gone.num_rows:
            self._commit_rows(ep, self._conformed(ep, gone), "t._deleted_at IS NULL")
        return gone.num_rows

    def _soft_delete(
        self,
        ep: Endpoint,
        keys: pa.ChunkedArray | pa.Array,
        membership: str,
        reason: str,
        source: str,
        now: datetime,
    ) -> int:
        """Soft-delete the live rows whose key is `membership` ("IN"/"NOT IN") `keys`, then
        record a tombstone for each."""
        key = quote(ep.column_key)
        # The key index tells which rows go, so a full refresh that deletes nothing (the
        # usual case) reads no more of the table than its keys.
        found = self._sql(
            f"SELECT {key} AS key FROM {self._stored_keys(ep)} WHERE _deleted_at IS NULL "
            f"AND {key} {membership} (SELECT key FROM k WHERE key IS NOT NULL)",
            k=pa.table({"key": keys}),
        )
        if not found.num_rows:
            return 0
        gone = self._sql(
            "SELECT * REPLACE (CAST(? AS TIMESTAMPTZ) AS _deleted_at, "
            f"CAST(? AS VARCHAR) AS _deleted_reason) FROM t WHERE _deleted_at IS NULL "
            f"AND {key} IN (SELECT key FROM k)",
            [now, reason],
            t=self._read(ep.name),
            k=found,
        )
        if not gone.num_rows:
            return 0
        self._commit_rows(ep, self._conformed(ep, gone), "t._deleted_at IS NULL")
        ids = gone.column(ep.column_key).to_pylist()
        self.store.append(
            DELETIONS_TABLE,
            rows_of(
                BOOKKEEPING[DELETIONS_TABLE],
                [(ep.name, k, now, str(reason), source, now) for k in ids],
            ),
        )
        return gone.num_rows

    def soft_delete(
        self, ep: Endpoint, keys: Sequence[str], reason: DeletionReason, source: str
    ) -> int:
        if not keys:
            return 0
        with self._mutex:
            self._writable()
            ep = self.governed(ep)
            array = pa.array(list(keys), pa.string())
            return self._soft_delete(ep, array, "IN", reason, source, datetime.now(UTC))

    def apply_events(self, events: Sequence[WebhookEvent]) -> ApplyResult:
        """Store the events, record their deletions, then apply every recorded deletion:
        three commits, each of which a second delivery of the same events repeats as a no-op.
        """
        result = ApplyResult()
        if not events:
            return result
        with self._mutex:
            self._writable()
            now = datetime.now(UTC)
            staged = pa.table(
                {
                    "event_id": pa.array([e.event_id for e in events], pa.string()),
                    "type": pa.array([e.type for e in events], pa.string()),
                    "created": pa.array(
                        [
                            datetime.fromtimestamp(e.created, UTC) if e.created else None
                            for e in events
                        ],
                        pa.timestamp("us", tz="UTC"),
                    ),
                    "object_type": pa.array([_text(e.object_type) for e in events], pa.string()),
                    "object_id": pa.array([_text(e.object_id) for e in events], pa.string()),
                    "payload": pa.array([e.payload for e in events], pa.string()),
                }
            )
            new = self._sql(
                "SELECT DISTINCT ON (event_id) *, CAST(? AS TIMESTAMPTZ) AS stored_at FROM n "
                "WHERE event_id NOT IN (SELECT event_id FROM e)",
                [now],
                n=staged,
                e=self._read(EVENTS_TABLE),
            )
            if new.num_rows:
                self.store.append(EVENTS_TABLE, conform(new, BOOKKEEPING[EVENTS_TABLE]))
            result.stored = new.num_rows
            recorded = []
            for event in DELETION_EVENTS.values():
                found = self._sql(
                    "SELECT DISTINCT ON (event_id) CAST(? AS VARCHAR) AS endpoint, "
                    "object_id AS record_id, created AS deleted_at, CAST(? AS VARCHAR) AS "
                    "reason, event_id AS source, CAST(? AS TIMESTAMPTZ) AS recorded_at FROM n "
                    "WHERE type = ? AND object_id IS NOT NULL AND event_id NOT IN "
                    "(SELECT source FROM d WHERE reason = ? AND source IS NOT NULL)",
                    [event.endpoint.name, event.reason, now, event.event_type, event.reason],
                    n=staged,
                    d=self._read(DELETIONS_TABLE),
                )
                recorded.append(found)
            deletions = pa.concat_tables(
                [conform(t, BOOKKEEPING[DELETIONS_TABLE]) for t in recorded]
            )
            if deletions.num_rows:
                self.store.append(DELETIONS_TABLE, deletions)
            result.deletions = deletions.num_rows
            for ep in DELETABLE:
                if ep.name in self._existing():
                    result.soft_deleted += self._apply_tombstones(ep)
            return result

    def _record_rejected(self, rows: Sequence[tuple[Rejected, str | None]], at: datetime) -> None:
        if rows:
            table = rows_of(
                BOOKKEEPING[REJECTED_TABLE],
                [(r.source, r.item_id, r.reason, r.payload, run, at) for r, run in rows],
            )
            self.store.append(REJECTED_TABLE, table)

    def reject(self, rows: Sequence[Rejected], run_id: str | None = None) -> None:
        with self._mutex:
            self._writable()
            self._record_rejected([(r, run_id) for r in rows], datetime.now(UTC))

    def _upsert_runs(self, runs: Sequence[RunLog]) -> None:
        latest = {(r.run_id, r.endpoint): r for r in runs}  # a group may log a run twice
        table = rows_of(BOOKKEEPING[RUNS_TABLE], [r.values() for r in latest.values()])
        self.store.replace(RUNS_TABLE, table, list(RUN_COLUMNS[:2]))

    def log_run(self, run: RunLog) -> None:
        with self._mutex:
            self._writable()
            self._deferred_runs[(run.run_id, run.endpoint)] = run  # replaces a deferred row
            self._keep_books()

    def _save_backfill(self, commits: Sequence[tuple[Endpoint, Commit]], now: datetime) -> None:
        windows = {
            (ep.name, *c.backfill_window): (c.backfill_next, None if c.backfill_next else now)
            for ep, c in commits
            if c.backfill_window is not None
        }
        if windows:
            rows = [(*window, *progress) for window, progress in windows.items()]
            self.store.replace(
                BACKFILL_TABLE,
                rows_of(BOOKKEEPING[BACKFILL_TABLE], rows),
                ["endpoint", "window_start", "window_end"],
            )

    def _save_state(self, commits: Sequence[tuple[Endpoint, Commit]], now: datetime) -> None:
        """The state table is small (a row per endpoint): read, changed, written whole."""
        schema = BOOKKEEPING[STATE_TABLE]
        states = {
            r["endpoint"]: r
            for r in self._sql("SELECT * FROM s", s=self._read(STATE_TABLE)).to_pylist()
        }
        for ep, commit in commits:
            row = states.setdefault(ep.name, dict.fromkeys(schema.names) | {"endpoint": ep.name})
            row["updated_at"] = now
            if commit.keep_checkpoint:
                cp = commit.checkpoint
                row["checkpoint_start"] = cp.window_start if cp else None
                row["checkpoint_end"] = cp.window_end if cp else None
                row["checkpoint_url"] = cp.next_url if cp else None
                row["checkpoint_watermark"] = cp.watermark_after if cp else None
            if commit.watermark is not None:
                old = row["watermark"]
                replaces = commit.watermark_replaces or old is None
                # A watermark never moves backwards, unless it came from a wrong clock.
                row["watermark"] = commit.watermark if replaces else max(old, commit.watermark)
            if commit.last_records is not None:
                row["last_records"] = commit.last_records
        table = pa.Table.from_pylist(list(states.values()), schema=schema)
        self.store.overwrite(STATE_TABLE, table)

    # -- upkeep --------------------------------------------------------------------------

    def ready(self, ep: Endpoint, batch: pa.Table) -> None:
        """The batch is written as it is."""
        return

    def idle(self) -> None:
        """Write the deferred bookkeeping once due (the API is slow: batches come seldom),
        and compact the tables whose latest commit reads too many files."""
        with self._mutex:
            if self._lock is None:
                return
            self._lock.check()  # a compaction is a commit: only while the lock is held
            if time.monotonic() - self._books_kept_at >= BOOKKEEPING_EVERY:
                self._keep_deferred_books()  # the next batch may be near: only when due
            for name in sorted(self._existing()):
                if self.store.file_count(name) > COMPACT_AFTER_FILES:
                    self.store.compact(name)

    def maintain(self, retention: timedelta = DEFAULT_RETENTION) -> list[TableUpkeep]:
        """Compact every table, then delete the files no commit within `retention` reads."""
        with self._mutex:
            self._writable()
            done = []
            for name in sorted(self._existing()):
                before = self.store.file_count(name)
                if before > 1:
                    self.store.compact(name)
                removed = self.store.expire(name, retention)
                done.append(TableUpkeep(name, before, self.store.file_count(name), removed))
            return done

    def rewrite(self, governance: Governance) -> list[str]:
        raise DestinationError(
            f"a {self.kind} warehouse can't be rewritten in place: sync into a new location "
            "under the new rules"
        )

    def close(self) -> None:
        with self._mutex:
            try:
                try:
                    self._keep_deferred_books()
                except Exception as exc:  # their rows are committed: the next run fetches again
                    log.warning("could not write the run log and state at close: %s", exc)
                self.store.close()
                self._db.close()
            finally:
                self._scratch()
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None


def _in_progress(commit: Commit) -> bool:
    """A batch in the middle of a window: its bookkeeping moves only its window's progress."""
    return (
        commit.watermark is None
        and commit.refreshed_keys is None
        and commit.last_records is None
        and (commit.backfill_window is None or commit.backfill_next is not None)
    )


def working_db(scratch: Path) -> duckdb.DuckDBPyConnection:
    """The in-memory DuckDB where a writer decides, within `WORKING_MEMORY`, spilling to
    `scratch`."""
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    db.execute("SET memory_limit = ?", [WORKING_MEMORY])
    db.execute("SET temp_directory = ?", [str(scratch)])
    return db


def conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """`rows` as the table's schema orders and types them; a column it lacks is empty."""
    columns = [
        rows.column(f.name).cast(f.type)
        if f.name in rows.column_names
        else pa.nulls(rows.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _batch_of(ep: Endpoint, batch: pa.Table) -> pa.Table:
    """The batch with its columns checked against the table's: one that does not fit raises
    before anything of its group is committed."""
    schema = endpoint_schema(ep)
    wanted = [f for f in schema if f.name in batch.column_names]
    missing = {f.name for f in schema} - set(batch.column_names) - {
        "_synced_at", "_run_id", "_deleted_at", "_deleted_reason",
    }  # fmt: skip
    missing |= {"_seq"} - set(batch.column_names)
    if missing:
        raise DestinationError(f"{ep.name}: a batch lacks the columns {sorted(missing)}")
    try:
        columns = [batch.column(f.name).cast(f.type) for f in wanted]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DestinationError(f"{ep.name}: a batch does not fit its table: {exc}") from None
    return pa.Table.from_arrays(
        [*columns, batch.column("_seq")], names=[f.name for f in wanted] + ["_seq"]
    )


def _endpoint(name: str) -> Endpoint:
    return BY_NAME[name]


def _text(value: object) -> str | None:
    return None if value is None else str(value)
