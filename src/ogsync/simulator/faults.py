"""What goes wrong on the wire, on purpose: latency, refusals, broken bodies, the real limit."""

from __future__ import annotations

import random
import time
from collections import defaultdict, deque
from dataclasses import dataclass, fields

# A fault replaces a normal answer; the ones after "drop" spoil a normal answer's body.
REFUSALS = ("429", "5xx", "423")
SPOILERS = ("drop", "malformed")


@dataclass
class Faults:
    latency_ms: float = 0.0  # how long a list request takes to answer, the API's work included
    latency_jitter: float = 0.25  # latency varies by up to this share either way
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_423: float = 0.0
    rate_drop: float = 0.0
    rate_malformed: float = 0.0
    retry_after: int | None = None  # seconds, sent with injected 429s when set
    limit_per_minute: int = 6000  # the real limit, per client address
    only_endpoints: list[str] | None = None  # random faults hit just these endpoints

    def update(self, changes: dict[str, object]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault setting {name!r}")
            setattr(self, name, value)


class FaultDice:
    """Seeded draws, so a fault run can be repeated."""

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.rng = random.Random(seed ^ 0x5EED)

    def latency_seconds(self) -> float:
        base = self.faults.latency_ms / 1000
        if base <= 0:
            return 0.0
        spread = self.faults.latency_jitter
        return base * (1 + self.rng.uniform(-spread, spread))

    def _roll(self, names: tuple[str, ...]) -> str | None:
        roll = self.rng.random()
        for name in names:
            rate = getattr(self.faults, f"rate_{name}")
            if roll < rate:
                return name
            roll -= rate
        return None

    def _targets(self, endpoint: str) -> bool:
        only = self.faults.only_endpoints
        return only is None or endpoint in only

    def refusal(self, endpoint: str) -> str | None:
        return self._roll(REFUSALS) if self._targets(endpoint) else None

    def spoiler(self, endpoint: str) -> str | None:
        return self._roll(SPOILERS) if self._targets(endpoint) else None

    def server_error(self) -> int:
        return self.rng.choice([500, 502, 503, 504])


class RateLimiter:
    """The API's limit: at most N requests in any 60 seconds from one client address."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        window = self.seen[client]
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.faults.limit_per_minute:
            return False
        window.append(now)
        return True
