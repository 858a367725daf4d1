"""A run's numbers in Prometheus text format, for node_exporter's textfile collector.

One gauge per figure, labelled by merchant (empty for a single merchant) and endpoint. The
file is replaced atomically (written beside it, then renamed), so the collector never reads
half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ogsync.destinations.base import RunLog
from ogsync.outcome import SyncResult
from ogsync.private import write_private
from ogsync.vocabulary import RunStatus

PREFIX = "ogsync_sync_"


@dataclass(frozen=True)
class MerchantRun:
    """One merchant's run, for the file: several merchants share it, told apart by label."""

    merchant: str  # "" when the settings file lists no merchants
    result: SyncResult
    # Each endpoint's last successful sync, from the warehouse's run log, when the run failed.
    last_success: Mapping[str, datetime | None] | None = None


def write_metrics_file(path: str | Path, runs: Sequence[MerchantRun], now: datetime) -> None:
    """Write the runs' per-endpoint metrics to `path`, replacing it atomically.

    Series are labelled by merchant and endpoint. The last-success timestamp of an endpoint
    that succeeded is its run's end; of one that failed, the one its merchant's
    `last_success` gives, else the series is left out.
    """
    registry = CollectorRegistry()

    def gauge(name: str, doc: str) -> Gauge:
        return Gauge(PREFIX + name, doc, ["merchant", "endpoint"], registry=registry)

    records = gauge("records", "Records written to the warehouse by the last run.")
    requests = gauge("requests", "HTTP requests the last run made, retries included.")
    retries = gauge("retries", "Requests the last run retried.")
    waits = gauge("rate_limit_waits", "Times the last run waited on the rate limit.")
    soft_deletes = gauge("soft_deletes", "Rows the last run soft-deleted.")
    duration = gauge("duration_seconds", "How long the endpoint took in the last run.")
    success = gauge("success", "1 if the endpoint's last run succeeded, else 0.")
    last_ok = gauge(
        "last_success_timestamp_seconds", "Unix time the endpoint last synced successfully."
    )
    rejected = gauge("rejected", "Records the last run set aside in _ogsync_rejected.")
    webhooks_rejected = Gauge(
        PREFIX + "webhooks_rejected",
        "Webhook events the last run's drain set aside in _ogsync_rejected.",
        ["merchant"],
        registry=registry,
    )
    for merchant_run in runs:
        result = merchant_run.result
        if result.webhooks is not None:
            webhooks_rejected.labels(merchant_run.merchant).set(result.webhooks.rejected)
        by_endpoint = {o.run.endpoint: o.run for o in result.outcomes}
        for extra in result.reconciled.runs if result.reconciled else ():  # --reconcile
            run = by_endpoint.get(extra.endpoint)
            by_endpoint[extra.endpoint] = extra if run is None else _merged(run, extra)
        for run in by_endpoint.values():
            labels = (merchant_run.merchant, run.endpoint)
            records.labels(*labels).set(run.records)
            requests.labels(*labels).set(run.requests)
            retries.labels(*labels).set(run.retries)
            waits.labels(*labels).set(run.rate_limit_waits)
            soft_deletes.labels(*labels).set(run.soft_deletes)
            rejected.labels(*labels).set(run.rejected)
            finished = run.finished_at or now
            duration.labels(*labels).set(max((finished - run.started_at).total_seconds(), 0.0))
            ok = run.ok
            success.labels(*labels).set(1 if ok else 0)
            known = run.finished_at if ok else (merchant_run.last_success or {}).get(run.endpoint)
            if known is not None:
                last_ok.labels(*labels).set(known.timestamp())
    write_private(path, generate_latest(registry))


def _merged(run: RunLog, extra: RunLog) -> RunLog:
    """An endpoint's sync and its reconcile as one: counts add up, any failure fails it."""
    failed = not (run.ok and extra.ok)
    return replace(
        run,
        requests=run.requests + extra.requests,
        retries=run.retries + extra.retries,
        rate_limit_waits=run.rate_limit_waits + extra.rate_limit_waits,
        soft_deletes=run.soft_deletes + extra.soft_deletes,
        status=RunStatus.FAILED if failed else RunStatus.SUCCESS,
        finished_at=extra.finished_at or run.finished_at,
    )


def check_writable(path: str | Path) -> str | None:
    """Why a metrics file cannot be written at `path` (one line), or None when it can.

    The file is replaced by a rename, so what matters is creating a file in its folder.
    """
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        return f"metrics file {target} is a directory"
    if not folder.is_dir():
        return f"cannot write metrics file {target}: folder {folder} does not exist"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as exc:
        return f"cannot write metrics file {target}: {exc.strerror or exc}"
    os.close(fd)
    os.remove(probe)
    return None
