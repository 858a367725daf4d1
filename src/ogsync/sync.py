"""Runs a plan: one fetching worker per endpoint, one loader, checkpoints and the run log.

Workers fetch pages and type them into batches; a single loader thread owns the warehouse
connection and commits each batch with its checkpoint and run-log row. A worker keeps at most
one batch waiting on the loader, so fetching runs ahead of loading by one batch and memory
stays flat however large the endpoint. Endpoints start one at a time and run side by side
only while the API's latency warrants it (see `ogsync.concurrency`).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from ogsync.client import (
    ApiError,
    AuthError,
    OrdergrooveClient,
    RateBudget,
    RequestStats,
    RetryPolicy,
)
from ogsync.clock import DEFAULT_TOLERANCE, ClockSkew, ClockSource, OnSkew, RunClock, run_clock
from ogsync.concurrency import WorkerSlots, timed
from ogsync.config import Settings
from ogsync.destinations import open_destination
from ogsync.destinations.base import (
    ApplyResult,
    Commit,
    Destination,
    Rejected,
    RunLog,
    WriteResult,
)
from ogsync.destinations.sql import SqlDestination
from ogsync.endpoints import ENDPOINTS, Endpoint
from ogsync.plan import (
    DEFAULT_OVERLAP,
    Checkpoint,
    EndpointPlan,
    Mode,
    Window,
    WindowSize,
    backfill_windows,
    plan_backfill,
    plan_run,
    split_window,
    window_params,
)
from ogsync.prefetch import Prefetch
from ogsync.reconcile import ReconcileResult, reconcile
from ogsync.records import MissingKey, TypingReport, type_records
from ogsync.webhooks.apply import apply_inbox, inbox_for_sync
from ogsync.webhooks.inbox import Inbox

log = logging.getLogger("ogsync.sync")

EXIT_OK = 0
EXIT_ENDPOINT_FAILED = 1
EXIT_AUTH = 3
# Parsed records take several times the memory of their typed Arrow columns: type every few
# pages, and gather the compact result into the batch the warehouse gets.
TYPE_EVERY = 2500


@dataclass(frozen=True)
class SyncOptions:
    endpoints: Sequence[Endpoint]
    since: datetime | None = None
    until: datetime | None = None
    full_refresh: bool = False
    overlap: timedelta = DEFAULT_OVERLAP
    max_workers: int = 5
    batch_records: int = 5000
    reconcile: bool = False  # after the endpoints, catch deletions whose webhooks were lost
    backfill: Backfill | None = None  # load history in windows instead of syncing
    # False: hold only the chosen endpoints of the warehouse, so that runs of other endpoints
    # can go at the same time (one Airflow task per endpoint). The webhook inbox and
    # reconciling touch other endpoints' rows, so they are left to a run holding it all.
    exclusive: bool = True
    # How far the API's clock may be from the local one, and what a run does past that.
    clock_tolerance: timedelta = DEFAULT_TOLERANCE
    on_clock_skew: OnSkew = OnSkew.FAIL
    max_record_bytes: int | None = None  # a larger record is set aside, not loaded

    def __post_init__(self) -> None:
        if self.reconcile and not self.exclusive:
            raise ValueError("reconcile needs the whole warehouse: run it on its own")
        if not self.endpoints and not self.reconcile:
            raise ValueError("no endpoints to sync")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(
                f"--since {self.since.isoformat()} is after --until {self.until.isoformat()}"
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, endpoints: Sequence[Endpoint], **chosen: Any
    ) -> SyncOptions:
        """Options as the settings give them (at most five workers), plus the run's choices."""
        return cls(
            endpoints=endpoints,
            overlap=settings.overlap,
            max_workers=settings.workers,
            batch_records=settings.batch_records,
            clock_tolerance=timedelta(minutes=settings.clock_tolerance_minutes),
            on_clock_skew=OnSkew(settings.on_clock_skew),
            max_record_bytes=settings.max_record_bytes,
            **chosen,
        )


