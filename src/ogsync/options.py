"""What one run is asked to do: which endpoints, which window, how (`SyncOptions`), and a
backfill's windows (`Backfill`). Checked when made: a run that can't make sense never starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ogsync.clock import DEFAULT_TOLERANCE, OnSkew
from ogsync.config import Settings
from ogsync.endpoints import Endpoint
from ogsync.governance import NONE, Governance
from ogsync.plan import DEFAULT_OVERLAP, WindowSize


@dataclass(frozen=True)
class SyncOptions:
    endpoints: Sequence[Endpoint]
    since: datetime | None = None
    until: datetime | None = None
    full_refresh: bool = False
    overlap: timedelta = DEFAULT_OVERLAP
    max_workers: int = 5
    batch_records: int = 5000
    reconcile: bool = False  # after the endpoints, catch deletions whose webhooks were lost
    backfill: Backfill | None = None  # load history in windows instead of syncing
    # False: hold only the chosen endpoints of the warehouse, so that runs of other endpoints
    # can go at the same time (one Airflow task per endpoint). The webhook inbox and
    # reconciling touch other endpoints' rows, so they are left to a run holding it all.
    exclusive: bool = True
    # How far the API's clock may be from the local one, and what a run does past that.
    clock_tolerance: timedelta = DEFAULT_TOLERANCE
    on_clock_skew: OnSkew = OnSkew.FAIL
    max_record_bytes: int | None = None  # a larger record is set aside, not loaded
    # What is kept of each endpoint: history, excluded and hashed fields.
    governance: Governance = NONE

    def __post_init__(self) -> None:
        # The endpoints as the warehouse keeps them, whoever made these options.
        object.__setattr__(self, "endpoints", self.governance.endpoints(self.endpoints))
        if self.reconcile and not self.exclusive:
            raise ValueError("reconcile needs the whole warehouse: run it on its own")
        if not self.endpoints and not self.reconcile:
            raise ValueError("no endpoints to sync")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(
                f"--since {self.since.isoformat()} is after --until {self.until.isoformat()}"
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, endpoints: Sequence[Endpoint], **chosen: Any
    ) -> SyncOptions:
        """Options as the settings give them (at most five workers), plus the run's choices."""
        return cls(
            endpoints=endpoints,
            overlap=settings.overlap,
            max_workers=settings.workers,
            batch_records=settings.batch_records,
            clock_tolerance=timedelta(minutes=settings.clock_tolerance_minutes),
            on_clock_skew=OnSkew(settings.on_clock_skew),
            max_record_bytes=settings.max_record_bytes,
            governance=settings.governance,
            **chosen,
        )


@dataclass(frozen=True)
class Backfill:
    start: datetime
    end: datetime | None = None  # None: up to the present, then hand over to incremental syncs
    size: WindowSize = WindowSize.MONTH
    # The guide's sign that a range is too big: a page this slow splits the rest of its window.
    slow_page_seconds: float = 20.0
    floor: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(
                f"--end {self.end.isoformat()} is before --start {self.start.isoformat()}"
            )
