"""What a run fetches: windows and watermarks per endpoint. Pure functions, no I/O.

The incremental rule (docs/design.md): a run's bound is frozen when it starts
(`run_started_at`); an incremental endpoint asks for `updated_start = watermark - overlap`,
and its watermark moves to `run_started_at` only with the endpoint's last page.

The overlap widens the window at both ends. The API reads our naive bounds in its own zone,
which the documentation gives as CST in one place and EST in another, and a wall time in the
hour that repeats when clocks go back reads as its first occurrence. Each reading can put the
server's idea of a bound an hour earlier than ours (both together, two). At the start that
only fetches more; at the end it would hold back the last changes until the next run. So the
end asked for is `run_started_at + overlap`; records changed after `run_started_at` are
fetched again next run, and the upsert absorbs the repeats. Consecutive windows never leave
a gap under any of these readings (tests/unit/test_plan.py checks it as a property).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from math import ceil
from zoneinfo import ZoneInfo

from ogsync.apitime import format_filter, from_local_naive
from ogsync.clock import DEFAULT_TOLERANCE, in_future
from ogsync.endpoints import Endpoint

DEFAULT_OVERLAP = timedelta(minutes=60)


class Mode(StrEnum):
    INCREMENTAL = "incremental"  # from the watermark (or from the beginning when there is none)
    FULL_REFRESH = "full_refresh"  # everything, then soft-delete what the API no longer returns
    TEST_WINDOW = "test_window"  # --since/--until: a window that leaves the watermark alone
    BACKFILL = "backfill"  # history in calendar windows, each committed on its own


class WindowSize(StrEnum):
    YEAR = "year"
    MONTH = "month"
    WEEK = "week"
    DAY = "day"


@dataclass(frozen=True)
class Checkpoint:
    """An incremental window that a stopped run left half done, and where to pick it up."""

    window_start: datetime | None
    window_end: datetime | None
    next_url: str
    watermark_after: datetime | None  # what finishing the window commits


@dataclass(frozen=True)
class EndpointState:
    watermark: datetime | None = None
    checkpoint: Checkpoint | None = None
    last_records: int = 0  # what the endpoint's previous run fetched: biggest goes first


@dataclass(frozen=True)
class Window:
    start: datetime | None  # inclusive, aware UTC; None is the beginning of history
    end: datetime | None  # inclusive, aware UTC; None is no upper bound
    resume_url: str | None = None  # continue an interrupted window from this `next` link
    watermark_after: datetime | None = None  # committed with the window's last page


@dataclass(frozen=True)
class EndpointPlan:
    endpoint: Endpoint
    mode: Mode
    windows: tuple[Window, ...]
    # A watermark found past real time (a wrong clock committed it): the plan reads the
    # endpoint from the beginning, and finishing it replaces the watermark instead of only
    # ever moving it forward.
    future_watermark: datetime | None = None
    # A backfill's windows that earlier runs finished (`windows` holds only those to do).
    windows_done: int = 0

    @property
    def complete(self) -> bool:
        """A backfill every window of which is done already: there is nothing to fetch."""
        return self.mode == Mode.BACKFILL and not self.windows and self.windows_done > 0

    @property
    def resumable(self) -> bool:
        """Whether each batch saves a checkpoint (full refreshes start over instead)."""
        return self.mode in (Mode.INCREMENTAL, Mode.BACKFILL)


def plan_endpoint(
    ep: Endpoint,
    state: EndpointState,
    *,
    run_started_at: datetime,
    overlap: timedelta = DEFAULT_OVERLAP,
    since: datetime | None = None,
    until: datetime | None = None,
    full_refresh: bool = False,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> EndpointPlan:
    """`run_started_at` is a trusted clock (ogsync.clock.run_clock): a watermark later than it
    by more than `tolerance` can't be right, and nothing after it is known to be loaded."""
    if since is not None or until is not None:
        if not ep.incremental:
            return EndpointPlan(ep, Mode.TEST_WINDOW, (Window(None, None),))
        return EndpointPlan(ep, Mode.TEST_WINDOW, (Window(since, until or run_started_at),))
    if full_refresh or not ep.incremental:
        # No upper bound: a record that changes while we page moves ahead and is still seen,
        # so nothing live is mistaken for deleted. Later changes are refetched next run.
        return EndpointPlan(
            ep, Mode.FULL_REFRESH, (Window(None, None, watermark_after=run_started_at),)
        )
    windows: list[Window] = []
    watermark = state.watermark
    checkpoint = state.checkpoint
    future = next(
        (
            mark
            for mark in (watermark, checkpoint.watermark_after if checkpoint else None)
            if in_future(mark, run_started_at, tolerance)
        ),
        None,
    )
    if future is not None:  # when the wrong clock struck is unknown: read it all again
        window = Window(None, run_started_at + overlap, watermark_after=run_started_at)
        return EndpointPlan(ep, Mode.INCREMENTAL, (window,), future_watermark=future)
    if checkpoint is not None:
        cp = checkpoint
        windows.append(Window(cp.window_start, cp.window_end, cp.next_url, cp.watermark_after))
        if cp.watermark_after is not None:
            watermark = cp.watermark_after
    start = None if watermark is None else min(watermark, run_started_at) - overlap
    end = run_started_at + overlap
    windows.append(Window(start, end, watermark_after=run_started_at))
    return EndpointPlan(ep, Mode.INCREMENTAL, tuple(windows))


