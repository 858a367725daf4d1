"""How a run shows itself: progress bars on a terminal, log lines otherwise, JSON for machines."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ogsync.destinations.base import RunLog
from ogsync.outcome import EndpointOutcome, Listener, SyncResult
from ogsync.plan import EndpointPlan, Mode
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


# The terminal's stderr, shared by the progress bars and the log: Rich draws a log line above
# bars it is showing only when both go through one Console.
STDERR = Console(stderr=True)


def configure_logging(fmt: str, verbose: bool = False, console: Console = STDERR) -> None:
    """Log lines to stderr: JSON objects, or text; text on a terminal goes through `console`,
    so that it never breaks the progress bars drawn there."""
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif console.is_terminal:
        handler = RichHandler(
            console=console,
            show_path=False,
            markup=False,  # a message is text: "[ogsync]" stays as written
            log_time_format="[%X]",
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _window(run: RunLog, outcome: EndpointOutcome | None = None) -> str:
    if outcome is not None and outcome.mode == Mode.BACKFILL and not outcome.windows:
        return "none left (the backfill was complete)"
    start = run.window_start.isoformat() if run.window_start else "beginning"
    end = run.window_end.isoformat() if run.window_end else "now"
    return f"{start} .. {end}"


class LogListener(Listener):
    """A log line per endpoint per batch, and one when each endpoint ends; a backfill's lines
    name their window, and one more says when a window is done."""

    def __init__(self) -> None:
        self.run_id = ""
        self.windows: dict[str, str] = {}  # the backfill window each endpoint is in

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
        _backfill_progress(plans)

    def window_started(self, endpoint: str, window: str) -> None:
        self.windows[endpoint] = window

    def window_done(self, endpoint: str, window: str, fetched: int) -> None:
        self.windows.pop(endpoint, None)
        log.info(
            "%s: window %s done, %s records",
            endpoint,
            window,
            f"{fetched:,}",
            extra={"event": "window_done", "endpoint": endpoint, "window": window,
                   "fetched": fetched},
        )  # fmt: skip

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None:
        self.run_id = run.run_id
        window = self.windows.get(endpoint)
        log.info(
            "%s: %s records fetched, %d pages, %d requests, %d retries",
            f"{endpoint} (window {window})" if window else endpoint,
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
                **({"window": window} if window else {}),
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
            "window": _window(run, outcome),
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
            _window(run, outcome),
            f": {run.error}" if run.error else "",
            extra=fields,
        )


def _backfill_progress(plans: Sequence[EndpointPlan]) -> None:
    """Where a backfill stands as it starts: complete already (nothing to fetch), resumed,
    or new."""
    backfills = [p for p in plans if p.mode == Mode.BACKFILL]
    complete = [p for p in backfills if p.complete]
    if backfills and len(complete) == len(backfills):
        log.info(
            "this backfill is already complete: every window of %s is done (%s); nothing to fetch",
            ", ".join(p.endpoint.name for p in complete),
            _windows(complete[0].windows_done),
            extra={"event": "backfill_complete"},
        )
        return
    for plan in backfills:
        name = plan.endpoint.name
        if plan.complete:
            log.info("%s: backfill already complete (%s done); nothing to fetch",
                     name, _windows(plan.windows_done),
                     extra={"event": "backfill_complete", "endpoint": name})  # fmt: skip
        elif plan.windows_done:
            log.info("%s: backfill resumes: %s done, %s to do", name,
                     _windows(plan.windows_done), _windows(len(plan.windows)),
                     extra={"event": "backfill_resumed", "endpoint": name})  # fmt: skip


def _windows(count: int) -> str:
    return f"{count} window{'s' if count != 1 else ''}"


class ProgressListener(LogListener):
    """Progress bars per endpoint on a terminal; the end-of-endpoint lines still go to the log."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[records]:>10} records  {task.fields[pages]:>6} pages"),
            TextColumn("{task.fields[window]}"),
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
            self.tasks[name] = self.progress.add_task(
                name, total=None, records="0", pages=0, window=""
            )

    def window_started(self, endpoint: str, window: str) -> None:
        super().window_started(endpoint, window)
        self.progress.update(self.tasks[endpoint], window=window)

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None:
        self.progress.update(self.tasks[endpoint], records=f"{fetched:,}", pages=run.pages)

    def finished(self, outcome: EndpointOutcome) -> None:
        task = self.tasks[outcome.endpoint]
        self.progress.update(
            task,
            total=1,
            completed=1,
            pages=outcome.run.pages,
            records=f"{outcome.run.records:,}",
            window="",
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
