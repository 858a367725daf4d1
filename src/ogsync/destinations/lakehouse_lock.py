"""One writer per lakehouse: the lock object `<location>/_ogsync.lock`.

Each Delta or Iceberg table commits atomically, but a sync writes a group of tables (the
records, their history, the dictionary, the run's state) and the group as a whole does not.
Two runs writing the same lakehouse at once could interleave their commits and leave tables
that agree with neither run, so a run takes this lock before its first write and gives it back
after its last.

- A local folder: `flock` on the file. The kernel drops it when the process ends, even on
  SIGKILL, so a crashed run never blocks the next. The file stays (deleting a flock file lets
  two processes lock two different files of the same name); it holds the holder's pid and host.
- S3: a lease in the object, taken with a conditional put (`If-None-Match: *`: only one put can
  create the object). A thread renews it every third of its length (60 s unless asked) with
  `If-Match: <our ETag>`, so a renewal fails once anyone else has written the object. A run
  that dies stops renewing; once `expires_at` has passed, the next run takes the object over
  with `If-Match: <the ETag it read>`, so of two runs racing to take over exactly one wins. A
  run that cannot renew (taken over, or S3 unreachable for two thirds of the lease) marks the
  lock lost, and `check()`, which the writer calls between commits, raises. Expiry compares
  the holder's `expires_at` with the taker's clock: hosts' clocks must agree to well within a
  lease (NTP does). This needs S3's conditional writes (AWS since 2024; MinIO and R2 too).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from ogsync.destinations.errors import AlreadyRunning, DestinationError
from ogsync.destinations.s3_client import s3_client

__all__ = ["LOCK_NAME", "WriterLock", "acquire"]

log = logging.getLogger("ogsync.lakehouse")

LOCK_NAME = "_ogsync.lock"
PRECONDITION_FAILED = "PreconditionFailed"
NO_SUCH_KEY = ("NoSuchKey", "404", "NotFound")
# S3 answers 409 when two conditional writes to one key overlap: the loser may try again.
CONFLICT = "ConditionalRequestConflict"
# Attempts at the lock object when others keep changing it under us.
ACQUIRE_ATTEMPTS = 5
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class WriterLock(ABC):
    """A run's hold on a lakehouse, from `acquire` until `release`."""

    def __init__(self, location: str) -> None:
        self.location = location

    @abstractmethod
    def check(self) -> None:
        """Raise DestinationError if this run may no longer write (its lock was lost)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock back (again: nothing happens)."""

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def acquire(location: str, *, lease_seconds: float = 60.0) -> WriterLock:
    """Take the one-writer lock of the lakehouse at `location` (a folder or `s3://bucket/prefix`).

    Raises AlreadyRunning if another run holds it, DestinationError if it cannot be taken.
    `lease_seconds` matters on S3 only: how long a dead holder blocks the next run.
    """
    if location.startswith("s3://"):
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        return _acquire_s3(location, lease_seconds)
    if "://" in location:
        raise DestinationError(
            f"cannot lock the lakehouse {location}: only a local folder or s3:// is supported"
        )
    return _acquire_local(location)


# -- what a holder writes into the lock -------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class _Holder:
    owner: str | None
    host: str | None
    pid: int | None
    expires_at: datetime | None

    def who(self) -> str:
        pid = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        return f"{pid} on {self.host or 'an unknown host'}"


def _parse_holder(raw: bytes) -> _Holder | None:
    """The holder a lock file or object names (None: unreadable, e.g. half written)."""
    try:
        data = json.loads(raw)
        expires = data.get("expires_at")
        pid = data.get("pid")
        return _Holder(
            owner=data.get("owner"),
            host=data.get("host"),
            pid=int(pid) if pid is not None else None,
            expires_at=_as_utc(datetime.fromisoformat(expires)) if expires else None,
        )
    except (ValueError, TypeError, AttributeError):
        return None


def _as_utc(moment: datetime) -> datetime:
    # A stamp without a zone (written by hand, say) is read as UTC, as ours are.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _holder_body(owner: str, acquired_at: datetime, lease_seconds: float | None) -> bytes:
    now = _now()
    data: dict[str, Any] = {
        "owner": owner,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "acquired_at": _stamp(acquired_at),
        "renewed_at": _stamp(now),  # also makes each renewal's ETag new
    }
    if lease_seconds is not None:
        data["expires_at"] = _stamp(now + timedelta(seconds=lease_seconds))
    return json.dumps(data).encode()


# -- a local folder ---------------------------------------------------------------------------


class _LocalLock(WriterLock):
    def __init__(self, location: str, fd: int) -> None:
        super().__init__(location)
        self._fd: int | None = fd

    def check(self) -> None:
        # The kernel holds a flock for as long as the file stays open: it cannot be lost.
        if self._fd is None:
            raise DestinationError(f"the writer lock of the lakehouse {self.location} was released")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # a stale pid in the file would only mislead
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor drops the flock


