"""Reconciliation: catch deletions whose webhooks never arrived.

Only unsent orders (status 1) and their items are ever hard-deleted. So the API's list of
unsent orders and items, compared with the warehouse's, names every candidate; each is then
asked for by id, and only the ones the API answers 404 for are soft-deleted
(`_deleted_reason = 'reconcile'`). An order placed between the two lists is found, not lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ogsync.client import OrdergrooveClient, RequestStats
from ogsync.deletions import UNSENT
from ogsync.destinations.base import Destination, RunLog
from ogsync.endpoints import BY_NAME
from ogsync.vocabulary import DeletionReason, RunKind, RunStatus

log = logging.getLogger("ogsync.reconcile")

ORDERS = BY_NAME["orders"]
ITEMS = BY_NAME["items"]


@dataclass
class ReconcileResult:
    runs: list[RunLog] = field(default_factory=list)

    @property
    def soft_deleted(self) -> int:
        return sum(r.soft_deletes for r in self.runs)


def reconcile(client: OrdergrooveClient, destination: Destination, run_id: str) -> ReconcileResult:
    result = ReconcileResult()
    for ep in (ORDERS, ITEMS):
        run = RunLog(
            run_id=run_id, endpoint=ep.name, kind=RunKind.RECONCILE, started_at=datetime.now(UTC)
        )
        stats = RequestStats()
        try:
            listed: set[str] = set()
            for records, _ in client.pages(ep.path, {"status": str(UNSENT)}, stats):
                listed.update(str(r.get(ep.key)) for r in records if isinstance(r, dict))
            missing = destination.unsent_keys(ep) - listed
            gone = [rid for rid in sorted(missing) if client.retrieve(ep.path, rid, stats) is None]
            run.soft_deletes = destination.soft_delete(ep, gone, DeletionReason.RECONCILE, run_id)
            run.status = RunStatus.SUCCESS
            log.info(
                "reconcile %s: %d unsent in the API, %d missing from it, %d confirmed gone",
                ep.name,
                len(listed),
                len(missing),
                len(gone),
            )
        except Exception as exc:
            run.status, run.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            log.error("reconcile %s failed: %s", ep.name, run.error)
        run.pages, run.requests, run.retries = stats.pages, stats.requests, stats.retries
        run.rate_limit_waits = stats.rate_limit_waits
        run.finished_at = datetime.now(UTC)
        destination.log_run(run)
        result.runs.append(run)
    return result