def plan_run(
    endpoints: Iterable[Endpoint],
    states: Mapping[str, EndpointState],
    *,
    run_started_at: datetime,
    overlap: timedelta = DEFAULT_OVERLAP,
    since: datetime | None = None,
    until: datetime | None = None,
    full_refresh: bool = False,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> list[EndpointPlan]:
    """One plan per endpoint, the largest (by its previous run, or else by its size rank)
    first."""
    plans = [
        plan_endpoint(
            ep,
            states.get(ep.name, EndpointState()),
            run_started_at=run_started_at,
            overlap=overlap,
            since=since,
            until=until,
            full_refresh=full_refresh,
            tolerance=tolerance,
        )
        for ep in endpoints
    ]

    def largest_first(plan: EndpointPlan) -> tuple[int, int]:
        state = states.get(plan.endpoint.name, EndpointState())
        return -state.last_records, -plan.endpoint.size_rank

    return sorted(plans, key=largest_first)


def _floor_second(instant: datetime) -> datetime:
    return instant.replace(microsecond=0)


def _ceil_second(instant: datetime) -> datetime:
    whole = instant.replace(microsecond=0)
    return whole + timedelta(seconds=ceil(instant.microsecond / 1e6))


def window_params(ep: Endpoint, window: Window, tz: ZoneInfo) -> dict[str, str]:
    """Query parameters for a window, its bounds written in the API's zone.

    The start is floored and the end ceiled to the second: bounds only ever widen.
    """
    params = dict(ep.list_params)
    if ep.incremental and ep.start_param and ep.end_param:
        if window.start is not None:
            params[ep.start_param] = format_filter(_floor_second(window.start), tz)
        if window.end is not None:
            params[ep.end_param] = format_filter(_ceil_second(window.end), tz)
    return params


def _next_boundary(local: datetime, size: WindowSize) -> datetime:
    if size == WindowSize.DAY:
        return local + timedelta(days=1)
    if size == WindowSize.WEEK:
        return local + timedelta(weeks=1)
    if size == WindowSize.MONTH:
        return local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)
    return local.replace(year=local.year + 1)


def backfill_windows(
    start: datetime, end: datetime, size: WindowSize, tz: ZoneInfo, *, clip: bool = True
) -> list[tuple[datetime, datetime]]:
    """Calendar windows in the API's zone covering [start, end], as inclusive UTC bounds.

    Each window ends one second before the next begins: the API's bounds are inclusive and
    to the second, so consecutive windows neither overlap nor leave a gap. Without `clip`, the
    last window runs to the end of its calendar period, so that a backfill up to "now" names
    the same windows when it is started again later.
    """
    local = start.astimezone(tz).replace(tzinfo=None)
    local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if size == WindowSize.MONTH:
        local = local.replace(day=1)
    elif size == WindowSize.YEAR:
        local = local.replace(month=1, day=1)
    windows = []
    while from_local_naive(local, tz) <= end:
        following = _next_boundary(local, size)
        upper = from_local_naive(following, tz) - timedelta(seconds=1)
        upper = min(upper, end) if clip else upper
        windows.append((from_local_naive(local, tz), upper))
        local = following
    return windows


def split_window(window: Window, floor: timedelta) -> tuple[Window, Window] | None:
    """Two halves of a window (the second keeps what finishing it commits), or None below the
    floor or for a window without bounds."""
    if window.start is None or window.end is None or window.end - window.start < 2 * floor:
        return None
    middle = _floor_second(window.start + (window.end - window.start) / 2)
    left = Window(window.start, middle)
    right = Window(
        middle + timedelta(seconds=1), window.end, watermark_after=window.watermark_after
    )
    return left, right


def plan_backfill(
    ep: Endpoint,
    windows: list[tuple[datetime, datetime]],
    progress: Mapping[tuple[datetime, datetime], str | None],
    *,
    run_started_at: datetime,
    reaches_now: bool,
) -> EndpointPlan:
    """The windows still to do, in order. `progress` maps a window to its resume link, or to
    None once done. A backfill that reaches the present hands over to incremental syncs: its
    last window commits the watermark (which never moves backwards)."""
    if not ep.incremental:
        return EndpointPlan(ep, Mode.FULL_REFRESH, (Window(None, None),))
    todo = []
    done = 0
    for number, (start, end) in enumerate(windows):
        key = (start, end)
        if key in progress and progress[key] is None:
            done += 1
            continue
        last = number == len(windows) - 1
        todo.append(
            Window(
                start,
                end,
                resume_url=progress.get(key),
                watermark_after=run_started_at if last and reaches_now else None,
            )
        )
    return EndpointPlan(ep, Mode.BACKFILL, tuple(todo), windows_done=done)


def describe_window(window: Window, tz: ZoneInfo) -> str:
    """A window as a person reads it, in the API's zone: whole days as dates
    (`2024-01-01 .. 2024-01-31`), anything else to the second."""
    if window.start is None or window.end is None:
        return "all of it"
    start = window.start.astimezone(tz).replace(tzinfo=None)
    end = window.end.astimezone(tz).replace(tzinfo=None)
    whole_days = start.time() == time(0) and end.time() == time(23, 59, 59)
    if whole_days:
        return f"{start.date()} .. {end.date()}"
    return f"{start.isoformat(' ')} .. {end.isoformat(' ')}"
