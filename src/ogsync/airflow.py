"""Ordergroove syncs as Airflow DAGs: one DAG per merchant, one mapped task per endpoint.

Each DAG first applies the webhook deletions (holding the merchant's whole warehouse), then
syncs each endpoint in its own task, several at once, and optionally reconciles at the end.
Every task calls the library function `ogsync sync` calls; nothing of the sync lives here.

Airflow parses DAG files where the secrets may not be, so the DAGs are planned from the
settings file alone; each task reads its merchant's settings, key included, when it runs.
A DAG file needs only:

    from ogsync.airflow import ogsync_dags

    globals().update(ogsync_dags("/opt/ogsync/ogsync.toml"))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogsync.extras import MissingExtra, is_missing_dependency, missing_extra_message

try:
    from airflow.sdk import DAG, CronTriggerTimetable, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException
except ModuleNotFoundError as exc:  # no Airflow, or one older than 3.2 (no airflow.sdk)
    if not is_missing_dependency(exc):
        raise
    raise MissingExtra(
        missing_extra_message("ogsync.airflow (Airflow 3.2 or later)", "airflow")
    ) from None

from ogsync.config import ConfigError, merchant_names
from ogsync.destinations.registry import kind_of
from ogsync.endpoints import select
from ogsync.merchants import Merchant, merchants

if TYPE_CHECKING:  # the sync itself is imported when a task runs, not when Airflow parses
    from ogsync.sync import SyncOptions

# The guide's limit: no more than five of one merchant's endpoints fetched at once.
MAX_PARALLEL_ENDPOINTS = 5


@dataclass(frozen=True)
class DagOptions:
    """What a DAG runs and how it retries; the schedule comes from the settings file."""

    endpoints: str | None = None  # comma-separated, or "all"; default: the guide's seven
    reconcile: bool = False  # a last task soft-deletes what the lost webhooks would have
    retries: int = 3
    retry_delay: timedelta = timedelta(minutes=5)  # doubling on each retry, up to the maximum
    max_retry_delay: timedelta = timedelta(hours=1)
    start_date: datetime = datetime(2025, 1, 1, tzinfo=UTC)


def ogsync_dags(
    config_path: str | Path | None = None, options: DagOptions = DagOptions()
) -> dict[str, DAG]:
    """A DAG for each merchant the settings file lists (one for a file without merchants),
    by DAG id: `ogsync_<merchant>`, or `ogsync`."""
    path = Path(config_path) if config_path is not None else None
    dags = [
        ogsync_dag(name, config_path=path, options=options)
        for name in merchant_names(config_path=path) or [None]
    ]
    return {dag.dag_id: dag for dag in dags}


def ogsync_dag(
    merchant: str | None = None,
    *,
    config_path: str | Path | None = None,
    options: DagOptions = DagOptions(),
    pool: str | None = None,
) -> DAG:
    """One merchant's DAG: apply webhooks, then one task per endpoint, then reconcile.

    The schedule is the settings' `schedule` in `schedule_timezone`. Endpoint tasks run in
    the pool `pool` (default `ogsync_<merchant>`, which must exist: `airflow pools set
    ogsync_<merchant> 5 ...`), at most five at once per run, and one at a time into a
    warehouse one process at a time may write (DuckDB's file). Failed tasks retry with
    exponential backoff, except for a bad key or bad settings, which retrying cannot mend.
    """
    path = Path(config_path) if config_path is not None else None
    (planned_merchant,) = merchants(config_path=path, only=merchant, secrets=False)
    planned = planned_merchant.settings
    names = [ep.name for ep in select(options.endpoints)]
    dag_id = f"ogsync_{merchant}" if merchant else "ogsync"
    kind = kind_of(planned.destination)
    on_disk = kind.local_path(planned.destination)
    if on_disk is not None and not on_disk.is_absolute():
        raise ConfigError(
            f"{dag_id}: {kind.name} destination {planned.destination} is not an absolute "
            "path; Airflow's tasks run in folders of their own"
        )
    # A warehouse one process at a time may write takes the endpoint tasks one at a time.
    parallel = 1 if kind.single_writer else MAX_PARALLEL_ENDPOINTS

    def target() -> Merchant:
        """The merchant as a task sees it: its settings read again, key included."""
        try:
            (found,) = merchants(config_path=path, only=merchant)
        except ConfigError as exc:
            raise AirflowFailException(str(exc)) from None
        return found

    with DAG(
        dag_id,
        description=f"Ordergroove into {kind.name} schema {planned.schema}",
        schedule=CronTriggerTimetable(planned.schedule, timezone=planned.schedule_timezone),
        start_date=options.start_date,
        catchup=False,
        max_active_runs=1,  # a run's windows start where the last run's ended
        default_args={
            "retries": options.retries,
            "retry_delay": options.retry_delay,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": options.max_retry_delay,
        },
        tags=["ogsync", "ordergroove"],
    ) as dag:

        @task(task_id="apply_webhooks")
        def apply_deletions() -> dict[str, int]:
            """Deletions the webhooks announced, applied before the endpoints load."""
            from ogsync.runner import apply_webhooks

            return vars(apply_webhooks(target()))

        @task(
            task_id="sync",
            pool=pool or f"ogsync_{merchant or 'default'}",
            max_active_tis_per_dagrun=parallel,
            map_index_template="{{ ogsync_endpoint }}",
        )
        def sync_endpoint(endpoint: str) -> dict[str, Any]:
            """One endpoint, holding only that endpoint of the warehouse."""
            from ogsync.sync import SyncOptions

            get_current_context()["ogsync_endpoint"] = endpoint  # type: ignore[typeddict-unknown-key]
            # The API's limit is per key, and the tasks running at once share it.
            found = target()
            share = max(1, found.settings.requests_per_minute // parallel)
            chosen = replace(found, settings=replace(found.settings, requests_per_minute=share))
            one = SyncOptions.from_settings(chosen.settings, select(endpoint), exclusive=False)
            return _outcome(chosen, one)

        @task(task_id="reconcile")
        def reconcile_deletions() -> dict[str, Any]:
            """Deletions whose webhooks never came: unsent orders and items the API lost."""
            from ogsync.sync import SyncOptions

            found = target()
            return _outcome(found, SyncOptions.from_settings(found.settings, (), reconcile=True))

        synced = sync_endpoint.expand(endpoint=names)
        apply_deletions() >> synced
        if options.reconcile:
            synced >> reconcile_deletions()
    return dag


def _outcome(merchant: Merchant, options: SyncOptions) -> dict[str, Any]:
    """Run the sync; what it did, for XCom, or the exception that makes Airflow retry (or,
    for what retrying cannot mend, a bad key or bad settings, fail at once)."""
    from ogsync.exit_codes import EXIT_AUTH, EXIT_CONFIG
    from ogsync.runner import Reporter, sync_one

    outcome = sync_one(merchant, options, Reporter())
    result = outcome.result
    runs = [o.run for o in result.outcomes] if result else []
    runs += result.reconciled.runs if result and result.reconciled else []
    failed = "; ".join(f"{r.endpoint}: {r.error}" for r in runs if not r.ok)
    if outcome.code in (EXIT_AUTH, EXIT_CONFIG):
        raise AirflowFailException(outcome.error or failed)
    if outcome.code != 0 or result is None:
        raise SyncFailed(failed or outcome.error or "the sync failed")
    return {
        "run_id": result.run_id,
        "run_started_at": result.run_started_at.isoformat(),
        "endpoints": {
            r.endpoint: {
                "kind": r.kind,
                "records": r.records,
                "requests": r.requests,
                "retries": r.retries,
                "soft_deletes": r.soft_deletes,
                "window_start": r.window_start.isoformat() if r.window_start else None,
                "window_end": r.window_end.isoformat() if r.window_end else None,
            }
            for r in runs
        },
    }


class SyncFailed(RuntimeError):
    """An endpoint's run failed; Airflow retries the task, which resumes where it stopped."""
