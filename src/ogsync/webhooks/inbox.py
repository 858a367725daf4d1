"""The durable webhook inbox: every accepted event is written here before the receiver says 2xx.

One table, `_ogsync_inbox`, keyed by the event `id` (so a redelivered event is stored once):
in a SQLite file by default (WAL, `synchronous=FULL`: a commit is on disk when it returns), or in
the warehouse itself when it can hold it (PostgreSQL: `ogsync.destinations.postgres_inbox`).

All work on the database happens on one writer thread that owns the only connection
(`ogsync.group_commit`). Events queued while a commit is in flight are committed together by
the next one: one fsync answers many requests, so durability does not cap the rate at one
event per disk flush, and no event is answered before its own commit has returned.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from ogsync.destinations.errors import DestinationError
from ogsync.group_commit import GroupCommitWriter
from ogsync.private import OWNER_ONLY, tighten

if TYPE_CHECKING:
    from ogsync.destinations.registry import WarehouseKind

log = logging.getLogger("ogsync.webhooks.inbox")

TABLE = "_ogsync_inbox"
DEFAULT_INBOX_PATH = "ogsync-inbox.sqlite"
INBOX_ENV = "OGSYNC_WEBHOOK_INBOX"
MAX_BATCH = 1000  # events per group commit at most
T = TypeVar("T")


class InvalidEvent(ValueError):
    """A (signed) body that is not a JSON object with a string `id` and `type`."""


class NotJSON(InvalidEvent):
    """A body that does not parse as JSON at all."""


class InboxClosed(RuntimeError):
    """The inbox was closed; nothing more can be written."""


@dataclass(frozen=True)
class InboxEvent:
    event_id: str
    type: str
    created: int | None  # unix seconds, from the envelope
    object_type: str | None
    object_id: str | None  # data.object.public_id (or merchant_user_id)
    order_id: str | None  # data.object.order (items), if present
    payload: str  # the body exactly as received
    received_at: float  # unix seconds
    applied_at: float | None = None

    @classmethod
    def from_body(cls, body: bytes, received_at: float | None = None) -> InboxEvent:
        """Parse an envelope; raise InvalidEvent if it is not JSON or lacks `id` or `type`."""
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise NotJSON("body is not JSON") from None
        if not isinstance(envelope, dict):
            raise InvalidEvent("body is not a JSON object")
        event_id, kind = envelope.get("id"), envelope.get("type")
        if not isinstance(event_id, str) or not event_id.strip():
            raise InvalidEvent("event has no string id")
        if not isinstance(kind, str) or not kind.strip():
            raise InvalidEvent("event has no string type")
        data = envelope.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        obj = obj if isinstance(obj, dict) else {}
        object_type = _text(obj.get("type")) or kind.partition(".")[0] or None
        object_id = next(
            (
                _text(obj.get(key))
                for key in ("public_id", "merchant_user_id", "external_product_id")
                if _text(obj.get(key))
            ),
            None,
        )
        return cls(
            event_id=event_id,
            type=kind,
            created=unix_seconds(envelope.get("created")),
            object_type=object_type,
            object_id=object_id,
            order_id=_text(obj.get("order")),
            payload=body.decode("utf-8"),  # orjson accepted it, so it is UTF-8
            received_at=time.time() if received_at is None else received_at,
        )


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# An event's `created` must fall in this span of unix seconds to be believed (2000 to 2100).
EARLIEST_CREATED = 946_684_800
LATEST_CREATED = 4_102_444_800


def unix_seconds(value: Any) -> int | None:
    """`created` as unix seconds, read the ways a sender plausibly writes it: seconds,
    milliseconds or microseconds (as numbers or digit strings), or an ISO-8601 time. Anything
    else, or a time outside 2000-2100, is None: never an error, so one odd event can't break
    the inbox or the warehouse (its payload is kept whole)."""
    seconds: float | None = None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and abs(value) > 10**18:  # float() of a huge int overflows
        return None
    if isinstance(value, int | float):
        seconds = float(value) if math.isfinite(value) else None
    elif isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        try:
            seconds = float(text) if text.isascii() and text.replace(".", "", 1).isdigit() else None
        except ValueError:
            seconds = None
        if seconds is None:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return None
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            seconds = parsed.timestamp()
    if seconds is None:
        return None
    for scale in (1, 1_000, 1_000_000):  # seconds, then milliseconds, then microseconds
        if EARLIEST_CREATED <= seconds / scale <= LATEST_CREATED:
            return int(seconds / scale)
    return None


class Inbox(Protocol):
    def submit(self, event: InboxEvent) -> Future[bool]:
        """Queue the event to be stored durably; the future says True once it is, False if
        one with its id was already there."""
        ...

    def put(self, event: InboxEvent) -> bool:
        """`submit` and wait."""
        ...

    def pending(self, limit: int = 1000) -> list[InboxEvent]:
        """Events not applied yet, oldest first."""
        ...

    def mark_applied(self, ids: Iterable[str]) -> int: ...

    def backlog(self) -> int: ...

    def applied(self) -> int: ...

    @property
    def commits(self) -> int:
        """Transactions written so far (each may hold many events)."""
        ...

    def healthy(self) -> bool: ...

    def close(self) -> None: ...


class GroupCommitInbox:
    """An inbox whose single writer commits every queued event in one transaction
    (`ogsync.group_commit`). A backend provides the connection and the statements."""

    kind = "inbox"

    def __init__(self, *, max_batch: int = MAX_BATCH, timeout_seconds: float = 30.0) -> None:
        self.timeout = timeout_seconds
        self._conn: Any = None
        self._conn = self._connect()  # fail in the caller (bad path, no server) not later
        self._writer: GroupCommitWriter[InboxEvent, bool] = GroupCommitWriter(
            self._write,
            name=f"ogsync-{self.kind}",
            max_group=max_batch,
            closed_error=lambda: InboxClosed("the inbox is closed"),
        )

    # -- what a backend provides
    def _connect(self) -> Any:
        raise NotImplementedError

    def _insert(self, conn: Any, events: Sequence[InboxEvent]) -> list[bool]:
        raise NotImplementedError

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        conn.rollback()

    def _pending(self, conn: Any, limit: int) -> list[InboxEvent]:
        raise NotImplementedError

    def _mark_applied(self, conn: Any, ids: list[str], at: float) -> int:
        raise NotImplementedError

    def _backlog(self, conn: Any) -> int:
        raise NotImplementedError

    def _applied(self, conn: Any) -> int:
        raise NotImplementedError

    # -- the public face
    def submit(self, event: InboxEvent) -> Future[bool]:
        """Queue the event; the future resolves once it is committed (True: new, False: dup)."""
        return self._writer.write(event)

    def put(self, event: InboxEvent) -> bool:
        return self.submit(event).result(self.timeout)

    def pending(self, limit: int = 1000) -> list[InboxEvent]:
        return self._call(lambda conn: self._pending(conn, limit))

    def mark_applied(self, ids: Iterable[str], at: float | None = None) -> int:
        chosen = list(dict.fromkeys(ids))
        if not chosen:
            return 0
        when = time.time() if at is None else at
        return self._call(lambda conn: self._mark_applied(conn, chosen, when))

    def backlog(self) -> int:
        return self._call(self._backlog)

    def applied(self) -> int:
        """Events the warehouse has taken in (the sync or `webhooks apply` marks them)."""
        return self._call(self._applied)

    @property
    def commits(self) -> int:
        """Group commits done (for the receiver's metrics, tests and the bench)."""
        return self._writer.commits

    def healthy(self) -> bool:
        return self._writer.alive

    def close(self) -> None:
        self._writer.close()
        self._disconnect()

    def __enter__(self) -> GroupCommitInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[Any], T]) -> T:
        def job() -> T:
            try:
                conn = self._ready()
                result = fn(conn)
                self._commit(conn)
            except Exception:
                self._broken()
                raise
            return result

        return self._writer.call(job).result(self.timeout)

    # -- on the writer's thread
    def _write(self, events: list[InboxEvent]) -> list[bool]:
        try:
            conn = self._ready()
            fresh = self._insert(conn, events)
            self._commit(conn)
        except Exception as exc:  # the caller answers 5xx; the sender retries
            self._broken()
            if len(events) == 1:
                log.error("inbox write of event %s failed: %s", events[0].event_id, exc)
            raise
        return fresh

    def _ready(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _broken(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._rollback(self._conn)
        self._disconnect()

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


def claimed(events: Sequence[InboxEvent], inserted: set[str]) -> list[bool]:
    """True for the first event of each id the database took, False for the rest."""
    result = []
    for event in events:
        result.append(event.event_id in inserted)
        inserted.discard(event.event_id)
    return result


COLUMNS = (
    "event_id, type, created, object_type, object_id, order_id, payload, received_at, applied_at"
)


class SQLiteInbox(GroupCommitInbox):
    """The inbox in a SQLite file: WAL mode, every commit synced to disk before it returns."""

    kind = "sqlite-inbox"

    def __init__(self, path: str | os.PathLike[str], **kwargs: Any) -> None:
        self.path = Path(path)
        super().__init__(**kwargs)

    def _connect(self) -> sqlite3.Connection:
        if str(self.path) != ":memory:":  # SQLite gives its -wal and -shm the file's mode
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, OWNER_ONLY))
            tighten(self.path, f"{self.path}-wal", f"{self.path}-shm")
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RuntimeError(f"{self.path}: cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {TABLE} (
                event_id TEXT PRIMARY KEY,
                type TEXT NOT NULL,
                created INTEGER,
                object_type TEXT,
                object_id TEXT,
                order_id TEXT,
                payload TEXT NOT NULL,
                received_at REAL NOT NULL,
                applied_at REAL
            )"""
        )
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {TABLE} (created, received_at)"
            " WHERE applied_at IS NULL"
        )
        return conn

    def _insert(self, conn: sqlite3.Connection, events: Sequence[InboxEvent]) -> list[bool]:
        conn.execute("BEGIN IMMEDIATE")
        fresh = []
        for e in events:
            cursor = conn.execute(
                f"INSERT INTO {TABLE} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                row_of(e),
            )
            fresh.append(cursor.rowcount == 1)
        return fresh

    def _commit(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _pending(self, conn: sqlite3.Connection, limit: int) -> list[InboxEvent]:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM {TABLE} WHERE applied_at IS NULL"
            " ORDER BY created ASC NULLS FIRST, received_at, event_id LIMIT ?",
            (limit,),
        ).fetchall()
        return [InboxEvent(*row) for row in rows]

    def _mark_applied(self, conn: sqlite3.Connection, ids: list[str], at: float) -> int:
        conn.execute("BEGIN IMMEDIATE")
        done = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            done += conn.execute(
                f"UPDATE {TABLE} SET applied_at = ? WHERE applied_at IS NULL"
                f" AND event_id IN ({marks})",
                (at, *chunk),
            ).rowcount
        return done

    def _backlog(self, conn: sqlite3.Connection) -> int:
        return conn.execute(f"SELECT count(*) FROM {TABLE} WHERE applied_at IS NULL").fetchone()[0]

    def _applied(self, conn: sqlite3.Connection) -> int:
        query = f"SELECT count(*) FROM {TABLE} WHERE applied_at IS NOT NULL"
        return conn.execute(query).fetchone()[0]


def row_of(e: InboxEvent) -> tuple[Any, ...]:
    return (
        e.event_id,
        e.type,
        e.created,
        e.object_type,
        e.object_id,
        e.order_id,
        e.payload,
        e.received_at,
        e.applied_at,
    )


class WarehouseSettings(Protocol):
    """What choosing an inbox needs of the settings."""

    destination: str
    schema: str


def open_inbox(
    settings: WarehouseSettings, path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> GroupCommitInbox:
    """The inbox for these settings.

    A path given here or in OGSYNC_WEBHOOK_INBOX is a SQLite file. Without one, a warehouse
    that can hold the inbox holds it in its schema; any other gets the SQLite file
    `ogsync-inbox.sqlite`.
    """
    chosen = path or os.environ.get(INBOX_ENV) or None
    if chosen is None and (hosted := hosting_warehouse(settings)) is not None:
        return hosted.open_inbox(settings.destination, settings.schema)
    return SQLiteInbox(chosen or DEFAULT_INBOX_PATH, **kwargs)


def hosting_warehouse(settings: WarehouseSettings) -> WarehouseKind | None:
    """The settings' warehouse, if it keeps the inbox itself."""
    from ogsync.destinations.registry import kind_of

    try:
        kind = kind_of(settings.destination)
    except DestinationError:
        return None
    return kind if kind.hosts_inbox else None
