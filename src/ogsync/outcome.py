"""What a run did, endpoint by endpoint, and the exit code that sums it up; and what a user
interface hears while it runs (`Listener`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ogsync.destinations.base import ApplyResult, RunLog
from ogsync.exit_codes import EXIT_AUTH, EXIT_ENDPOINT_FAILED, EXIT_OK
from ogsync.plan import EndpointPlan, Window
from ogsync.reconcile import ReconcileResult


@dataclass
class EndpointOutcome:
    endpoint: str
    mode: str
    run: RunLog
    windows: tuple[Window, ...]
    unknown_fields: set[str] = field(default_factory=set)
    unparsed: dict[str, int] = field(default_factory=dict)
    auth_failure: bool = False

    @property
    def ok(self) -> bool:
        return self.run.ok


@dataclass
class SyncResult:
    run_id: str
    run_started_at: datetime
    outcomes: list[EndpointOutcome]
    reconciled: ReconcileResult | None = None
    workers_at_once: int = 0  # the most endpoints that synced at the same time
    webhooks: ApplyResult | None = None  # the inbox drained before fetching, if there was one

    @property
    def exit_code(self) -> int:
        if any(o.auth_failure for o in self.outcomes):
            return EXIT_AUTH
        reconciled = self.reconciled.runs if self.reconciled else []
        ok = all(o.ok for o in self.outcomes) and all(r.ok for r in reconciled)
        return EXIT_OK if ok else EXIT_ENDPOINT_FAILED


class Listener:
    """What a user interface hears from a run; the default hears nothing."""

    def planned(
        self, plans: Sequence[EndpointPlan], run_started_at: datetime, clock: str = "api"
    ) -> None: ...

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None: ...

    def window_started(self, endpoint: str, window: str) -> None:
        """A backfill window (as `plan.describe_window` names it) begins."""

    def window_done(self, endpoint: str, window: str, fetched: int) -> None:
        """A backfill window is committed whole, with the records it fetched."""

    def finished(self, outcome: EndpointOutcome) -> None: ...
