"""How a run shows itself: progress bars on a terminal, log lines otherwise, JSON for machines."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ogsync.destinations.base import RunLog
from ogsync.outcome import EndpointOutcome, Listener, SyncResult
from ogsync.plan import EndpointPlan
from ogsync.vocabulary import RunKind

log = logging.getLogger("ogsync")

# LogRecord attributes that are not an event's own fields.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(fmt: str, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _window(run: RunLog) -> str:
    start = run.window_start.isoformat() if run.window_start else "beginning"
    end = run.window_end.isoformat() if run.window_end else "now"
    return f"{start} .. {end}"


class LogListener(Listener):
    """A log line per endpoint per batch, and one when each endpoint ends."""

    def __init__(self) -> None:
        self.run_id = ""

    def planned(
        self, plans: Sequence[EndpointPlan], run_started_at: datetime, clock: str = "api"
    ) -> None:
        log.info(
            "run starts at %s (%s clock): %s",
            run_started_at.isoformat(),
            "API" if clock == "api" else "local",
            ", ".join(f"{p.endpoint.name} {p.mode.value}" for p in plans),
            extra={
                "event": "planned",
                "run_started_at": run_started_at.isoformat(),
                "clock": clock,
            },
        )

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None:
        self.run_id = run.run_id
        log.info(
            "%s: %s records fetched, %d pages, %d requests, %d retries",
            endpoint,
            f"{fetched:,}",
            run.pages,
            run.requests,
            run.retries,
            extra={
                "event": "batch",
                "run_id": run.run_id,
                "endpoint": endpoint,
                "fetched": fetched,
                "pages": run.pages,
                "requests": run.requests,
                "retries": run.retries,
            },
        )

    def finished(self, outcome: EndpointOutcome) -> None:
        run = outcome.run
        fields = {
            "event": "endpoint_finished",
            "run_id": run.run_id,
            "endpoint": run.endpoint,
            "status": run.status,
            "records": run.records,
            "pages": run.pages,
            "requests": run.requests,
            "retries": run.retries,
            "rate_limit_waits": run.rate_limit_waits,
            "warnings": run.warnings,
            "soft_deletes": run.soft_deletes,
            "window": _window(run),
            "error": run.error,
        }
        if outcome.unknown_fields:
            log.warning(
                "%s: fields not in the endpoint table, kept in _raw: %s",
                run.endpoint,
                ", ".join(sorted(outcome.unknown_fields)),
                extra={"event": "unknown_fields", "run_id": run.run_id, "endpoint": run.endpoint},
            )
        if outcome.unparsed:
            log.warning(
                "%s: values that did not parse, stored as NULL (kept in _raw): %s",
                run.endpoint,
                ", ".join(f"{k} x{v}" for k, v in sorted(outcome.unparsed.items())),
                extra={"event": "unparsed", "run_id": run.run_id, "endpoint": run.endpoint},
            )
        level = logging.INFO if outcome.ok else logging.ERROR
        log.log(
            level,
            "%s: %s, %s records written, %d pages, %d requests, %d retries, window %s%s",
            run.endpoint,
            run.status,
            f"{run.records:,}",
            run.pages,
            run.requests,
            run.retries,
            _window(run),
            f": {run.error}" if run.error else "",
            extra=fields,
        )


class ProgressListener(LogListener):
    """Progress bars per endpoint on a terminal; the end-of-endpoint lines still go to the log."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[records]:>10} records  {task.fields[pages]:>6} pages"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def planned(
        self, plans: Sequence[EndpointPlan], run_started_at: datetime, clock: str = "api"
    ) -> None:
        super().planned(plans, run_started_at, clock)
        self.progress.start()
        for plan in plans:
            name = plan.endpoint.name
            self.tasks[name] = self.progress.add_task(name, total=None, records="0", pages=0)

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None:
        self.progress.update(self.tasks[endpoint], records=f"{fetched:,}", pages=run.pages)

    def finished(self, outcome: EndpointOutcome) -> None:
        task = self.tasks[outcome.endpoint]
        self.progress.update(
            task, total=1, completed=1, pages=outcome.run.pages, records=f"{outcome.run.records:,}"
        )
        super().finished(outcome)

    def close(self) -> None:
        self.progress.stop()


def summary_table(result: SyncResult) -> Table:
    table = Table(title=f"Run {result.run_id}")
    for column in (
        "endpoint",
        "mode",
        "status",
        "records",
        "pages",
        "requests",
        "retries",
        "soft deletes",
        "warnings",
    ):
        table.add_column(
            column, justify="left" if column in ("endpoint", "mode", "status") else "right"
        )
    runs = [(o.mode, o.run) for o in sorted(result.outcomes, key=lambda o: o.endpoint)]
    runs += [
        (RunKind.RECONCILE, run) for run in (result.reconciled.runs if result.reconciled else [])
    ]
    for mode, run in runs:
        status = "[green]ok[/]" if run.ok else f"[red]{run.status}[/]"
        table.add_row(
            run.endpoint,
            mode,
            status,
            f"{run.records:,}",
            str(run.pages),
            str(run.requests),
            str(run.retries),
            str(run.soft_deletes),
            str(run.warnings),
        )
    return table
