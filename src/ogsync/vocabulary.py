"""The words ogsync writes into the warehouse and reads back: run status, run kind, and why a
row was deleted. One definition, used by the code and by the SQL it writes."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class RunKind(StrEnum):
    SYNC = "sync"  # incremental, from the watermark
    FULL_REFRESH = "full_refresh"
    TEST_WINDOW = "test_window"  # --since/--until: leaves the watermark alone
    BACKFILL = "backfill"
    RECONCILE = "reconcile"


# Runs that do not bring an endpoint up to date.
NOT_A_SYNC = frozenset({RunKind.TEST_WINDOW, RunKind.RECONCILE})


class DeletionReason(StrEnum):
    """`_deleted_reason` of a soft-deleted row, and `reason` in `_ogsync_deletions`.

    A webhook's deletion is `webhook:<event type>` (see `webhook`); the prefix is what the
    newer-wins rule and the tombstones look for."""

    FULL_REFRESH = "full_refresh"  # a full refresh no longer returned it
    RECONCILE = "reconcile"  # the API answered 404 for it

    @staticmethod
    def webhook(event_type: str) -> str:
        return f"{WEBHOOK_PREFIX}{event_type}"

    @staticmethod
    def is_webhook_sql(column: str) -> str:
        """SQL that is true where `column` holds a webhook's reason."""
        return f"{column} LIKE '{WEBHOOK_PREFIX}%'"


WEBHOOK_PREFIX = "webhook:"
