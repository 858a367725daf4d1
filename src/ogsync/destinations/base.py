"""What every warehouse promises, and the SQL the promises share.

A destination keeps one table per endpoint (docs/design.md), writes each batch with its
checkpoint and run-log row in one transaction, and lets a newer version win every upsert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Protocol

import pyarrow as pa

from ogsync.destinations.errors import AlreadyRunning, DestinationError
from ogsync.endpoints import Endpoint
from ogsync.governance import Governance
from ogsync.plan import Checkpoint, EndpointState
from ogsync.vocabulary import DeletionReason, RunKind, RunStatus

META_COLUMNS = (
    "_raw",
    "_updated_latest",
    "_synced_at",
    "_run_id",
    "_deleted_at",
    "_deleted_reason",
)
RUNS_TABLE = "_ogsync_runs"
STATE_TABLE = "_ogsync_state"
DELETIONS_TABLE = "_ogsync_deletions"
BACKFILL_TABLE = "_ogsync_backfill"
EVENTS_TABLE = "events"
# Input that could not be applied (a webhook event, an API record), kept with the reason.
REJECTED_TABLE = "_ogsync_rejected"
# Each endpoint table has a view of its rows not soft-deleted: `<table>_current`, and until
# ogsync 0.2 the same view under its old name, `<table>_live`.
CURRENT_VIEW_SUFFIX = "_current"
DEPRECATED_VIEW_SUFFIX = "_live"

__all__ = ["AlreadyRunning", "DestinationError"]  # where they were first defined


@dataclass
class RunLog:
    """One row of `_ogsync_runs`: a run of one endpoint."""

    run_id: str
    endpoint: str
    kind: RunKind
    started_at: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None
    pages: int = 0
    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    records: int = 0
    soft_deletes: int = 0
    warnings: int = 0
    status: RunStatus = RunStatus.RUNNING
    error: str | None = None
    finished_at: datetime | None = None
    rejected: int = 0  # records set aside in `_ogsync_rejected` instead of loaded
    clock: str | None = None  # whose clock bounded the run: "api" or "local"

    def values(self) -> tuple:
        return astuple(self)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCESS

    def counted(self, result: WriteResult) -> RunLog:
        """This row with a committed batch's rows added."""
        return replace(
            self,
            records=self.records + result.written,
            soft_deletes=self.soft_deletes + result.soft_deleted,
        )


RUN_COLUMNS = tuple(f.name for f in fields(RunLog))


@dataclass(frozen=True)
class Rejected:
    """One row of `_ogsync_rejected`: input set aside, whole, with why."""

    source: str  # "webhook", or the endpoint a record came from
    item_id: str | None  # the event id, or the record's key as received (repr if not text)
    reason: str
    payload: str  # exactly as received (JSON text)


@dataclass
class Commit:
    """What a batch commits besides its rows, all in the same transaction."""

    run: RunLog  # the run-log row as it stands before this batch; the batch's rows are added
    checkpoint: Checkpoint | None = None  # where the window stands after this batch
    keep_checkpoint: bool = False  # write `checkpoint` (None clears it) only when True
    watermark: datetime | None = None  # the window is done: move the watermark here
    # Set `watermark` even if it is earlier: the one there came from a wrong clock.
    watermark_replaces: bool = False
    # A full refresh is done: soft-delete the rest. Arrow, since it may hold every key of a
    # large endpoint (as Python strings they would take several times the memory).
    refreshed_keys: pa.ChunkedArray | None = None
    last_records: int | None = None  # the endpoint's size this run, for worker ordering
    # A backfill window: its bounds, and where it stands (a `next` link, or None once done).
    backfill_window: tuple[datetime, datetime] | None = None
    backfill_next: str | None = None
    rejected: tuple[Rejected, ...] = ()  # records of this batch that could not be loaded


# One batch for the warehouse: its endpoint, its rows, and what commits with them.
BatchWrite = tuple[Endpoint, pa.Table | None, Commit]


