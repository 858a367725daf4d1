"""`ogsync status` for people (a table) and for machines (JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.table import Table

from ogsync.status import EndpointStatus
from ogsync.vocabulary import RunStatus


def status_table(statuses: Sequence[EndpointStatus], behind: set[str], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("endpoint", no_wrap=True)
    for name in ("watermark", "lag", "last run", "status", "finished"):
        table.add_column(name)
    table.add_column("current", justify="right")  # rows not soft-deleted, as <table>_current
    table.add_column("deleted", justify="right")
    for s in statuses:
        run = s.last_run
        state = "" if run is None else run.status
        colour = {RunStatus.SUCCESS: "green", RunStatus.FAILED: "red"}.get(state, "yellow")
        lag = "never synced" if s.lag is None else age(s.lag)
        if s.future_watermark:
            lag = "watermark in the future: repaired next sync"
        table.add_row(
            s.endpoint,
            _when(s.watermark if s.incremental else s.fresh_as_of),
            f"[red]{lag}[/]" if s.endpoint in behind else lag,
            "" if run is None else run.kind,
            f"[{colour}]{state}[/]" if state else "",
            "" if run is None else _when(run.finished_at),
            f"{s.live:,}",
            f"{s.deleted:,}",
        )
    return table


def status_rows(
    statuses: Sequence[EndpointStatus], behind: set[str] | None, merchant: str | None
) -> list[dict[str, Any]]:
    """The JSON rows: `stale` is None when no limit was asked for; `merchant` is there only
    for a settings file that lists merchants."""
    rows = []
    for s in statuses:
        row = {**s.as_json(), "stale": None if behind is None else s.endpoint in behind}
        if merchant is not None:
            row = {"merchant": merchant, **row}
        rows.append(row)
    return rows


def how_far_behind(s: EndpointStatus) -> str:
    if s.future_watermark:
        return "watermark in the future"
    return "never synced" if s.lag is None else age(s.lag) + " behind"


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M}Z"


def age(lag: timedelta) -> str:
    seconds = int(lag.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m {secs}s" if minutes else f"{sign}{secs}s"
