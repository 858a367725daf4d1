"""The built-in scheduler: run a job on a cron expression in a named zone, never overlapping.

Ordergroove suggests a daily run between 12:00 and 20:00 Chicago time; the default is 13:00.
A tick that comes while the previous run is still going is skipped (and logged), a run that
fails is logged with its exit status and the scheduler keeps going, and a stop finishes the
run in progress at its next batch boundary before the scheduler returns.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

log = logging.getLogger("ogsync.schedule")

DEFAULT_CRON = "0 13 * * *"
DEFAULT_ZONE = "America/Chicago"

# A job gets the stop event (it should finish its batch in flight and return) and returns
# its exit status.
Job = Callable[[threading.Event], int]


# A cron expression's fields in order (croniter reads a sixth as seconds), each with the
# numbers it takes.
CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
    ("second", 0, 59),
)


def validate_cron(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise ValueError(f"bad cron expression {expression!r}: {_cron_problem(expression)}")
    return expression


def _cron_problem(expression: str) -> str:
    """Which part of an expression croniter refuses, in words a person can act on."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"it has {len(fields)} fields; use five, minute hour day-of-month month "
            "day-of-week, such as '0 13 * * *' (a sixth gives seconds)"
        )
    for number, value in enumerate(fields):
        # The field alone, every other one a `*`: the first croniter refuses is the culprit.
        alone = ["*"] * len(fields)
        alone[number] = value
        if croniter.is_valid(" ".join(alone)):
            continue
        name, low, high = CRON_FIELDS[number]
        outside = [n for n in map(int, re.findall(r"\d+", value)) if not low <= n <= high]
        span = f"{low}-{high}"
        if outside:
            return f"the {name} field {value!r} is out of range ({outside[0]} is not in {span})"
        return f"the {name} field {value!r} is not understood (it takes {span}, *, lists, ranges)"
    return "croniter refuses it; use five fields such as '0 13 * * *'"


def next_run(expression: str, tz: ZoneInfo, after: datetime) -> datetime:
    """The first firing strictly after `after`, as an aware time in `tz`. Pure."""
    return croniter(expression, after.astimezone(tz)).get_next(datetime)


@dataclass
class Tally:
    runs: int = 0
    skipped: int = 0
    failed: int = 0


class Scheduler:
    def __init__(
        self,
        expression: str,
        tz: ZoneInfo,
        job: Job,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.expression = validate_cron(expression)
        self.tz = tz
        self.job = job
        self.clock = clock
        self.tally = Tally()
        self._running: threading.Thread | None = None

    def _run_once(self, stop: threading.Event) -> None:
        try:
            status = self.job(stop)
        except Exception:
            log.exception("scheduled run failed")
            status = 1
        if status:
            self.tally.failed += 1
        log.info(
            "run finished with exit status %d; next run at %s",
            status,
            next_run(self.expression, self.tz, self.clock()).isoformat(),
            extra={"event": "scheduled_run_finished", "status": status},
        )

    def run(self, stop: threading.Event, max_runs: int | None = None) -> Tally:
        """Fire on schedule until `stop` is set (or `max_runs` runs have started)."""
        due = next_run(self.expression, self.tz, self.clock())
        log.info("scheduler started (%s, %s); next run at %s", self.expression, self.tz,
                 due.isoformat())  # fmt: skip
        while not stop.is_set():
            wait = (due - self.clock()).total_seconds()
            if wait > 0 and stop.wait(wait):
                break
            if self._running is not None and self._running.is_alive():
                self.tally.skipped += 1
                log.warning("tick at %s skipped: the previous run is still going", due.isoformat(),
                            extra={"event": "tick_skipped"})  # fmt: skip
            else:
                self.tally.runs += 1
                self._running = threading.Thread(
                    target=self._run_once, args=(stop,), name="ogsync-scheduled-run"
                )
                self._running.start()
            # Ticks missed while asleep are not made up: the next one after now counts.
            due = next_run(self.expression, self.tz, max(due, self.clock()))
            if max_runs is not None and self.tally.runs >= max_runs:
                break
        if self._running is not None:
            self._running.join()
        return self.tally
