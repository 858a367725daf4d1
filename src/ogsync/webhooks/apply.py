"""Draining the inbox into the warehouse: every event stored, every deletion applied.

Applying is idempotent, so an inbox event is marked applied only after the warehouse has
committed it; a crash in between only means the same events are applied again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ogsync.config import Settings
from ogsync.destinations.base import ApplyResult, Destination
from ogsync.webhooks.inbox import DEFAULT_INBOX_PATH, INBOX_ENV, Inbox, open_inbox

log = logging.getLogger("ogsync.webhooks")

BATCH = 1000


def apply_inbox(inbox: Inbox, destination: Destination, batch: int = BATCH) -> ApplyResult:
    total = ApplyResult()
    while events := inbox.pending(batch):
        result = destination.apply_events(events)
        inbox.mark_applied([e.event_id for e in events])
        total.stored += result.stored
        total.deletions += result.deletions
        total.soft_deleted += result.soft_deleted
    if total.stored or total.deletions:
        log.info(
            "webhooks applied: %d events stored, %d deletions recorded, %d rows soft-deleted",
            total.stored,
            total.deletions,
            total.soft_deleted,
            extra={"event": "webhooks_applied", **vars(total)},
        )
    return total


class InboxUnavailable(RuntimeError):
    """The inbox could not be opened; the message is one line, for the user."""


def apply_webhooks(settings: Settings, inbox_path: Path | None = None) -> ApplyResult:
    """Hold the whole warehouse and apply what its inbox holds (`ogsync webhooks apply`).

    The inbox is the file given, else the one a sync would drain; with neither, there is
    nothing to apply and the warehouse's tables are only made ready.
    """
    from ogsync.destinations import open_destination
    from ogsync.endpoints import ENDPOINTS

    warehouse = open_destination(
        settings.destination, settings.schema, duckdb_memory_limit=settings.duckdb_memory_limit
    )
    try:
        try:
            inbox = open_inbox(settings, inbox_path) if inbox_path else inbox_for_sync(settings)
        except Exception as exc:
            raise InboxUnavailable(f"cannot open the webhook inbox: {exc}") from None
        warehouse.prepare(ENDPOINTS)
        if inbox is None:
            return ApplyResult()
        try:
            return apply_inbox(inbox, warehouse)
        finally:
            inbox.close()
    finally:
        warehouse.close()


def inbox_for_sync(settings: Any) -> Inbox | None:
    """The inbox a sync drains first, if the receiver has one: the PostgreSQL warehouse's own,
    or the SQLite file when it exists (a sync never creates an empty one)."""
    destination = str(getattr(settings, "destination", "") or "")
    if destination.startswith(("postgresql://", "postgres://")):
        return open_inbox(settings)
    path = Path(os.environ.get(INBOX_ENV) or DEFAULT_INBOX_PATH)
    return open_inbox(settings, path) if path.is_file() else None
