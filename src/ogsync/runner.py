"""Runs one operation (sync, backfill, reconcile, apply webhooks, check, status) for one
merchant or for each merchant of the settings file, and sums the outcome up in an exit code.

The CLI, the scheduler and the Airflow DAGs are thin layers over this module: each resolves
its merchants here, runs its operation here, and gets its exit code from `exit_code`, the one
place an error becomes a code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ogsync.client import ApiError, AuthError, RequestStats
from ogsync.config import ConfigError, Settings
from ogsync.destinations import AlreadyRunning, DestinationError, open_destination, open_reader
from ogsync.destinations.base import AccessReport, ApplyResult, RunLog
from ogsync.destinations.registry import check_access
from ogsync.endpoints import Endpoint
from ogsync.exit_codes import EXIT_AUTH, EXIT_CONFIG, EXIT_ENDPOINT_FAILED, EXIT_OK
from ogsync.merchants import Merchant, merchants, one_merchant
from ogsync.options import SyncOptions
from ogsync.outcome import EndpointOutcome, Listener, SyncResult
from ogsync.status import EndpointStatus, warehouse_status
from ogsync.sync import api_client, run_sync
from ogsync.vocabulary import RunKind, RunStatus

__all__ = ["Merchant", "merchants", "one_merchant"]  # resolved here for every front end

log = logging.getLogger("ogsync.runner")


def exit_code(exc: BaseException) -> int:
    """The exit code of an operation that failed with `exc` (docs/design.md)."""
    if isinstance(exc, AlreadyRunning):
        return EXIT_ENDPOINT_FAILED  # not the user's mistake: try again later
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, ApiError):
        return EXIT_ENDPOINT_FAILED
    if isinstance(exc, ConfigError | DestinationError | ValueError):
        return EXIT_CONFIG
    raise exc  # a bug: its traceback is worth more than an exit code


class Reporter:
    """What a front end shows of the runner's work; the default shows it only in the log."""

    def merchant(self, merchant: Merchant) -> None:
        log.info("merchant %s (schema %s)", merchant.name, merchant.settings.schema)

    def error(self, message: str) -> None:
        log.error("%s", message)

    def listener(self) -> Listener:
        from ogsync.output import LogListener

        return LogListener()

    def synced(self, result: SyncResult) -> None:
        """A run is over (its endpoints have each been reported already)."""


def each_merchant(
    chosen: Sequence[Merchant], operation: Callable[[Merchant], int], reporter: Reporter
) -> int:
    """Run `operation` for each merchant in turn; one failing does not keep the others from
    running. The worst exit code wins."""
    worst = EXIT_OK
    for merchant in chosen:
        if merchant.name is not None:
            reporter.merchant(merchant)
        try:
            code = operation(merchant)
        except Exception as exc:
            code = exit_code(exc)
            reporter.error(str(exc))
        worst = max(worst, code)
    return worst


# -- sync, backfill, reconcile --------------------------------------------------------------


@dataclass
class SyncOutcome:
    merchant: Merchant
    code: int
    result: SyncResult | None  # None: another run holds the warehouse and reports for itself
    error: str | None = None


def sync_one(
    merchant: Merchant,
    options: SyncOptions,
    reporter: Reporter,
    stop: threading.Event | None = None,
) -> SyncOutcome:
    """One merchant's sync, backfill or reconcile. A run that fails as a whole counts each
    chosen endpoint failed."""
    try:
        result = run_sync(merchant.settings, options, reporter.listener(), stop)
    except AlreadyRunning as exc:
        reporter.error(str(exc))
        return SyncOutcome(merchant, exit_code(exc), None, str(exc))
    except (ApiError, ConfigError, DestinationError) as exc:
        reporter.error(str(exc))
        return SyncOutcome(merchant, exit_code(exc), _failed_run(options, exc), str(exc))
    reporter.synced(result)
    return SyncOutcome(merchant, result.exit_code, result)


def sync_merchants(
    chosen: Sequence[Merchant],
    options_for: Callable[[Settings], SyncOptions],
    reporter: Reporter,
    *,
    stop: threading.Event | None = None,
    metrics_file: Path | None = None,
) -> int:
    """Sync each merchant in turn, each into its own schema; with `metrics_file`, write all
    their figures there at the end. Every merchant's options are checked before any runs."""
    try:
        planned = [(m, options_for(m.settings)) for m in chosen]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    outcomes = []
    for merchant, options in planned:
        if merchant.name is not None:
            reporter.merchant(merchant)
        outcomes.append(sync_one(merchant, options, reporter, stop))
    if metrics_file is not None:
        _write_metrics(metrics_file, outcomes, reporter)
    return max((o.code for o in outcomes), default=EXIT_OK)


def _failed_run(options: SyncOptions, exc: Exception) -> SyncResult:
    now = datetime.now(UTC)
    runs = [
        RunLog("", ep.name, RunKind.SYNC, now, status=RunStatus.FAILED, error=str(exc),
               finished_at=now)
        for ep in options.endpoints
    ]  # fmt: skip
    return SyncResult("", now, [EndpointOutcome(r.endpoint, "", r, ()) for r in runs])


