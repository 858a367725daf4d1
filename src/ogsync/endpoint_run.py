"""One endpoint's part of a run: fetch its windows page by page, type the pages into batches,
and hand each batch, with what commits beside it, to the warehouse's single writer.

A worker keeps at most one batch waiting on the writer, and its fetcher at most a batch's
worth of pages, so fetching runs ahead of loading by about two batches and memory stays flat
however large the endpoint.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from ogsync.client import PAGE_SIZE, ApiError, AuthError, OrdergrooveClient, RequestStats
from ogsync.concurrency import WorkerSlots, timed
from ogsync.destinations.base import BatchWrite, Commit, Destination, Rejected, RunLog, WriteResult
from ogsync.endpoints import Endpoint
from ogsync.group_commit import GroupCommitWriter
from ogsync.options import SyncOptions
from ogsync.outcome import EndpointOutcome, Listener
from ogsync.plan import (
    Checkpoint,
    EndpointPlan,
    Mode,
    Window,
    describe_window,
    split_window,
    window_params,
)
from ogsync.prefetch import Prefetch
from ogsync.records import MissingKey, TypingReport, type_records
from ogsync.vocabulary import RunKind, RunStatus

log = logging.getLogger("ogsync.sync")

# Parsed records take several times the memory of their typed Arrow columns: type every few
# pages (ten: with five workers, fewer records parsed at once and no more CPU; bench/sync.py),
# and gather the compact result into the batch the warehouse gets.
TYPE_EVERY = 1000

Loader = GroupCommitWriter[BatchWrite, WriteResult]


# Parsed pages are bulky (several times their typed columns): however large the batch, a
# fetcher holds no more than the default batch's worth.
MAX_PAGES_AHEAD = 50


def pages_ahead(batch_records: int) -> int:
    """How many pages a worker's fetcher may hold for it: a batch's worth, so that pages keep
    coming while the worker waits for the writer to take its last batch (with two, the two
    waited on each other in turn: bench/sync.py)."""
    return max(2, min(MAX_PAGES_AHEAD, -(-batch_records // PAGE_SIZE)))


KIND_OF_MODE = {
    Mode.INCREMENTAL: RunKind.SYNC,
    Mode.FULL_REFRESH: RunKind.FULL_REFRESH,
    Mode.TEST_WINDOW: RunKind.TEST_WINDOW,
    Mode.BACKFILL: RunKind.BACKFILL,
}


@dataclass(frozen=True)
class RunContext:
    """What every endpoint of one run shares."""

    run_id: str
    client: OrdergrooveClient
    destination: Destination
    loader: Loader
    tz: ZoneInfo
    options: SyncOptions
    listener: Listener
    stop: threading.Event
    slots: WorkerSlots
    clock_source: str | None


class BatchBuilder:
    """A window's records on their way to a batch: typed a few pages at a time (parsed
    records are bulky), gathered as Arrow until a batch is full."""

    def __init__(self, ep: Endpoint, ctx: RunContext, report: TypingReport) -> None:
        self.ep, self.tz, self.report = ep, ctx.tz, report
        self.batch_records = ctx.options.batch_records
        self.max_record_bytes = ctx.options.max_record_bytes
        self.governance = ctx.options.governance
        self.fetched = 0  # records fetched in this window so far
        self._parsed: list[Any] = []
        self._typed: list[pa.Table] = []
        self._typed_rows = 0
        self._rejected: list[Rejected] = []  # records of the coming batch set aside

    def add(self, records: Sequence[Any], done: bool) -> None:
        if self.governance.changes_records:  # before anything of them is kept anywhere
            records = [self.governance.record(self.ep.name, r) for r in records]
        self._parsed.extend(records)
        self.fetched += len(records)
        if len(self._parsed) >= min(TYPE_EVERY, self.batch_records) or (done and self._parsed):
            first = self.fetched - len(self._parsed)
            chunk, report = type_records(
                self.ep, self._parsed, self.tz, first, self.max_record_bytes
            )
            self._parsed = []
            self.report.merge(report)
            self._rejected += report.rejected
            self._typed.append(chunk)
            self._typed_rows += chunk.num_rows

    def full(self, done: bool) -> bool:
        return done or self._typed_rows >= self.batch_records

    def take(self) -> tuple[pa.Table | None, list[Rejected]]:
        batch = pa.concat_tables(self._typed) if self._typed else None
        rejected = self._rejected
        self._typed, self._typed_rows, self._rejected = [], 0, []
        return batch, rejected


def batch_commit(
    plan: EndpointPlan,
    window: Window,
    run: RunLog,
    *,
    next_url: str | None,
    last_window: bool,
    fetched: int,
    refreshed: list[pa.Array] | None,
    rejected: Sequence[Rejected],
) -> Commit:
    """What commits with a batch, for each mode: where the window stands, and once it is done,
    the watermark, the full refresh's deletions, the endpoint's size. Pure."""
    done = next_url is None
    mode = plan.mode
    return Commit(
        run=run,
        checkpoint=Checkpoint(window.start, window.end, next_url, window.watermark_after)
        if plan.resumable and next_url
        else None,
        # Only syncs own the incremental checkpoint; backfills keep their own progress.
        keep_checkpoint=mode in (Mode.INCREMENTAL, Mode.FULL_REFRESH),
        backfill_window=(window.start, window.end)
        if mode == Mode.BACKFILL and window.start and window.end
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


class EndpointRun:
    """One endpoint in one run. It alone owns its run-log row, its request stats, its typing
    report and the batch it may have waiting on the writer."""

    def __init__(self, plan: EndpointPlan, ctx: RunContext) -> None:
        self.plan, self.ctx = plan, ctx
        self.ep = plan.endpoint
        self.run = RunLog(
            run_id=ctx.run_id,
            endpoint=self.ep.name,
            kind=KIND_OF_MODE[plan.mode],
            started_at=datetime.now(UTC),
            window_start=plan.windows[0].start if plan.windows else None,
            window_end=plan.windows[-1].end if plan.windows else None,
            clock=ctx.clock_source,
        )
        self.stats = RequestStats()
        self.report = TypingReport()
        self._pending: Future[WriteResult] | None = None

    def execute(self) -> EndpointOutcome:
        outcome = EndpointOutcome(self.ep.name, self.plan.mode.value, self.run, self.plan.windows)
        try:
            self._log_run()
            windows = deque(self.plan.windows)
            while windows:
                window = windows.popleft()
                try:
                    self._window(window, last_window=not windows)
                except _Split as split:
                    log.info("%s: pages over %.0fs; window split in two", self.ep.name,
                             self.stats.last_page_seconds)  # fmt: skip
                    windows.extendleft(reversed(split.halves))
            self.run.status = RunStatus.SUCCESS
        except (ApiError, MissingKey, _Stopped) as exc:  # Interrupted is an ApiError
            self.run.status, self.run.error = RunStatus.FAILED, str(exc)
            outcome.auth_failure = isinstance(exc, AuthError)
        except Exception as exc:  # a warehouse or bug: the endpoint fails, the run goes on
            log.exception("%s: unexpected error", self.ep.name)
            self.run.status, self.run.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        # A batch still in flight is committed first, so that its rows count in the last row;
        # if it fails, the endpoint has failed already and says why.
        with contextlib.suppress(Exception):
            self._settle()
        self.run.finished_at = datetime.now(UTC)
        self._count()
        outcome.unknown_fields = self.report.unknown_fields
        outcome.unparsed = dict(self.report.unparsed)
        try:
            self._log_run()
        except Exception:
            log.exception("%s: could not write the run log", self.ep.name)
        self.ctx.listener.finished(outcome)
        return outcome

    def _log_run(self) -> None:
        row = replace(self.run)
        self.ctx.loader.call(lambda: self.ctx.destination.log_run(row)).result()

    def _count(self) -> None:
        run, stats = self.run, self.stats
        run.pages, run.requests = stats.pages, stats.requests
        run.retries, run.rate_limit_waits = stats.retries, stats.rate_limit_waits
        run.warnings = self.report.warnings
        run.rejected = self.report.rejected_count

    def _settle(self) -> None:
        """Wait for the batch in flight, and count its rows in once it is committed."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            result = pending.result()
            self.run.records += result.written
            self.run.soft_deletes += result.soft_deleted

    def _window(self, window: Window, last_window: bool) -> None:
        ctx, ep = self.ctx, self.ep
        params = window_params(ep, window, ctx.tz)
        # A backfill's log names each window, so a long one can be followed and resumed.
        label = describe_window(window, ctx.tz) if self.plan.mode == Mode.BACKFILL else None
        if label is not None:
            ctx.listener.window_started(ep.name, label)
        refreshed: list[pa.Array] | None = [] if self.plan.mode == Mode.FULL_REFRESH else None
        builder = BatchBuilder(ep, ctx, self.report)
        pages = ctx.client.pages(ep.path, params, self.stats, window.resume_url)
        ahead = Prefetch(
            pages, depth=pages_ahead(ctx.options.batch_records), name=f"ogsync-{ep.name}"
        )
        for records, next_url in timed(ahead, ctx.slots):
            done = next_url is None
            builder.add(records, done)
            if not done and self._too_slow():
                halves = split_window(window, ctx.options.backfill.floor)  # type: ignore[union-attr]
                if halves is not None:
                    self._settle()
                    raise _Split(halves)
            if not builder.full(done):
                continue
            if ctx.stop.is_set() and not done:
                raise _Stopped(f"{ep.name}: stopped before the end of its window")
            batch, rejected = builder.take()
            if refreshed is not None and batch is not None:
                refreshed.extend(batch.column(ep.key).chunks)
            if refreshed is not None and rejected:  # served, so not deleted: only set aside
                refreshed.append(pa.array([r.item_id for r in rejected], pa.string()))
            if rejected:
                log.warning("%s: %d records set aside in _ogsync_rejected (%s)",
                            ep.name, len(rejected), rejected[0].reason)  # fmt: skip
            if batch is not None:
                ctx.destination.ready(ep, batch)
            self._settle()  # at most one batch waits on the warehouse
            self._count()
            commit = batch_commit(
                self.plan,
                window,
                replace(self.run),
                next_url=next_url,
                last_window=last_window,
                fetched=builder.fetched,
                refreshed=refreshed,
                rejected=rejected,
            )
            self._pending = ctx.loader.write((ep, batch, commit))
            ctx.listener.batch(ep.name, self.run, builder.fetched)
        self._settle()
        if label is not None:
            ctx.listener.window_done(ep.name, label, builder.fetched)

    def _too_slow(self) -> bool:
        spec = self.ctx.options.backfill
        return (
            self.plan.mode == Mode.BACKFILL
            and spec is not None
            and self.stats.last_page_seconds > spec.slow_page_seconds
        )


class _Stopped(Exception):
    """A stop was asked for: the endpoint ends after its last committed batch."""


class _Split(Exception):
    """A backfill window is too slow: go on with its two halves instead."""

    def __init__(self, halves: tuple[Window, Window]) -> None:
        super().__init__("split")
        self.halves = halves