@dataclass(frozen=True)
class Backfill:
    start: datetime
    end: datetime | None = None  # None: up to the present, then hand over to incremental syncs
    size: WindowSize = WindowSize.MONTH
    # The guide's sign that a range is too big: a page this slow splits the rest of its window.
    slow_page_seconds: float = 20.0
    floor: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(
                f"--end {self.end.isoformat()} is before --start {self.start.isoformat()}"
            )


@dataclass
class EndpointOutcome:
    endpoint: str
    mode: str
    run: RunLog
    windows: tuple[Window, ...]
    unknown_fields: set[str] = field(default_factory=set)
    unparsed: dict[str, int] = field(default_factory=dict)
    auth_failure: bool = False

    @property
    def ok(self) -> bool:
        return self.run.status == "success"


@dataclass
class SyncResult:
    run_id: str
    run_started_at: datetime
    outcomes: list[EndpointOutcome]
    reconciled: ReconcileResult | None = None
    workers_at_once: int = 0  # the most endpoints that synced at the same time
    webhooks: ApplyResult | None = None  # the inbox drained before fetching, if there was one

    @property
    def exit_code(self) -> int:
        if any(o.auth_failure for o in self.outcomes):
            return EXIT_AUTH
        reconciled = self.reconciled.runs if self.reconciled else []
        ok = all(o.ok for o in self.outcomes) and all(r.status == "success" for r in reconciled)
        return EXIT_OK if ok else EXIT_ENDPOINT_FAILED


class Listener:
    """What a user interface hears from a run; the default hears nothing."""

    def planned(
        self, plans: Sequence[EndpointPlan], run_started_at: datetime, clock: str = "api"
    ) -> None: ...

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None: ...

    def finished(self, outcome: EndpointOutcome) -> None: ...


@dataclass
class _Write:
    ep: Endpoint
    batch: pa.Table | None
    commit: Commit
    run: RunLog  # the endpoint's live run row: the loader alone counts what was committed
    future: Future[WriteResult]


