"""Draining the inbox into the warehouse: every event stored, every deletion applied.

Applying is idempotent, so an inbox event is marked applied only after the warehouse has
committed it; a crash in between only means the same events are applied again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ogsync.deletions import DELETION_EVENTS
from ogsync.destinations.base import ApplyResult, Destination, Rejected
from ogsync.governance import NONE, Governance
from ogsync.webhooks.inbox import (
    DEFAULT_INBOX_PATH,
    INBOX_ENV,
    Inbox,
    InboxEvent,
    WarehouseSettings,
    hosting_warehouse,
    open_inbox,
    unix_seconds,
)

log = logging.getLogger("ogsync.webhooks")

BATCH = 1000


def apply_inbox(
    inbox: Inbox,
    destination: Destination,
    governance: Governance = NONE,
    batch: int = BATCH,
) -> ApplyResult:
    """Apply what the inbox held when this began (so a steady stream of webhooks can't hold a
    sync back), a batch at a time. An event that can't be applied is set aside in the
    warehouse's `_ogsync_rejected` with its payload and why, and the drain goes on. Payloads
    reach the warehouse with the field rules applied."""
    total = ApplyResult()
    budget = inbox.backlog()
    while budget > 0 and (events := inbox.pending(min(batch, budget))):
        budget -= len(events)
        if governance.changes_records:
            events = [replace(e, payload=governance.payload(e.payload)) for e in events]
        applicable, rejected = _checked(events)
        result = _apply(destination, applicable, rejected)
        destination.reject(rejected)
        inbox.mark_applied([e.event_id for e in events])
        total.stored += result.stored
        total.deletions += result.deletions
        total.soft_deleted += result.soft_deleted
        total.rejected += len(rejected)
    if total.stored or total.deletions or total.rejected:
        log.info(
            "webhooks applied: %d events stored, %d deletions recorded, %d rows soft-deleted, "
            "%d events rejected",
            total.stored,
            total.deletions,
            total.soft_deleted,
            total.rejected,
            extra={"event": "webhooks_applied", **vars(total)},
        )
    if total.rejected:
        log.warning(
            "%d webhook event(s) could not be applied: see _ogsync_rejected", total.rejected
        )
    return total


def _checked(events: Sequence[InboxEvent]) -> tuple[list[InboxEvent], list[Rejected]]:
    """The events that can be applied, and the rest with why. `created` is read again: an
    inbox written by an older ogsync may hold it in milliseconds."""
    good: list[InboxEvent] = []
    rejected: list[Rejected] = []
    for event in events:
        event = replace(event, created=unix_seconds(event.created))
        why = None
        if event.type in DELETION_EVENTS:
            if event.object_id is None:
                why = "a deletion that names no record (data.object.public_id)"
            elif event.created is None:
                why = "a deletion with no readable `created` time"
        if why is None:
            good.append(event)
        else:
            rejected.append(_rejected(event, why))
    return good, rejected


def _apply(
    destination: Destination, events: list[InboxEvent], rejected: list[Rejected]
) -> ApplyResult:
    """Apply the events together; should that fail, each alone, setting aside those that fail
    on their own. If every one fails alone, the warehouse is at fault, not the events."""
    try:
        return destination.apply_events(events)
    except Exception as exc:
        if len(events) <= 1:
            if not events:
                raise
            rejected.append(_rejected(events[0], _one_line(exc)))
            return ApplyResult()
        log.warning("applying %d webhook events failed (%s); applying each alone",
                    len(events), _one_line(exc))  # fmt: skip
    total = ApplyResult()
    failures: list[tuple[InboxEvent, Exception]] = []
    for event in events:
        try:
            result = destination.apply_events([event])
        except Exception as exc:
            failures.append((event, exc))
            continue
        total.stored += result.stored
        total.deletions += result.deletions
        total.soft_deleted += result.soft_deleted
    if len(failures) == len(events):
        raise failures[-1][1]
    rejected.extend(_rejected(event, _one_line(exc)) for event, exc in failures)
    return total


def _rejected(event: InboxEvent, why: str) -> Rejected:
    return Rejected("webhook", event.event_id, why, event.payload)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def inbox_for_sync(settings: WarehouseSettings) -> Inbox | None:
    """The inbox a sync drains first, if the receiver has one: the warehouse's own (where it
    holds one), or the SQLite file when it exists (a sync never creates an empty one)."""
    if hosting_warehouse(settings) is not None:
        return open_inbox(settings)
    path = Path(os.environ.get(INBOX_ENV) or DEFAULT_INBOX_PATH)
    return open_inbox(settings, path) if path.is_file() else None