def _write_metrics(path: Path, outcomes: Sequence[SyncOutcome], reporter: Reporter) -> None:
    """The metrics file; failing to write it is one line, not the exit code."""
    from ogsync.metrics_file import MerchantRun, write_metrics_file

    ran = []
    for o in outcomes:
        if o.result is None:
            continue
        failed = any(not out.ok for out in o.result.outcomes)
        last = last_successes(o.merchant.settings) if failed else None
        ran.append(MerchantRun(o.merchant.label, o.result, last))
    if not ran:
        return
    try:
        write_metrics_file(path, ran, datetime.now(UTC))
    except OSError as exc:
        reporter.error(f"cannot write metrics file {path}: {exc}")


def last_successes(settings: Settings) -> dict[str, datetime | None]:
    """Each endpoint's last successful sync, from the warehouse's run log (best effort)."""
    try:
        warehouse = open_reader(settings.destination, settings.schema)
    except Exception:
        return {}
    try:
        return {s.endpoint: s.last_success_at for s in warehouse_status(warehouse, _now())}
    except Exception:
        return {}
    finally:
        warehouse.close()


# -- webhooks, check, status -----------------------------------------------------------------


class InboxUnavailable(ConfigError):
    """The inbox could not be opened; the message is one line, for the user."""


def apply_webhooks(merchant: Merchant, inbox_path: Path | None = None) -> ApplyResult:
    """Hold the whole warehouse and apply what its inbox holds.

    The inbox is the file given, else the one a sync would drain; with neither, there is
    nothing to apply and the warehouse's tables are only made ready.
    """
    from ogsync.endpoints import ENDPOINTS
    from ogsync.webhooks.apply import apply_inbox, inbox_for_sync
    from ogsync.webhooks.inbox import open_inbox

    settings = merchant.settings
    warehouse = open_destination(
        settings.destination, settings.schema, memory_limit=settings.duckdb_memory_limit
    )
    try:
        try:
            inbox = open_inbox(settings, inbox_path) if inbox_path else inbox_for_sync(settings)
        except Exception as exc:
            raise InboxUnavailable(f"cannot open the webhook inbox: {exc}") from None
        governance = settings.governance
        warehouse.prepare(governance.endpoints(ENDPOINTS))
        if inbox is None:
            return ApplyResult()
        try:
            return apply_inbox(inbox, warehouse, governance)
        finally:
            inbox.close()
    finally:
        warehouse.close()


def rewrite(merchant: Merchant) -> list[str]:
    """Bring what the merchant's warehouse holds under the settings' field rules (what is
    left out or hashed); a line per endpoint rewritten."""
    settings = merchant.settings
    governance = settings.governance
    warehouse = open_destination(
        settings.destination, settings.schema, memory_limit=settings.duckdb_memory_limit
    )
    try:
        return warehouse.rewrite(governance)
    finally:
        warehouse.close()


@dataclass(frozen=True)
class CheckResult:
    base_url: str
    api_clock: datetime | None  # None: the API sent no readable Date
    warehouse: AccessReport | None = None  # None: its kind has nothing to check (DuckDB)

    @property
    def exit_code(self) -> int:
        """A role that may not do what a sync needs is a configuration to fix."""
        return EXIT_CONFIG if self.warehouse is not None and not self.warehouse.ok else EXIT_OK


def check(merchant: Merchant) -> CheckResult:
    """One /customers/?page_size=1 call with the merchant's key (raises AuthError if
    refused); then, where the warehouse's kind can tell, what its role may do there."""
    settings = merchant.settings
    with api_client(settings, settings.require_api_key(), max_attempts=3) as client:
        clock = client.server_time(RequestStats())
    access = check_access(settings.destination, settings.schema)
    return CheckResult(settings.base_url, clock, access)


@dataclass
class StatusReport:
    merchant: Merchant
    statuses: list[EndpointStatus]
    # Set when a sync holds a warehouse readers can't open: its snapshot was read instead.
    snapshot_pid: int | None = None
    snapshot_age: timedelta | None = None
    behind: set[str] = field(default_factory=set)  # endpoints staler than asked


def status(merchant: Merchant, endpoints: Sequence[Endpoint] | None = None) -> StatusReport:
    """What the merchant's warehouse says of each endpoint (`ogsync.status`), read without
    holding it. While a sync holds a DuckDB file, the sync's own snapshot is read instead."""
    from ogsync.endpoints import ENDPOINTS
    from ogsync.status import shown
    from ogsync.status_snapshot import read_snapshot

    settings = merchant.settings
    now = _now()
    report = StatusReport(merchant, [])
    try:
        warehouse = open_reader(settings.destination, settings.schema)
    except AlreadyRunning as held:
        snapshot = read_snapshot(held.snapshot, now) if held.snapshot else None
        if snapshot is None:
            raise
        statuses = snapshot.statuses
        report.snapshot_pid = snapshot.pid
        report.snapshot_age = max(now - snapshot.taken_at, timedelta(0))
    else:
        tolerance = timedelta(minutes=settings.clock_tolerance_minutes)
        try:
            statuses = warehouse_status(warehouse, now, ENDPOINTS, tolerance)
        except Exception as exc:
            raise DestinationError(f"cannot read the warehouse: {exc}".splitlines()[0]) from None
        finally:
            warehouse.close()
    chosen = {ep.name for ep in endpoints} if endpoints is not None else None
    report.statuses = shown(statuses, chosen)
    return report


def _now() -> datetime:
    return datetime.now(UTC)
