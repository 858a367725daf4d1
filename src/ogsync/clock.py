"""Whose clock bounds a run, and how far a watermark may be trusted. Pure functions.

A run's upper bound is the API's clock (its `Date` header), so that a wrong local clock can't
open a gap between runs. But a wrong API clock is as dangerous the other way: one run whose
`Date` is a year ahead would move every watermark a year ahead, and later runs would only ask
for that future. So the two clocks are compared; past a tolerance the API's is not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ogsync.client import ApiError

DEFAULT_TOLERANCE = timedelta(minutes=5)


class ClockSource(StrEnum):
    API = "api"
    LOCAL = "local"


class OnSkew(StrEnum):
    FAIL = "fail"  # the run stops: exit 1, nothing fetched, no watermark moved
    LOCAL = "local"  # the run goes on, bounded by the local clock


class ClockSkew(ApiError):
    """The API's clock is too far from the local one to be trusted (one line, for the user);
    like any failed call to the API, the run exits 1 and a later one may find it mended."""


@dataclass(frozen=True)
class RunClock:
    at: datetime  # the run's upper bound, aware UTC
    source: ClockSource
    note: str | None = None  # why the local clock was used, for the log


def run_clock(
    api: datetime | None,
    local: datetime,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    on_skew: OnSkew = OnSkew.FAIL,
) -> RunClock:
    """The run's bound: the API's clock when it agrees with the local one within `tolerance`."""
    if api is None:
        return RunClock(local, ClockSource.LOCAL, "the API sent no readable Date header")
    skew = api - local
    if abs(skew) <= tolerance:
        return RunClock(api, ClockSource.API)
    way = "ahead" if skew > timedelta(0) else "behind"
    told = (
        f"the API's clock reads {api:%Y-%m-%d %H:%M:%S}Z, this machine's "
        f"{local:%Y-%m-%d %H:%M:%S}Z ({_span(skew)} {way}, "
        f"over clock_tolerance_minutes = {tolerance.total_seconds() / 60:g})"
    )
    if on_skew == OnSkew.LOCAL:
        return RunClock(local, ClockSource.LOCAL, told)
    raise ClockSkew(
        f"{told}: not trusted, nothing synced. Correct whichever clock is wrong, or set "
        'on_clock_skew = "local" to run on this machine\'s clock'
    )


def in_future(watermark: datetime | None, now: datetime, tolerance: timedelta) -> bool:
    """Whether a watermark lies past real time: only a wrong clock could have committed it."""
    return watermark is not None and watermark > now + tolerance


def _span(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"
