"""The durable webhook inbox: every accepted event is written here before the receiver says 2xx.

One table, `_ogsync_inbox`, keyed by the event `id` (so a redelivered event is stored once):
in a SQLite file by default (WAL, `synchronous=FULL`: a commit is on disk when it returns), or in
the warehouse itself when that is PostgreSQL.

All work on the database happens on one writer thread that owns the only connection. Callers
queue jobs and wait on futures. Events queued while a commit is in flight are committed together
by the next one (group commit): one fsync answers many requests, so durability does not cap the
rate at one event per disk flush, and no event is answered before its own commit has returned.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import orjson

from ogsync.private import OWNER_ONLY, tighten

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
    def put(self, event: InboxEvent) -> bool:
        """Store the event durably; False if one with its id is already there."""
        ...

    def pending(self, limit: int = 1000) -> list[InboxEvent]:
        """Events not applied yet, oldest first."""
        ...

    def mark_applied(self, ids: Iterable[str]) -> int: ...

    def backlog(self) -> int: ...

    def applied(self) -> int: ...

    def close(self) -> None: ...


@dataclass
class _Put:
    event: InboxEvent
    future: Future[bool]


@dataclass
class _Call:
    fn: Callable[[Any], Any]
    future: Future[Any]


_STOP = object()


class GroupCommitInbox:
    """An inbox whose single writer thread commits every queued event in one transaction."""

    kind = "inbox"

    def __init__(self, *, max_batch: int = MAX_BATCH, timeout_seconds: float = 30.0) -> None:
        self.max_batch = max_batch
        self.timeout = timeout_seconds
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: Any = None
        self._closed = False
        self._close_lock = threading.Lock()
        self.commits = 0  # group commits done (for tests and the bench)
        self._conn = self._connect()  # fail in the caller (bad path, no server) not later
        self._thread = threading.Thread(target=self._run, name=f"ogsync-{self.kind}", daemon=True)
        self._thread.start()

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
        future: Future[bool] = Future()
        if self._closed:
            raise InboxClosed("the inbox is closed")
        self._jobs.put(_Put(event, future))
        return future

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

    def healthy(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._jobs.put(_STOP)
        self._thread.join()

    def __enter__(self) -> GroupCommitInbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[Any], T]) -> T:
        if self._closed:
            raise InboxClosed("the inbox is closed")
        future: Future[T] = Future()
        self._jobs.put(_Call(fn, future))
        return future.result(self.timeout)

    # -- the writer thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._jobs.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stopping = any(job is _STOP for job in batch)
            # A caller that gave up waiting cancelled its future: skip that job (a retried
            # event comes again). Once running, a future cannot be cancelled any more.
            batch = [j for j in batch if j is _STOP or j.future.set_running_or_notify_cancel()]
            puts = [job for job in batch if isinstance(job, _Put)]
            if puts:
                self._write(puts)
            for job in batch:
                if isinstance(job, _Call):
                    self._run_call(job)
        # Whatever arrived after the stop was asked for: write it too, then shut the door.
        rest = []
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if job is not _STOP and job.future.set_running_or_notify_cancel():
                    rest.append(job)
        if puts := [job for job in rest if isinstance(job, _Put)]:
            self._write(puts)
        for job in rest:
            if isinstance(job, _Call):
                job.future.set_exception(InboxClosed("the inbox is closed"))
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _ready(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _broken(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._rollback(self._conn)
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _write(self, puts: list[_Put]) -> None:
        try:
            conn = self._ready()
            fresh = self._insert(conn, [p.event for p in puts])
            self._commit(conn)
            self.commits += 1
        except Exception as exc:  # the caller answers 5xx; the sender retries
            self._broken()
            if len(puts) > 1:  # one event the database refuses must not fail the others
                log.warning("inbox write of %d events failed (%s); writing each alone",
                            len(puts), exc)  # fmt: skip
                for p in puts:
                    self._write([p])
                return
            log.error("inbox write of event %s failed: %s", puts[0].event.event_id, exc)
            puts[0].future.set_exception(exc)
            return
        for p, new in zip(puts, fresh, strict=True):
            p.future.set_result(new)

    def _run_call(self, job: _Call) -> None:
        try:
            conn = self._ready()
            result = job.fn(conn)
            self._commit(conn)
        except Exception as exc:
            self._broken()
            job.future.set_exception(exc)
            return
        job.future.set_result(result)


def _claimed(events: Sequence[InboxEvent], inserted: set[str]) -> list[bool]:
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
                _row(e),
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


class PostgresInbox(GroupCommitInbox):
    """The inbox as a table of the PostgreSQL warehouse, in the destination's schema."""

    kind = "postgres-inbox"

    def __init__(self, url: str, schema: str, **kwargs: Any) -> None:
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"schema {schema!r}: use letters, digits and underscores")
        self.url = url
        self.schema = schema
        super().__init__(**kwargs)

    @property
    def _table(self) -> str:
        return f'"{self.schema}".{TABLE}'

    def _connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.url, connect_timeout=10, application_name="ogsync-webhooks")
        with conn.transaction():
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self._table} (
                    event_id text PRIMARY KEY,
                    type text NOT NULL,
                    created bigint,
                    object_type text,
                    object_id text,
                    order_id text,
                    payload text NOT NULL,
                    received_at timestamptz NOT NULL,
                    applied_at timestamptz
                )"""
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {self._table}"
                " (created, received_at) WHERE applied_at IS NULL"
            )
        return conn

    def _insert(self, conn: Any, events: Sequence[InboxEvent]) -> list[bool]:
        columns = list(zip(*(_row(e) for e in events), strict=True))
        rows = conn.execute(
            f"INSERT INTO {self._table} ({COLUMNS})"
            " SELECT e, t, c, ot, oi, od, p, to_timestamp(r), to_timestamp(a) FROM unnest("
            "%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::float8[], %s::float8[]) AS u(e, t, c, ot, oi, od, p, r, a)"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            [list(c) for c in columns],
        ).fetchall()
        return _claimed(events, {row[0] for row in rows})

    def _pending(self, conn: Any, limit: int) -> list[InboxEvent]:
        rows = conn.execute(
            "SELECT event_id, type, created, object_type, object_id, order_id, payload,"
            " extract(epoch FROM received_at)::float8, extract(epoch FROM applied_at)::float8"
            f" FROM {self._table} WHERE applied_at IS NULL"
            " ORDER BY created ASC NULLS FIRST, received_at, event_id LIMIT %s",
            (limit,),
        ).fetchall()
        return [InboxEvent(*row) for row in rows]

    def _mark_applied(self, conn: Any, ids: list[str], at: float) -> int:
        return conn.execute(
            f"UPDATE {self._table} SET applied_at = to_timestamp(%s)"
            " WHERE applied_at IS NULL AND event_id = ANY(%s)",
            (at, ids),
        ).rowcount

    def _backlog(self, conn: Any) -> int:
        row = conn.execute(f"SELECT count(*) FROM {self._table} WHERE applied_at IS NULL")
        return int(row.fetchone()[0])

    def _applied(self, conn: Any) -> int:
        row = conn.execute(f"SELECT count(*) FROM {self._table} WHERE applied_at IS NOT NULL")
        return int(row.fetchone()[0])


def _row(e: InboxEvent) -> tuple[Any, ...]:
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


def open_inbox(
    settings: Any, path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> GroupCommitInbox:
    """The inbox for these settings (anything with `destination` and `schema`).

    A path given here or in OGSYNC_WEBHOOK_INBOX (or a `webhook_inbox` setting) is a SQLite
    file. Without one, a PostgreSQL destination holds the inbox in its schema; any other
    destination gets the SQLite file `ogsync-inbox.sqlite`.
    """
    chosen = path or getattr(settings, "webhook_inbox", None) or os.environ.get(INBOX_ENV) or None
    destination = str(getattr(settings, "destination", "") or "")
    scheme = urlsplit(destination).scheme.lower()
    if chosen is None and scheme in ("postgresql", "postgres"):
        return PostgresInbox(destination, getattr(settings, "schema", "ordergroove"), **kwargs)
    return SQLiteInbox(chosen or DEFAULT_INBOX_PATH, **kwargs)