@dataclass
class WriteResult:
    written: int = 0
    soft_deleted: int = 0


class WebhookEvent(Protocol):
    """A stored webhook event, as the inbox hands it over."""

    event_id: str
    type: str
    created: int | None  # unix seconds, from the envelope
    object_type: str | None
    object_id: str | None
    payload: str  # the body as received


@dataclass
class ApplyResult:
    stored: int = 0  # events new to the warehouse's `events` table
    deletions: int = 0  # tombstones recorded in `_ogsync_deletions`
    soft_deleted: int = 0  # rows soft-deleted by them now (others wait for their rows)
    rejected: int = 0  # events set aside in `_ogsync_rejected`: they could not be applied


@dataclass(frozen=True)
class RunRow:
    """A row of `_ogsync_runs`, as status reads it."""

    endpoint: str
    run_id: str
    kind: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    records: int
    error: str | None


@dataclass(frozen=True)
class StatusFacts:
    """What a warehouse holds about its endpoints; `ogsync.status` makes a status of it.
    A warehouse never synced has none of it."""

    watermarks: Mapping[str, datetime | None]
    runs: Sequence[RunRow]  # oldest first
    rows: Mapping[str, tuple[int, int]]  # endpoint -> (live rows, soft-deleted rows)


@dataclass(frozen=True)
class TableUpkeep:
    """What `maintain` did to one table."""

    table: str
    files_before: int
    files_after: int
    removed: int  # files no longer read, deleted

    def line(self) -> str:
        return (
            f"{self.table}: {self.files_before} -> {self.files_after} files, "
            f"{self.removed} unreferenced files removed"
        )


class WarehouseReader(Protocol):
    """What may be read without holding the warehouse (`ogsync status`, Airflow's planning)."""

    schema: str

    def load_states(self) -> Mapping[str, EndpointState]: ...

    def load_backfill(self, ep: Endpoint) -> Mapping[tuple[datetime, datetime], str | None]:
        """Backfill windows begun: window -> the link to resume from, or None when done."""
        ...

    def status_facts(self, endpoints: Iterable[Endpoint]) -> StatusFacts: ...

    def close(self) -> None: ...


class Destination(WarehouseReader, Protocol):
    """Everything ogsync asks of a warehouse it holds. Each warehouse implements all of it
    (tests/destinations runs one contract suite against each); nothing outside
    `ogsync.destinations` knows which warehouse it has."""

    def prepare(self, endpoints: Iterable[Endpoint]) -> None:
        """Create the schema, the endpoint tables and views, and the bookkeeping tables."""
        ...

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        """Upsert each batch (may be None) and apply its commit, all in one transaction. The
        run-log row written is the commit's with the batch's rows added (`RunLog.counted`);
        nothing given is changed."""
        ...

    def log_run(self, run: RunLog) -> None:
        """Insert or update a run-log row on its own (start and failure)."""
        ...

    def apply_events(self, events: Sequence[WebhookEvent]) -> ApplyResult:
        """Store webhook events and soft-delete what their deletions cover, atomically."""
        ...

    def reject(self, rows: Sequence[Rejected], run_id: str | None = None) -> None:
        """Keep input that could not be applied in `_ogsync_rejected`, in its own transaction."""
        ...

    def soft_delete(
        self, ep: Endpoint, keys: Sequence[str], reason: DeletionReason, source: str
    ) -> int:
        """Soft-delete these live rows of `ep`, with a tombstone each; how many it deleted."""
        ...

    def unsent_keys(self, ep: Endpoint) -> set[str]:
        """For reconcile: the live orders whose status is unsent, or (items) the live items of
        such orders."""
        ...

    def ready(self, ep: Endpoint, batch: pa.Table) -> None:
        """Called in the thread that typed `batch`, before it is queued for `write`: work on
        it that needs no connection (encoding it for the warehouse) is done there, beside
        the single writer rather than on it. Never touches the connection."""
        ...

    def idle(self) -> None:
        """Nothing waits to be written: a moment for housekeeping that would otherwise wait
        for the end of the run."""
        ...

    def maintain(self, retention: timedelta) -> list[TableUpkeep]:
        """Tidy the warehouse's files: compact each table's small files and delete those no
        commit younger than `retention` reads. A database that keeps its own files (DuckDB,
        PostgreSQL, Snowflake) has nothing to do and returns nothing."""
        ...

    def rewrite(self, governance: Governance) -> list[str]:
        """Bring every stored copy under these field rules (`prepare` refuses rules other than
        those the warehouse was written with); what was done, a line per endpoint. Raises
        DestinationError for what can't be done."""
        ...


