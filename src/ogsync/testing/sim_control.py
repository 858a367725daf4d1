"""One typed client for the simulator's `/__sim__/` controls, for tests, benchmarks and the soak.

The controls answer without an API key and are never faulted or rate limited, so this client
sends no key and needs no retries: any answer but a 2xx is a broken test setup and raises
`SimControlError` at once, instead of surfacing later as a `KeyError` on an error body.
"""

from __future__ import annotations

import time
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

import httpx

from ogsync.endpoints import BY_NAME, Endpoint

PREFIX = "/__sim__"


def ready_url(base_url: str) -> str:
    """The control to poll while a simulator starts: it answers as soon as the server does."""
    return f"{base_url}{PREFIX}/clock"


class SimControlError(RuntimeError):
    """A control answered with a status other than 2xx."""

    def __init__(self, method: str, path: str, status_code: int, detail: str) -> None:
        super().__init__(f"{method} {PREFIX}{path} answered {status_code}: {detail}")
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail


class DeliveriesPending(TimeoutError):
    """Webhooks were still queued when the wait ran out; `state` is the last one seen."""

    def __init__(self, state: WebhookState) -> None:
        super().__init__(
            f"the simulator did not finish delivering its webhooks: {state['pending']} pending, "
            f"{state['delivered']} delivered and {state['gave_up']} given up of {state['queued']}"
        )
        self.state = state


class ClockState(TypedDict):
    now: str  # ISO time in UTC
    local: str  # "YYYY-MM-DD HH:MM:SS" in the API's time zone, as the API writes its times
    timezone: str
    frozen: bool


class AdvanceResult(TypedDict):
    clock: str  # the simulated clock after the move, ISO
    changes: dict[str, int]  # kind of change -> how many were made
    events: dict[str, int]  # webhook event type -> how many were queued


class SimStats(TypedDict):
    requests: dict[str, int]  # by endpoint
    requests_total: int
    statuses: dict[str, int]  # by status code, as text
    faults: dict[str, int]  # injected faults by kind
    max_concurrent: dict[str, int]  # by endpoint
    max_concurrent_per_endpoint: int
    max_concurrent_total: int


class FaultSettings(TypedDict, total=False):
    """The simulator's `Faults`: all of them as its controls show them, or any subset to
    change at run time."""

    latency_ms: float
    latency_jitter: float
    rate_429: float
    rate_5xx: float
    rate_423: float
    rate_drop: float
    rate_malformed: float
    retry_after: int | None
    limit_per_minute: int
    only_endpoints: list[str] | None


class WebhookState(TypedDict):
    queued: int
    attempts: int
    delivered: int  # deliveries answered 2xx, duplicates included
    failed_attempts: int
    gave_up: int
    by_type: dict[str, int]
    pending: int  # not yet delivered or given up, the one being sent included
    delivered_ids: list[str]  # event ids of the deliveries answered 2xx


def deliveries_settled(state: WebhookState) -> bool:
    """Every queued webhook was delivered or given up, the one in flight included."""
    return state["delivered"] + state["gave_up"] >= state["queued"] and not state["pending"]


class SimControl:
    """The `/__sim__/` controls of the simulator at `base_url`, one method each.

    Use it as a context manager, or call `close()`: it keeps one connection pool.
    """

    def __init__(self, base_url: str, timeout: float = 120) -> None:
        # Generous: a truth listing of a large simulator, or an advance making thousands of
        # changes, takes tens of seconds on a loaded two-core machine.
        self.base_url = base_url
        self._http = httpx.Client(base_url=f"{base_url}{PREFIX}", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        if not response.is_success:
            try:
                detail = str(response.json()["detail"])
            except (ValueError, KeyError, TypeError):
                detail = response.text[:500]
            raise SimControlError(method, path, response.status_code, detail)
        return response.json()

    # -- the clock ---------------------------------------------------------------------------

    def clock(self) -> ClockState:
        return self._call("GET", "/clock")

    def set_clock(self, when: datetime | None = None, *, frozen: bool | None = None) -> ClockState:
        """Jump the simulated clock to `when` and/or freeze or thaw it, in one request."""
        body: dict[str, Any] = {}
        if when is not None:
            if when.tzinfo is None:
                raise ValueError("the simulated clock takes an aware datetime")
            body["set"] = when.isoformat()
        if frozen is not None:
            body["frozen"] = frozen
        return self._call("POST", "/clock", body)

    def freeze(self) -> ClockState:
        """Time moves only on `advance()` from now on; the clock itself does not move."""
        return self.set_clock(frozen=True)

    def thaw(self) -> ClockState:
        """Time runs with real time again, from where it stood."""
        return self.set_clock(frozen=False)

    def advance(self, minutes: float = 0, changes: int = 0) -> AdvanceResult:
        """Move the clock on by `minutes` and make `changes` changes within that span."""
        return self._call("POST", "/advance", {"minutes": minutes, "changes": changes})

    # -- the data ----------------------------------------------------------------------------

    def truth(self, endpoint: str | Endpoint) -> list[dict[str, Any]]:
        """Every live record of an endpoint, as the API would list it."""
        return self._call("GET", f"/truth/{_name(endpoint)}")

    def truth_by_key(self, endpoint: str | Endpoint) -> dict[str, dict[str, Any]]:
        """The live records by their key (`merchant_user_id` for customers, and so on) as text,
        the way the warehouse keys its rows."""
        ep = BY_NAME[endpoint] if isinstance(endpoint, str) else endpoint
        return {str(r[ep.key]): r for r in self.truth(ep)}

    def versions(self, endpoint: str | Endpoint) -> list[dict[str, Any]]:
        """Every version each record has had since generation, oldest first per record:
        `{"id", "record", "current"}`."""
        return self._call("GET", f"/versions/{_name(endpoint)}")

    def deleted(self, endpoint: str | Endpoint) -> list[str]:
        """The keys of the records hard-deleted from an endpoint, oldest deletion first."""
        return self._call("GET", f"/deleted/{_name(endpoint)}")

    # -- requests served and faults ----------------------------------------------------------

    def stats(self) -> SimStats:
        return self._call("GET", "/stats")

    def reset_stats(self) -> SimStats:
        """Start counting afresh; returns the emptied counts."""
        return self._call("POST", "/stats/reset")

    def faults(self) -> FaultSettings:
        return self._call("GET", "/faults")

    def set_faults(self, **changes: Unpack[FaultSettings]) -> FaultSettings:
        """Change the named fault settings, leave the others; returns them all."""
        return self._call("POST", "/faults", dict(changes))

    # -- webhooks ----------------------------------------------------------------------------

    def webhooks(self) -> WebhookState:
        return self._call("GET", "/webhooks")

    def wait_for_deliveries(self, timeout: float = 60, interval: float = 0.05) -> WebhookState:
        """Until every queued webhook was delivered or given up (the one in flight included);
        raises `DeliveriesPending` if that takes longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.webhooks()
            if deliveries_settled(state):
                return state
            if time.monotonic() >= deadline:
                raise DeliveriesPending(state)
            time.sleep(interval)


def _name(endpoint: str | Endpoint) -> str:
    return endpoint if isinstance(endpoint, str) else endpoint.name
