"""Runs a plan: one fetching worker per endpoint, one writer to the warehouse.

Workers fetch pages and type them into batches (`ogsync.endpoint_run`); a single writer thread
owns the warehouse connection and commits each batch with its checkpoint and run-log row
(`ogsync.group_commit`). Endpoints start one at a time and run side by side only while the
API's latency warrants it (`ogsync.concurrency`).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ogsync.client import OrdergrooveClient, RateBudget, RequestStats, RetryPolicy
from ogsync.clock import ClockSkew, ClockSource, RunClock, run_clock
from ogsync.concurrency import WorkerSlots
from ogsync.config import Settings
from ogsync.destinations import open_destination
from ogsync.destinations.base import Destination, RunLog
from ogsync.endpoint_run import EndpointRun, Loader, RunContext
from ogsync.endpoints import ENDPOINTS, Endpoint
from ogsync.exit_codes import EXIT_AUTH, EXIT_ENDPOINT_FAILED, EXIT_OK
from ogsync.group_commit import GroupCommitWriter
from ogsync.options import Backfill, SyncOptions
from ogsync.outcome import EndpointOutcome, Listener, SyncResult
from ogsync.plan import EndpointPlan, backfill_windows, plan_backfill, plan_run
from ogsync.reconcile import reconcile
from ogsync.vocabulary import RunKind, RunStatus
from ogsync.webhooks.apply import apply_inbox, inbox_for_sync
from ogsync.webhooks.inbox import Inbox

__all__ = [
    "EXIT_AUTH",
    "EXIT_ENDPOINT_FAILED",
    "EXIT_OK",
    "Backfill",
    "EndpointOutcome",
    "Listener",
    "SyncEngine",
    "SyncOptions",
    "SyncResult",
    "api_client",
    "run_sync",
    "sync_with",
]

log = logging.getLogger("ogsync.sync")

# Batches waiting when the writer comes round are committed together, up to this many.
MAX_GROUP = 8


def new_run_id(started: datetime) -> str:
    return f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class SyncEngine:
    """Fetches and loads the chosen endpoints: reads the clock, plans, runs the workers."""

    def __init__(
        self,
        client: OrdergrooveClient,
        destination: Destination,
        api_tz: ZoneInfo,
        options: SyncOptions,
        listener: Listener | None = None,
        stop: threading.Event | None = None,
        local_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.destination = destination
        self.tz = api_tz
        self.options = options
        self.listener = listener or Listener()
        self.stop = stop or threading.Event()
        self.local_clock = local_clock
        self._prepared = False

    def prepare(self) -> None:
        """Every table exists, synced or not yet (once per engine)."""
        if not self._prepared:
            self.destination.prepare(self.options.governance.endpoints(ENDPOINTS))
            self._prepared = True

    def run(self) -> SyncResult:
        """Sync every chosen endpoint; raises AuthError if the key is refused up front."""
        self.prepare()
        clock = self._clock()
        plans = self._plans(clock.at)
        self.listener.planned(plans, clock.at, clock.source.value)
        workers = max(1, min(self.options.max_workers, len(plans)))
        slots = WorkerSlots(workers)
        loader: Loader = GroupCommitWriter(
            self.destination.write,
            name="ogsync-loader",
            max_group=MAX_GROUP,
            idle=self.destination.idle,
        )
        ctx = RunContext(
            run_id=new_run_id(clock.at),
            client=self.client,
            destination=self.destination,
            loader=loader,
            tz=self.tz,
            options=self.options,
            listener=self.listener,
            stop=self.stop,
            slots=slots,
            clock_source=clock.source.value,
        )
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="ogsync-worker") as pool:
                futures = [
                    pool.submit(_in_turn, slots, turn, EndpointRun(plan, ctx).execute)
                    for turn, plan in enumerate(plans)
                ]
                outcomes = [f.result() for f in futures]
        finally:
            loader.close()
        log.info("endpoints synced %d at once (at most %d)", slots.peak, workers)
        return SyncResult(ctx.run_id, clock.at, outcomes, workers_at_once=slots.peak)

    def _plans(self, run_started_at: datetime) -> list[EndpointPlan]:
        options = self.options
        plans = plan_run(
            options.endpoints,
            self.destination.load_states(),
            run_started_at=run_started_at,
            overlap=options.overlap,
            since=options.since,
            until=options.until,
            full_refresh=options.full_refresh,
            tolerance=options.clock_tolerance,
        )
        for plan in plans:
            if plan.future_watermark is not None:
                log.warning(
                    "%s: its watermark %s is past real time (a wrong clock committed it); "
                    "reading the endpoint from the beginning to repair it",
                    plan.endpoint.name,
                    plan.future_watermark.isoformat(),
                )
        if options.backfill is None:
            return plans
        return [self._backfill_plan(p.endpoint, options.backfill, run_started_at) for p in plans]

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
                    RunLog(run_id, ep.name, RunKind.SYNC, now, status=RunStatus.FAILED,
                           error=str(exc), finished_at=now, clock=ClockSource.API.value)
                )  # fmt: skip
            raise
        if clock.source == ClockSource.LOCAL:
            log.warning("%s: the run is bounded by the local clock", clock.note)
        return clock

    def _backfill_plan(
        self, ep: Endpoint, spec: Backfill, run_started_at: datetime
    ) -> EndpointPlan:
        windows = backfill_windows(spec.start, spec.end or run_started_at, spec.size, self.tz,
                                   clip=spec.end is not None)  # fmt: skip
        progress = self.destination.load_backfill(ep) if ep.incremental else {}
        return plan_backfill(
            ep, windows, progress, run_started_at=run_started_at, reaches_now=spec.end is None
        )


def _in_turn(slots: WorkerSlots, turn: int, job: Callable[[], EndpointOutcome]) -> EndpointOutcome:
    slots.acquire(turn)
    try:
        return job()
    finally:
        slots.release()


def sync_with(engine: SyncEngine, inbox: Inbox | None = None) -> SyncResult:
    """One run of `engine`: the inbox's deletions first (when given), then the endpoints,
    then reconcile (when asked)."""
    destination, options = engine.destination, engine.options
    webhooks = None
    if inbox is not None:
        engine.prepare()
        webhooks = apply_inbox(inbox, destination, options.governance)
    result = engine.run()
    result.webhooks = webhooks
    if options.reconcile:
        result.reconciled = reconcile(engine.client, destination, result.run_id)
    return result


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
    (none when the run is not exclusive: it holds only its endpoints).
    """
    api_key = settings.require_api_key()
    destination = open_destination(
        settings.destination,
        settings.schema,
        memory_limit=settings.duckdb_memory_limit,
        claims=None if options.exclusive else [ep.name for ep in options.endpoints],
    )
    own_inbox = inbox is None
    if not options.exclusive:
        inbox = None
    elif own_inbox:
        inbox = inbox_for_sync(settings)
    try:
        with api_client(settings, api_key, stop=stop) as client:
            engine = SyncEngine(client, destination, settings.tz, options, listener, stop)
            return sync_with(engine, inbox)
    finally:
        destination.close()
        if own_inbox and inbox is not None:
            inbox.close()
