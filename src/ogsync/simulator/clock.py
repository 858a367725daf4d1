"""The simulator's clock: it runs with real time, from a chosen start, and jumps on `advance`."""

from __future__ import annotations

import time
from datetime import datetime

from ogsync.apitime import from_epoch


class SimClock:
    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._start = time.time() if start is None else start.timestamp()
        self._real_start = time.monotonic()
        self._jumped = 0.0
        self._frozen = frozen

    @property
    def frozen(self) -> bool:
        return self._frozen

    @frozen.setter
    def frozen(self, value: bool) -> None:
        """Stop or restart the clock where it stands: freezing never moves it."""
        now = self.now_float()
        self._frozen = value
        self._start, self._real_start, self._jumped = now, time.monotonic(), 0.0

    def now_float(self) -> float:
        running = 0.0 if self._frozen else time.monotonic() - self._real_start
        return self._start + running + self._jumped

    def now(self) -> int:
        """Unix seconds: records are stamped to the second, as the API renders them."""
        return int(self.now_float())

    def now_datetime(self) -> datetime:
        return from_epoch(self.now_float())

    def advance(self, seconds: float) -> None:
        self._jumped += seconds

    def set(self, instant: datetime) -> None:
        """Jump to an instant (used by tests that need a moment such as a DST change)."""
        self._jumped += instant.timestamp() - self.now_float()
