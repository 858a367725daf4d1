"""How many endpoints sync at once: as many as hide the API's latency, up to the maximum.

Workers exist to overlap waiting on the API. When pages come back about as fast as a worker
types and stores them, more workers only share the same cores, and each holds its own batches
in memory: on two cores against the simulator, five workers synced a million records at
23,500 a second and one at 28,500, with 50 MB less. So a run starts one endpoint, and one
more each time workers wait on the API for several pages in a row. Endpoints start in plan
order (largest first), and a slot once opened stays open for the rest of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("ogsync.concurrency")
T = TypeVar("T")


@dataclass(frozen=True)
class Widening:
    # This many pages in a row, each waited for at least `slow_page` seconds, open one more
    # slot. The threshold sits between a local API with no latency (a page is fetched while
    # the last is typed, so a worker hardly waits) and one across a network (tens of
    # milliseconds or more); bench/sync.py --latency-ms measures both.
    slow_page: float = 0.010
    in_a_row: int = 3


class WorkerSlots:
    """Slots for endpoint workers, granted in plan order, widened while the API is the wait."""

    def __init__(self, maximum: int, widening: Widening | None = None) -> None:
        if maximum < 1:
            raise ValueError("at least one worker is needed")
        self.maximum = maximum
        self.widening = widening or Widening()
        self._open = 1
        self._running = 0
        self._next_turn = 0
        self._slow_pages = 0
        self.peak = 0  # the most endpoints that ran at once
        self._changed = threading.Condition()

    @property
    def open(self) -> int:
        with self._changed:
            return self._open

    def acquire(self, turn: int) -> None:
        """Wait for a free slot and for every earlier turn to have started."""
        with self._changed:
            self._changed.wait_for(lambda: turn == self._next_turn and self._running < self._open)
            self._next_turn += 1
            self._running += 1
            self.peak = max(self.peak, self._running)
            self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def page_waited(self, seconds: float) -> None:
        """How long a worker waited for its latest page (the time it sat idle)."""
        with self._changed:
            if self._open >= self.maximum:
                return
            if seconds < self.widening.slow_page:
                self._slow_pages = 0
                return
            self._slow_pages += 1
            if self._slow_pages < self.widening.in_a_row:
                return
            self._slow_pages = 0
            self._open += 1
            opened = self._open
            self._changed.notify_all()
        log.info("the API kept workers waiting %d pages in a row: up to %d endpoints at once",
                 self.widening.in_a_row, opened)  # fmt: skip


def timed(pages: Iterable[T], slots: WorkerSlots) -> Iterator[T]:
    """The pages, each one's wait told to `slots`."""
    asked = time.monotonic()
    for page in pages:
        slots.page_waited(time.monotonic() - asked)
        yield page
        asked = time.monotonic()