@dataclass
class TableSql:
    """Identifiers and conditions shared by the SQL dialects."""

    ep: Endpoint
    prefix: str  # the schema, quoted and qualified as the warehouse needs (`SqlDestination.s`)
    columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.columns = [f.column for f in self.ep.fields]

    @property
    def table(self) -> str:
        return f"{self.prefix}.{quote(self.ep.name)}"

    @property
    def key(self) -> str:
        return self.ep.key

    @property
    def update_column(self) -> str | None:
        if self.ep.update_field is None:
            return None
        return self.ep.field_named(self.ep.update_field).column

    def newer_wins(self, current: str = "cur", incoming: str = "excluded") -> str:
        """When an incoming version may replace the stored one.

        Update times compare as intervals [update column, _updated_latest], which differ only
        for wall times the API's zone repeats. A live row takes any version that may be as new
        as it; where either side has no readable update time, the version fetched last wins.
        A soft-deleted row comes back only with a version surely newer than the stored one,
        and, when a webhook deleted it, updated after the deletion: a copy fetched before the
        deletion and loaded after it stays deleted.
        """
        upd = self.update_column
        if upd is None:
            return "TRUE"
        new, old = f'{incoming}."{upd}"', f'{current}."{upd}"'
        new_latest, old_latest = f"{incoming}._updated_latest", f"{current}._updated_latest"
        unknown = f"{new} IS NULL OR {old} IS NULL"
        by_webhook = DeletionReason.is_webhook_sql(f"{current}._deleted_reason")
        after_webhook = f"(NOT {by_webhook} OR {new} > {current}._deleted_at)"
        return (
            f"(({current}._deleted_at IS NULL AND ({unknown} OR {new_latest} >= {old})) "
            f"OR ({current}._deleted_at IS NOT NULL AND ({unknown} OR {new} > {old_latest}) "
            f"AND {after_webhook}))"
        )

    def dedupe_order(self, undated: bool = True) -> str:
        """Two copies of a key in one batch: the rule between batches decides (`newer_wins`).
        The newer version wins, the later copy on a tie; where any copy's update time did not
        parse, the copy fetched last. `undated`: some copy has no update time (the window
        function that rule needs costs a few times more than a plain order)."""
        upd = self.update_column
        if upd is None:
            return "_seq DESC"
        if not undated:
            return f"{quote(upd)} DESC, _seq DESC"
        dated = (
            f"CASE WHEN bool_or({quote(upd)} IS NULL) OVER (PARTITION BY {quote(self.key)}) "
            f"THEN NULL ELSE {quote(upd)} END"
        )
        return f"{dated} DESC NULLS LAST, _seq DESC"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class AccessReport:
    """What `ogsync check` found a warehouse lets ogsync do, and what to grant otherwise."""

    warehouse: str  # as messages may show it (no secret)
    found: tuple[str, ...]  # what is allowed, one line each
    missing: tuple[str, ...] = ()  # what is not, one line each
    grants: tuple[str, ...] = ()  # statements an administrator can run to allow it

    @property
    def ok(self) -> bool:
        return not self.missing