class _Loader:
    """The one thread that talks to the warehouse while workers fetch.

    Batches that are waiting when the loader comes round are committed together (a group
    commit): each still lands with its own checkpoint and run-log row, in one transaction
    instead of several. Should the group fail, each batch is retried alone, so only the
    endpoint whose batch is at fault fails.
    """

    MAX_GROUP = 8
    IDLE_AFTER = 0.05  # seconds without a job before the warehouse may tidy up

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.jobs: queue.Queue[_Write | tuple[Callable[[], Any], Future[Any]] | None]
        self.jobs = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="ogsync-loader", daemon=True)
        self.thread.start()

    def call(self, job: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self.jobs.put((job, future))
        return future

    def write(
        self, ep: Endpoint, batch: pa.Table | None, commit: Commit, run: RunLog
    ) -> Future[Any]:
        future: Future[WriteResult] = Future()
        self.jobs.put(_Write(ep, batch, commit, run, future))
        return future

    def _run(self) -> None:
        held = None
        while True:
            item = held if held is not None else self._next()
            held = None
            if item is None:
                return
            if not isinstance(item, _Write):
                job, future = item
                _settle(future, job)
                continue
            group = [item]
            while len(group) < self.MAX_GROUP:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Write):
                    held = more  # keeps its place after the group
                    break
                group.append(more)
            self._commit(group)

    def _next(self) -> _Write | tuple[Callable[[], Any], Future[Any]] | None:
        """The next job; if none comes soon, the warehouse gets an idle moment first."""
        try:
            return self.jobs.get(timeout=self.IDLE_AFTER)
        except queue.Empty:
            pass
        try:
            self.destination.idle()
        except Exception as exc:  # housekeeping only: the next commit will say if it matters
            log.warning("warehouse housekeeping failed: %s", exc)
        return self.jobs.get()

    def _commit(self, group: list[_Write]) -> None:
        for w in group:
            w.commit.run.records, w.commit.run.soft_deletes = w.run.records, w.run.soft_deletes
        try:
            results = self.destination.write([(w.ep, w.batch, w.commit) for w in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
            else:
                for w in group:
                    self._commit([w])
            return
        for w, result in zip(group, results, strict=True):
            w.run.records += result.written
            w.run.soft_deletes += result.soft_deleted
            w.future.set_result(result)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()


def _settle(future: Future[Any], job: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(job())
    except BaseException as exc:
        future.set_exception(exc)


def new_run_id(started: datetime) -> str:
    return f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class SyncEngine:
    def __init__(
        self,
        client: OrdergrooveClient,
        destination: Destination,
        api_tz: ZoneInfo,
        options: SyncOptions,
        listener: Listener | None = None,
        stop: threading.Event | None = None,
        inbox: Inbox | None = None,
        local_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.local_clock = local_clock
        self._clock_source: str | None = None
        self.inbox = inbox
        self.client = client
        self.destination = destination
        self.tz = api_tz
        self.options = options
        self.listener = listener or Listener()
        self.stop = stop or threading.Event()

    def run(self) -> SyncResult:
        """Sync every chosen endpoint; raises AuthError if the key is refused up front."""
        self.destination.prepare(ENDPOINTS)  # every table exists, synced or not yet
        webhooks = None
        if self.inbox is not None:  # deletions the webhooks announced since the last run
            webhooks = apply_inbox(self.inbox, self.destination)
        clock = self._clock()
        run_started_at = clock.at
        run_id = new_run_id(run_started_at)
        states = self.destination.load_states()
        plans = plan_run(
            self.options.endpoints,
            states,
            run_started_at=run_started_at,
            overlap=self.options.overlap,
            since=self.options.since,
            until=self.options.until,
            full_refresh=self.options.full_refresh,
            tolerance=self.options.clock_tolerance,
        )
        for plan in plans:
            if plan.future_watermark is not None:
                log.warning(
                    "%s: its watermark %s is past real time (a wrong clock committed it); "
                    "reading the endpoint from the beginning to repair it",
                    plan.endpoint.name,
                    plan.future_watermark.isoformat(),
                )
        if self.options.backfill is not None:
            plans = [self._backfill_plan(p.endpoint, run_started_at) for p in plans]
        self.listener.planned(plans, run_started_at, clock.source.value)
        loader = _Loader(self.destination)
        try:
            workers = max(1, min(self.options.max_workers, len(plans)))
            slots = WorkerSlots(workers)
            with ThreadPoolExecutor(workers, thread_name_prefix="ogsync-worker") as pool:
                futures = [
                    pool.submit(self._endpoint, plan, run_id, loader, slots, turn)
                    for turn, plan in enumerate(plans)
                ]
                outcomes = [f.result() for f in futures]
        finally:
            loader.close()
        log.info("endpoints synced %d at once (at most %d)", slots.peak, workers)
        result = SyncResult(
            run_id, run_started_at, outcomes, workers_at_once=slots.peak, webhooks=webhooks
        )
        if self.options.reconcile and isinstance(self.destination, SqlDestination):
            result.reconciled = reconcile(self.client, self.destination, run_id)
        return result

    def _clock(self) -> RunClock:
        """The run's bound, checked against the local clock (ogsync.clock)."""
        api_time = self.client.server_time(RequestStats())
        try:
            clock = run_clock(
                api_time,
                self.local_clock(),
                tolerance=self.options.clock_tolerance,
                on_skew=self.options.on_clock_skew,
            )
        except ClockSkew as exc:
            now = datetime.now(UTC)
            run_id = new_run_id(now)
            for ep in self.options.endpoints:  # `status` shows why nothing synced
                self.destination.log_run(
                    RunLog(run_id, ep.name, "sync", now, status="failed",
                           error=str(exc), finished_at=now, clock=ClockSource.API.value)
                )  # fmt: skip
            raise
        if clock.source == ClockSource.LOCAL:
            log.warning("%s: the run is bounded by the local clock", clock.note)
        self._clock_source = clock.source.value
        return clock

    def _backfill_plan(self, ep: Endpoint, run_started_at: datetime) -> EndpointPlan:
        spec = self.options.backfill
        assert spec is not None
        windows = backfill_windows(spec.start, spec.end or run_started_at, spec.size, self.tz,
                                   clip=spec.end is not None)  # fmt: skip
        progress = self.destination.load_backfill(ep) if ep.incremental else {}
        return plan_backfill(
            ep, windows, progress, run_started_at=run_started_at, reaches_now=spec.end is None
        )

    def _endpoint(
        self, plan: EndpointPlan, run_id: str, loader: _Loader, slots: WorkerSlots, turn: int
    ) -> EndpointOutcome:
        slots.acquire(turn)
        try:
            return self._endpoint_run(plan, run_id, loader, slots)
        finally:
            slots.release()

    def _endpoint_run(
        self, plan: EndpointPlan, run_id: str, loader: _Loader, slots: WorkerSlots
    ) -> EndpointOutcome:
        ep = plan.endpoint
        kind = "sync" if plan.mode == Mode.INCREMENTAL else plan.mode.value
        run = RunLog(
            run_id=run_id,
            endpoint=ep.name,
            kind=kind,
            started_at=datetime.now(UTC),
            window_start=plan.windows[0].start if plan.windows else None,
            window_end=plan.windows[-1].end if plan.windows else None,
            clock=self._clock_source,
        )
        outcome = EndpointOutcome(ep.name, plan.mode.value, run, plan.windows)
        stats = RequestStats()
        report = TypingReport()
        try:
            loader.call(lambda: self.destination.log_run(replace(run))).result()
            windows = deque(plan.windows)
            while windows:
                window = windows.popleft()
                try:
                    self._window(plan, window, not windows, run, stats, report, loader, slots)
                except _Split as split:
                    log.info("%s: pages over %.0fs; window split in two", ep.name,
                             stats.last_page_seconds)  # fmt: skip
                    windows.extendleft(reversed(split.halves))
            run.status = "success"
        except (ApiError, MissingKey, _Stopped) as exc:  # Interrupted is an ApiError
            run.status, run.error = "failed", str(exc)
            outcome.auth_failure = isinstance(exc, AuthError)
        except Exception as exc:  # a warehouse or bug: the endpoint fails, the run goes on
            log.exception("%s: unexpected error", ep.name)
            run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        run.finished_at = datetime.now(UTC)
        self._count(run, stats, report)
        outcome.unknown_fields = report.unknown_fields
        outcome.unparsed = dict(report.unparsed)
        try:
            loader.call(lambda: self.destination.log_run(replace(run))).result()
        except Exception:
            log.exception("%s: could not write the run log", ep.name)
        self.listener.finished(outcome)
        return outcome

    @staticmethod
    def _count(run: RunLog, stats: RequestStats, report: TypingReport) -> None:
        run.pages, run.requests = stats.pages, stats.requests
        run.retries, run.rate_limit_waits = stats.retries, stats.rate_limit_waits
        run.warnings = report.warnings
        run.rejected = report.rejected_count

    def _window(
        self,
        plan: EndpointPlan,
        window: Window,
        last_window: bool,
        run: RunLog,
        stats: RequestStats,
        report: TypingReport,
        loader: _Loader,
        slots: WorkerSlots,
    ) -> None:
        ep = plan.endpoint
        params = window_params(ep, window, self.tz)
        refreshed: list[pa.Array] | None = [] if plan.mode == Mode.FULL_REFRESH else None
        pending: Future[WriteResult] | None = None
        buffer: list[Any] = []  # records as parsed: bulky, so typed a few pages at a time
        typed: list[pa.Table] = []  # compact Arrow, until a batch is full
        typed_rows = fetched = 0
        rejected: list[Rejected] = []  # records of the coming batch set aside, not loaded
        pages = self.client.pages(ep.path, params, stats, window.resume_url)
        for records, next_url in timed(Prefetch(pages, name=f"ogsync-{ep.name}"), slots):
            buffer.extend(records)
            fetched += len(records)
            done = next_url is None
            if not done and self._too_slow(plan, stats):
                halves = split_window(window, self._spec_floor())
                if halves is not None:
                    if pending is not None:
                        pending.result()
                    raise _Split(halves)
            if len(buffer) >= min(TYPE_EVERY, self.options.batch_records) or (done and buffer):
                chunk, chunk_report = type_records(
                    ep, buffer, self.tz, fetched - len(buffer), self.options.max_record_bytes
                )
                buffer = []
                report.merge(chunk_report)
                rejected += chunk_report.rejected
                typed.append(chunk)
                typed_rows += chunk.num_rows
            if typed_rows < self.options.batch_records and not done:
                continue
            if self.stop.is_set() and not done:
                raise _Stopped(f"{ep.name}: stopped before the end of its window")
            batch = pa.concat_tables(typed) if typed else None
            typed, typed_rows = [], 0
            if refreshed is not None and batch is not None:
                refreshed.extend(batch.column(ep.key).chunks)
            if refreshed is not None and rejected:  # served, so not deleted: only set aside
                refreshed.append(pa.array([r.item_id for r in rejected], pa.string()))
            self._count(run, stats, report)
            commit = Commit(
                run=replace(run),
                checkpoint=Checkpoint(window.start, window.end, next_url, window.watermark_after)
                if plan.resumable and next_url
                else None,
                # Only syncs own the incremental checkpoint; backfills keep their own progress.
                keep_checkpoint=plan.mode in (Mode.INCREMENTAL, Mode.FULL_REFRESH),
                backfill_window=(window.start, window.end)
                if plan.mode == Mode.BACKFILL and window.start and window.end
                else None,
                backfill_next=next_url,
                watermark=window.watermark_after if done else None,
                watermark_replaces=plan.future_watermark is not None,
                refreshed_keys=pa.chunked_array(refreshed, pa.string())
                if done and refreshed is not None
                else None,
                last_records=fetched if done and last_window else None,
                rejected=tuple(rejected),
            )
            if rejected:
                log.warning("%s: %d records set aside in _ogsync_rejected (%s)",
                            ep.name, len(rejected), rejected[0].reason)  # fmt: skip
                rejected = []
            if pending is not None:
                pending.result()  # at most one batch waits on the warehouse
            pending = loader.write(ep, batch, commit, run)
            self.listener.batch(ep.name, run, fetched)
        if pending is not None:
            pending.result()

    def _too_slow(self, plan: EndpointPlan, stats: RequestStats) -> bool:
        spec = self.options.backfill
        return (
            plan.mode == Mode.BACKFILL
            and spec is not None
            and stats.last_page_seconds > spec.slow_page_seconds
        )

    def _spec_floor(self) -> timedelta:
        return self.options.backfill.floor if self.options.backfill else timedelta(hours=1)


class _Stopped(Exception):
    """A stop was asked for: the endpoint ends after its last committed batch."""


class _Split(Exception):
    """A backfill window is too slow: go on with its two halves instead."""

    def __init__(self, halves: tuple[Window, Window]) -> None:
        super().__init__("split")
        self.halves = halves


def api_client(
    settings: Settings,
    api_key: str,
    *,
    stop: threading.Event | None = None,
    max_attempts: int | None = None,
) -> OrdergrooveClient:
    """The API client as the settings describe it."""
    return OrdergrooveClient(
        settings.base_url,
        api_key,
        timeout_seconds=settings.timeout_seconds,
        retry=RetryPolicy(max_attempts=max_attempts or settings.max_attempts),
        budget=RateBudget(settings.requests_per_minute),
        allow_insecure_http=settings.allow_insecure_http,
        max_page_bytes=settings.max_page_bytes,
        max_pages=settings.max_pages,
        stop=stop,
    )


def run_sync(
    settings: Settings,
    options: SyncOptions,
    listener: Listener | None = None,
    stop: threading.Event | None = None,
    inbox: Inbox | None = None,
) -> SyncResult:
    """Open the API client and the warehouse from settings and run one sync.

    The webhook inbox drained first is the one given, else the one the settings point to
    (none when the run is not exclusive).
    """
    api_key = settings.require_api_key()
    destination = open_destination(
        settings.destination,
        settings.schema,
        duckdb_memory_limit=settings.duckdb_memory_limit,
        claims=None if options.exclusive else [ep.name for ep in options.endpoints],
    )
    own_inbox = inbox is None
    if not options.exclusive:
        inbox = None
    elif own_inbox:
        inbox = inbox_for_sync(settings)
    try:
        with api_client(settings, api_key, stop=stop) as client:
            engine = SyncEngine(client, destination, settings.tz, options, listener, stop, inbox)
            return engine.run()
    finally:
        destination.close()
        if own_inbox and inbox is not None:
            inbox.close()
