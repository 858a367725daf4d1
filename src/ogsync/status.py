"""What the warehouse says about each endpoint: watermark, last run, rows, and the lag.

Read-only: everything comes from the warehouse's own tables (`WarehouseReader.status_facts`),
so a monitor can ask without an API key. The lag is how far the endpoint's data is behind
`now`: for an incremental endpoint, its watermark (the API's clock when the run that last
committed it began); for a full-refresh endpoint, the start of its last successful run.
An endpoint never synced has no lag at all, and counts as infinitely stale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ogsync.clock import DEFAULT_TOLERANCE, in_future
from ogsync.destinations.base import RunRow, WarehouseReader
from ogsync.endpoints import ENDPOINTS, Endpoint
from ogsync.vocabulary import NOT_A_SYNC, RunKind, RunStatus


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    incremental: bool
    watermark: datetime | None  # the committed watermark in `_ogsync_state`
    fresh_as_of: datetime | None  # what the lag is measured from (see the module docstring)
    lag: timedelta | None  # now - fresh_as_of; None when never synced
    last_run: RunRow | None
    last_success_at: datetime | None  # when the last successful sync (not NOT_A_SYNC) ended
    live: int
    deleted: int
    # The watermark lies past real time: a wrong clock committed it, and the next sync reads
    # the endpoint again from the beginning to repair it. Until then it counts as stale.
    future_watermark: bool = False

    def as_json(self) -> dict[str, Any]:
        run = self.last_run
        return {
            "endpoint": self.endpoint,
            "incremental": self.incremental,
            "watermark": _iso(self.watermark),
            "fresh_as_of": _iso(self.fresh_as_of),
            "lag_seconds": None if self.lag is None else round(self.lag.total_seconds(), 3),
            "last_run": None
            if run is None
            else {
                "run_id": run.run_id,
                "kind": run.kind,
                "status": run.status,
                "started_at": _iso(run.started_at),
                "finished_at": _iso(run.finished_at),
                "records": run.records,
                "error": run.error,
            },
            "last_success_at": _iso(self.last_success_at),
            "live": self.live,
            "deleted": self.deleted,
            "future_watermark": self.future_watermark,
        }

    @classmethod
    def from_json(cls, row: dict[str, Any], now: datetime) -> EndpointStatus:
        """A status `as_json` wrote, its lag measured again to `now`."""
        run = row.get("last_run")
        as_of = _parsed(row.get("fresh_as_of"))
        return cls(
            endpoint=row["endpoint"],
            incremental=bool(row["incremental"]),
            watermark=_parsed(row.get("watermark")),
            fresh_as_of=as_of,
            lag=None if as_of is None else now - as_of,
            last_run=None
            if run is None
            else RunRow(
                row["endpoint"],
                run["run_id"],
                run["kind"],
                run["status"],
                _parsed(run.get("started_at")),
                _parsed(run.get("finished_at")),
                int(run.get("records") or 0),
                run.get("error"),
            ),
            last_success_at=_parsed(row.get("last_success_at")),
            live=int(row.get("live") or 0),
            deleted=int(row.get("deleted") or 0),
            future_watermark=bool(row.get("future_watermark")),
        )


def warehouse_status(
    warehouse: WarehouseReader,
    now: datetime,
    endpoints: Iterable[Endpoint] = ENDPOINTS,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> list[EndpointStatus]:
    """One status per endpoint, from what the warehouse holds (a warehouse never synced
    holds nothing: every endpoint reads as never synced)."""
    endpoints = list(endpoints)
    facts = warehouse.status_facts(endpoints)
    last_runs: dict[str, RunRow] = {}
    last_success: dict[str, datetime | None] = {}
    last_refresh: dict[str, datetime | None] = {}
    for row in facts.runs:  # oldest first: the last one stays
        last_runs[row.endpoint] = row
        if row.status == RunStatus.SUCCESS and row.kind not in NOT_A_SYNC:
            last_success[row.endpoint] = row.finished_at or row.started_at
            if row.kind == RunKind.FULL_REFRESH:
                last_refresh[row.endpoint] = row.started_at
    statuses = []
    for ep in endpoints:
        live, deleted = facts.rows.get(ep.name, (0, 0))
        watermark = facts.watermarks.get(ep.name)
        as_of = watermark if ep.incremental else (last_refresh.get(ep.name) or watermark)
        statuses.append(
            EndpointStatus(
                endpoint=ep.name,
                incremental=ep.incremental,
                watermark=watermark,
                fresh_as_of=as_of,
                lag=None if as_of is None else now - as_of,
                last_run=last_runs.get(ep.name),
                last_success_at=last_success.get(ep.name),
                live=live,
                deleted=deleted,
                future_watermark=in_future(watermark, now, tolerance),
            )
        )
    return statuses


def shown(statuses: Sequence[EndpointStatus], names: set[str] | None) -> list[EndpointStatus]:
    """The endpoints named, or by default the guide's default set and any other ever synced."""
    if names is not None:
        return [s for s in statuses if s.endpoint in names]
    defaults = {ep.name for ep in ENDPOINTS if ep.default}
    return [
        s
        for s in statuses
        if s.endpoint in defaults or s.last_run or s.watermark or s.live or s.deleted
    ]


def stale(statuses: Sequence[EndpointStatus], max_lag: timedelta) -> list[str]:
    """Endpoints whose lag is above `max_lag`; one never synced, or whose watermark lies in the
    future, always is."""
    return [s.endpoint for s in statuses if s.lag is None or s.lag > max_lag or s.future_watermark]


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.IGNORECASE)
_UNITS = {
    "s": "seconds", "sec": "seconds", "secs": "seconds", "second": "seconds", "seconds": "seconds",
    "m": "minutes", "min": "minutes", "mins": "minutes", "minute": "minutes", "minutes": "minutes",
    "h": "hours", "hr": "hours", "hrs": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "week": "weeks", "weeks": "weeks",
}  # fmt: skip


def parse_duration(text: str) -> timedelta:
    """`26h`, `90m`, `2d`, `3600s`, `1w`, or a sum such as `1d12h`; a bare number is an error."""
    value = text.strip()
    parts = _DURATION.findall(value) if value else []
    if not parts or "".join(_DURATION.sub("", value).split()):
        raise ValueError(f"bad duration {text!r}: use a number and a unit, e.g. 26h, 90m, 2d")
    total = timedelta()
    for number, unit in parts:
        name = _UNITS.get(unit.lower())
        if name is None:
            raise ValueError(f"bad duration {text!r}: unknown unit {unit!r} (use s, m, h, d or w)")
        total += timedelta(**{name: float(number)})
    return total


def _parsed(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