def _acquire_local(location: str) -> _LocalLock:
    path = Path(location) / LOCK_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # CLOEXEC: a program this run starts (dbt, say) must not keep the lock after we exit.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DestinationError(f"cannot create the writer lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _parse_holder(os.pread(fd, 4096, 0))
        os.close(fd)
        who = f" ({holder.who()})" if holder else ""
        raise AlreadyRunning(
            f"another ogsync run{who} is writing the lakehouse {location}:"
            " wait for it to finish, or stop it"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise DestinationError(f"cannot lock {path}: {exc.strerror}") from None
    body = _holder_body(uuid.uuid4().hex, _now(), None)
    with contextlib.suppress(OSError):  # the lock holds without its note
        os.ftruncate(fd, 0)
        os.pwrite(fd, body, 0)
    return _LocalLock(location, fd)


# -- S3 ---------------------------------------------------------------------------------------


class _TakenOver(Exception):
    """Someone else wrote or deleted the lock object: the lease is no longer ours."""


def _split_s3(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    if not bucket:
        raise DestinationError(f"cannot lock the lakehouse {location}: the URL names no bucket")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/{LOCK_NAME}" if prefix else LOCK_NAME


def _scrub(text: str) -> str:
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _failure(what: str, bucket: str, key: str, exc: Exception) -> DestinationError:
    """A one-line error naming the object and S3's answer (never the request's credentials)."""
    code = _code(exc)
    if code:
        status = _status(exc)
        reason = f"{code} (HTTP {status})" if status else code
    else:  # no answer from S3: botocore says why (endpoint, timeout, missing credentials)
        reason = f"{type(exc).__name__}: {exc}"
    return DestinationError(_scrub(f"cannot {what} the writer lock s3://{bucket}/{key}: {reason}"))


def _s3_client(lease_seconds: float) -> Any:
    from botocore.config import Config  # the lakehouse extra: only S3 locations need it

    # A request must give up well within a lease, or a hung renewal would outlive it.
    timeout = min(10.0, max(2.0, lease_seconds / 3))
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return s3_client(region_name=region, config=config)


@dataclass
class _Target:
    client: Any
    bucket: str
    key: str

    def put(self, body: bytes, **condition: str) -> str:
        answer = self.client.put_object(
            Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json", **condition
        )
        return str(answer["ETag"])

    def read(self) -> tuple[bytes, str] | None:
        """The object's body and ETag (None: there is none)."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if _code(exc) in NO_SUCH_KEY:
                return None
            raise
        return answer["Body"].read(), str(answer["ETag"])

    def head_etag(self) -> str | None:
        try:
            return str(self.client.head_object(Bucket=self.bucket, Key=self.key)["ETag"])
        except Exception as exc:
            if _code(exc) in NO_SUCH_KEY:
                return None
            raise


@dataclass(frozen=True)
class _Taken:
    """The lock object as this run wrote it when taking it."""

    owner: str
    etag: str
    acquired_at: datetime
    sent: float  # time.monotonic() before the put: the lease runs from no earlier


class _S3Lock(WriterLock):
    def __init__(self, location: str, target: _Target, taken: _Taken, lease_seconds: float) -> None:
        super().__init__(location)
        self._target = target
        self._owner = taken.owner
        self._lease = lease_seconds
        self._acquired_at = taken.acquired_at
        self._guard = threading.Lock()  # etag, safe_until and lost, shared with the thread
        self._etag = taken.etag
        self._safe_until = taken.sent + self._margin_after(lease_seconds)
        self._lost: str | None = None
        self._released = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"ogsync-lock {location}", daemon=True
        )
        self._thread.start()

    # -- the writer's side

    def check(self) -> None:
        with self._guard:
            lost, safe_until, released = self._lost, self._safe_until, self._released
        if released:
            raise DestinationError(f"the writer lock of the lakehouse {self.location} was released")
        if lost is None and time.monotonic() >= safe_until:
            lost = "it could not be renewed in time"  # the thread may be stuck in a request
        if lost is not None:
            raise DestinationError(
                f"this run lost its writer lock on the lakehouse {self.location} ({lost}):"
                " stopping so that two runs never write it at once"
            )

    def release(self) -> None:
        with self._guard:
            if self._released:
                return
            self._released = True
        self._stop.set()
        self._thread.join(timeout=30)
        with self._guard:
            lost, etag = self._lost, self._etag
        if lost is None:
            self._delete_if_ours(etag)

    def _delete_if_ours(self, etag: str) -> None:
        target = self._target
        try:
            # The HEAD first: a server that ignores If-Match on DELETE must not make us
            # delete a lock another run has taken over since.
            if target.head_etag() != etag:
                return
            target.client.delete_object(Bucket=target.bucket, Key=target.key, IfMatch=etag)
        except Exception as exc:
            if _code(exc) in (PRECONDITION_FAILED, *NO_SUCH_KEY):
                return  # taken over or gone meanwhile: not ours to delete
            # The lease will lapse by itself; the next run waits for it at most.
            log.warning("%s", _failure("delete", target.bucket, target.key, exc))

    # -- the renewing thread

    def _renew_loop(self) -> None:
        interval = self._lease / 3
        while not self._stop.wait(interval):
            sent = time.monotonic()
            try:
                self._renew()
            except _TakenOver:
                self._mark_lost("another run took it over")
                return
            except Exception as exc:
                with self._guard:
                    safe_until = self._safe_until
                failure = _failure("renew", self._target.bucket, self._target.key, exc)
                if time.monotonic() >= safe_until:
                    self._mark_lost(f"could not renew it: {failure}")
                    return
                log.warning("%s; trying again", failure)
                continue
            with self._guard:
                self._safe_until = sent + self._margin_after(self._lease)

    @staticmethod
    def _margin_after(lease_seconds: float) -> float:
        # How long after a renewal was sent this run may go on writing: two thirds of the
        # lease, so that it stops a third of a lease before anyone else may take over (the
        # lease counts from when S3 stored the renewal, which is later than `sent`).
        return lease_seconds * 2 / 3

    def _renew(self) -> None:
        with self._guard:
            etag = self._etag
        body = _holder_body(self._owner, self._acquired_at, self._lease)
        try:
            new_etag = self._target.put(body, IfMatch=etag)
        except Exception as exc:
            if _code(exc) not in (PRECONDITION_FAILED, *NO_SUCH_KEY):
                raise
            # A retried request whose first try got through also fails its If-Match: the
            # object is still ours if it names us.
            new_etag = self._own_etag()
        with self._guard:
            self._etag = new_etag

    def _own_etag(self) -> str:
        found = self._target.read()
        holder = _parse_holder(found[0]) if found else None
        if found is None or holder is None or holder.owner != self._owner:
            raise _TakenOver
        return found[1]

    def _mark_lost(self, reason: str) -> None:
        with self._guard:
            self._lost = reason
        log.error("lost the writer lock of the lakehouse %s: %s", self.location, reason)


def _acquire_s3(location: str, lease_seconds: float) -> _S3Lock:
    bucket, key = _split_s3(location)
    target = _Target(_s3_client(lease_seconds), bucket, key)
    owner = uuid.uuid4().hex
    acquired_at = _now()
    for _ in range(ACQUIRE_ATTEMPTS):
        sent = time.monotonic()
        try:
            etag = _try_take(location, target, owner, acquired_at, lease_seconds)
        except DestinationError:  # AlreadyRunning too: already one line for the user
            raise
        except Exception as exc:
            raise _failure("take", bucket, key, exc) from None
        if etag is not None:
            return _S3Lock(location, target, _Taken(owner, etag, acquired_at, sent), lease_seconds)
    raise AlreadyRunning(
        f"other ogsync runs keep taking the writer lock of the lakehouse {location}:"
        " try again when they have finished"
    )


def _try_take(
    location: str, target: _Target, owner: str, acquired_at: datetime, lease_seconds: float
) -> str | None:
    """Our ETag once the lock is ours; None when it changed under us (look again)."""
    body = _holder_body(owner, acquired_at, lease_seconds)
    try:
        return target.put(body, IfNoneMatch="*")
    except Exception as exc:
        if _code(exc) not in (PRECONDITION_FAILED, CONFLICT):
            raise
    found = target.read()
    if found is None:
        return None  # released since: try creating it again
    raw, etag = found
    holder = _parse_holder(raw)
    if holder is not None and holder.owner == owner:
        return etag  # our own put, retried after its answer was lost
    holder = _expired_holder(location, target, holder)
    try:
        etag = target.put(body, IfMatch=etag)
    except Exception as exc:
        if _code(exc) in (PRECONDITION_FAILED, CONFLICT, *NO_SUCH_KEY):
            return None  # renewed, taken over or released meanwhile
        raise
    log.warning(
        "took over the writer lock of the lakehouse %s from %s, whose lease expired at %s",
        location,
        holder.who(),
        holder.expires_at,
    )
    return etag


def _expired_holder(location: str, target: _Target, holder: _Holder | None) -> _Holder:
    """The holder, if its lease has expired; else AlreadyRunning, saying who holds it."""
    if holder is None or holder.expires_at is None:
        raise AlreadyRunning(
            f"the writer lock s3://{target.bucket}/{target.key} of the lakehouse {location} is"
            " unreadable: if no ogsync run is writing it, delete that object"
        )
    now = _now()
    if holder.expires_at > now:
        left = (holder.expires_at - now).total_seconds()
        raise AlreadyRunning(
            f"another ogsync run ({holder.who()}) is writing the lakehouse {location}: its lease"
            f" expires at {holder.expires_at:%Y-%m-%d %H:%M:%S} UTC (in {left:.0f} s) unless it"
            " renews it"
        )
    return holder
