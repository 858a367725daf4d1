"""The one-writer lock of a lakehouse: flock on a local folder, a renewed lease on S3 (moto)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from ogsync.destinations.errors import AlreadyRunning, DestinationError
from ogsync.destinations.lakehouse_lock import LOCK_NAME, WriterLock, acquire
from ogsync.testing.s3 import S3Server, s3_server

# A child process that takes the lock, says so, and holds it until its stdin has a line; then
# it reports what check() says and exits.
HOLDER = """
import sys
from ogsync.destinations.lakehouse_lock import acquire
lock = acquire(sys.argv[1], lease_seconds=float(sys.argv[2]))
print("held", flush=True)
sys.stdin.readline()
try:
    lock.check()
    print("ok", flush=True)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", flush=True)
"""

# A child process that tries the lock once and reports what happened.
CONTENDER = """
import sys
from ogsync.destinations.errors import AlreadyRunning
from ogsync.destinations.lakehouse_lock import acquire
try:
    acquire(sys.argv[1]).release()
except AlreadyRunning as exc:
    print(f"refused: {exc}", flush=True)
else:
    print("acquired", flush=True)
"""


def _python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *args]


def _contend(location: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        _python(CONTENDER, location), capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Holder:
    """A child process holding the lock of `location`."""

    def __init__(self, location: str, lease: float = 60.0, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            _python(HOLDER, location, str(lease)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "held", self.proc.stderr.read() if self.proc.stderr else line

    def check_result(self) -> str:
        """What the child's check() says now."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def holders() -> Iterator[Callable[..., Holder]]:
    started: list[Holder] = []

    def start(location: str, lease: float = 60.0, env: dict[str, str] | None = None) -> Holder:
        started.append(Holder(location, lease, env))
        return started[-1]

    yield start
    for holder in started:
        holder.close()


# -- a local folder ---------------------------------------------------------------------------


def test_local_lock_refuses_another_process_until_released(tmp_path: Path) -> None:
    location = str(tmp_path / "lake" / "ordergroove")  # parents made as needed
    lock = acquire(location)
    try:
        answer = _contend(location)
        assert answer.startswith("refused: another ogsync run")
        assert f"pid {os.getpid()} on {socket.gethostname()}" in answer
        assert location in answer
        assert "\n" not in answer
        lock.check()  # held: nothing to say
    finally:
        lock.release()
    lock.release()  # again: nothing happens
    assert _contend(location) == "acquired"
    with pytest.raises(DestinationError, match="released"):
        lock.check()


def test_local_lock_refuses_a_second_acquire_in_the_same_process(tmp_path: Path) -> None:
    with acquire(str(tmp_path)), pytest.raises(AlreadyRunning):
        acquire(str(tmp_path))
    acquire(str(tmp_path)).release()


def test_local_lock_is_freed_when_its_holder_is_killed(
    tmp_path: Path, holders: Callable[..., Holder]
) -> None:
    location = str(tmp_path)
    holder = holders(location)
    with pytest.raises(AlreadyRunning, match=f"pid {holder.proc.pid} on"):
        acquire(location)
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(timeout=30)
    acquire(location).release()
    assert (tmp_path / LOCK_NAME).exists()  # the file stays: see the module's docstring


def test_other_schemes_are_refused() -> None:
    with pytest.raises(DestinationError, match="only a local folder or s3://"):
        acquire("gs://bucket/lake")


# -- S3 ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's variables set for this test (the lock's boto3 reads them); returns them."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return {**os.environ}


@pytest.fixture
def lake(s3: S3Server, s3_env: dict[str, str]) -> str:
    return f"s3://{s3.new_bucket()}/lake/ordergroove"


def _lock_key(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, f"{prefix}/{LOCK_NAME}"


def _read_lock(s3: S3Server, location: str) -> dict[str, Any]:
    bucket, key = _lock_key(location)
    return json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _forge(s3: S3Server, location: str, expires_in: float, owner: str = "forged") -> None:
    """Write a lock object as another run would have (unconditionally)."""
    now = datetime.now(UTC)
    body = {
        "owner": owner,
        "host": "elsewhere",
        "pid": 4242,
        "acquired_at": (now - timedelta(hours=1)).isoformat(),
        "expires_at": (now + timedelta(seconds=expires_in)).isoformat(),
    }
    bucket, key = _lock_key(location)
    s3.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())


def _wait_until_raises(lock: WriterLock, within: float) -> DestinationError:
    deadline = time.monotonic() + within
    while True:
        try:
            lock.check()
        except DestinationError as exc:
            return exc
        assert time.monotonic() < deadline, "check() still passes"
        time.sleep(0.05)


def _acquire_when_free(location: str, within: float) -> WriterLock:
    deadline = time.monotonic() + within
    while True:
        try:
            return acquire(location, lease_seconds=1.0)
        except AlreadyRunning:
            assert time.monotonic() < deadline, "the lock was never freed"
            time.sleep(0.1)


def test_s3_first_wins_and_the_second_is_refused_until_release(s3: S3Server, lake: str) -> None:
    lock = acquire(lake, lease_seconds=30)
    try:
        mine = _read_lock(s3, lake)
        assert mine["pid"] == os.getpid() and mine["host"] == socket.gethostname()
        with pytest.raises(AlreadyRunning) as refused:
            acquire(lake, lease_seconds=30)
        message = str(refused.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert lake in message and "expires at" in message and "\n" not in message
        lock.check()
    finally:
        lock.release()
    bucket, key = _lock_key(lake)
    assert s3.client().list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0
    lock.release()  # again: nothing happens
    acquire(lake, lease_seconds=30).release()


def test_s3_lock_at_the_bucket_root(s3: S3Server, s3_env: dict[str, str]) -> None:
    bucket = s3.new_bucket()
    with acquire(f"s3://{bucket}", lease_seconds=30):
        s3.client().head_object(Bucket=bucket, Key=LOCK_NAME)
        with pytest.raises(AlreadyRunning):
            acquire(f"s3://{bucket}/", lease_seconds=30)


def test_s3_lease_is_renewed_while_held(s3: S3Server, lake: str) -> None:
    with acquire(lake, lease_seconds=1.0) as lock:
        first = _read_lock(s3, lake)["expires_at"]
        time.sleep(1.5)  # longer than the lease: only renewals keep it
        lock.check()
        assert _read_lock(s3, lake)["expires_at"] > first
        with pytest.raises(AlreadyRunning):
            acquire(lake, lease_seconds=1.0)


def test_s3_expired_lock_is_taken_over(s3: S3Server, lake: str) -> None:
    _forge(s3, lake, expires_in=-5)
    with acquire(lake, lease_seconds=30) as lock:
        assert _read_lock(s3, lake)["pid"] == os.getpid()
        lock.check()


def test_s3_paused_holder_loses_its_lock_to_the_next_run(
    s3: S3Server, lake: str, s3_env: dict[str, str], holders: Callable[..., Holder]
) -> None:
    holder = holders(lake, 1.0, s3_env)
    with pytest.raises(AlreadyRunning, match=f"pid {holder.proc.pid} on"):
        acquire(lake, lease_seconds=1.0)
    holder.proc.send_signal(signal.SIGSTOP)  # a run frozen mid-write: it stops renewing
    try:
        lock = _acquire_when_free(lake, within=3.0)  # once its lease has run out
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    with lock:
        time.sleep(0.5)  # the old holder's renewal comes due, and must fail
        answer = holder.check_result()
        assert answer.startswith("DestinationError: this run lost its writer lock"), answer
        lock.check()
        assert _read_lock(s3, lake)["pid"] == os.getpid()


def test_s3_holder_whose_lock_was_overwritten_stops(s3: S3Server, lake: str) -> None:
    lock = acquire(lake, lease_seconds=1.5)
    try:
        _forge(s3, lake, expires_in=60, owner="usurper")
        lost = _wait_until_raises(lock, within=1.5)
        assert "lost its writer lock" in str(lost) and "took it over" in str(lost)
    finally:
        lock.release()
    assert _read_lock(s3, lake)["owner"] == "usurper"  # release left the other's lock alone


def test_s3_holder_that_cannot_reach_s3_stops_before_its_lease_ends(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with s3_server() as gone:
        for name, value in gone.env().items():
            monkeypatch.setenv(name, value)
        lake = f"s3://{gone.new_bucket()}/lake"
        lock = acquire(lake, lease_seconds=1.5)
        started = time.monotonic()
    try:  # the server has stopped: every renewal fails
        lost = _wait_until_raises(lock, within=1.5)
        assert time.monotonic() - started < 1.4  # before anyone else could take over
        assert "lost its writer lock" in str(lost)
        assert gone.secret_key not in str(lost) and gone.access_key not in str(lost)
    finally:
        lock.release()  # the delete fails too: logged, not raised


def _race(location: str, racers: int) -> tuple[list[WriterLock], list[AlreadyRunning]]:
    """`racers` threads acquiring the lock at once: the locks won, and the refusals."""
    start = threading.Barrier(racers)
    won: list[WriterLock] = []
    refused: list[AlreadyRunning] = []

    def race() -> None:
        start.wait()
        try:
            won.append(acquire(location, lease_seconds=30))
        except AlreadyRunning as exc:
            refused.append(exc)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won, refused


def test_s3_racing_takers_of_an_expired_lock_exactly_one_wins(s3: S3Server, lake: str) -> None:
    racers = 6
    for _ in range(3):
        _forge(s3, lake, expires_in=-5)
        won, refused = _race(lake, racers)
        try:
            assert (len(won), len(refused)) == (1, racers - 1)
            assert _read_lock(s3, lake)["owner"] != "forged"
        finally:
            for lock in won:
                lock.release()


def test_s3_unreadable_lock_is_not_taken_over(s3: S3Server, lake: str) -> None:
    bucket, key = _lock_key(lake)
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"not json")
    with pytest.raises(AlreadyRunning, match="unreadable: if no ogsync run is writing it"):
        acquire(lake, lease_seconds=30)


def test_s3_errors_name_the_object_but_no_secret(s3: S3Server, lake: str) -> None:
    errors: list[DestinationError] = []
    with acquire(lake, lease_seconds=30), pytest.raises(AlreadyRunning) as refused:
        acquire(lake, lease_seconds=30)
    errors.append(refused.value)
    with pytest.raises(DestinationError) as missing:
        acquire("s3://ogsync-no-such-bucket/lake", lease_seconds=30)
    errors.append(missing.value)
    message = str(missing.value)
    assert "s3://ogsync-no-such-bucket/lake/_ogsync.lock" in message and "NoSuchBucket" in message
    for error in errors:
        assert s3.secret_key not in str(error)
        assert s3.access_key not in str(error)


def test_s3_stand_in_lets_writers_by_a_client_stopped_mid_request(s3: S3Server, lake: str) -> None:
    """A client stopped between its request's head and its body (the paused-holder test sends
    SIGSTOP at any moment) must not hold up other writers, as it would not on S3."""
    bucket = lake.removeprefix("s3://").split("/")[0]
    where = urlsplit(s3.endpoint_url)
    stalled = socket.create_connection((where.hostname, where.port), timeout=5)
    try:
        stalled.sendall(
            f"PUT /{bucket}/stalled HTTP/1.1\r\nHost: {where.netloc}\r\n"
            "Content-Length: 10\r\n\r\n".encode()
        )  # and no body yet
        time.sleep(0.2)  # the server has the head
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
            config=Config(read_timeout=2, retries={"max_attempts": 1}),
        )
        client.put_object(Bucket=bucket, Key="other", Body=b"written")
        assert client.get_object(Bucket=bucket, Key="other")["Body"].read() == b"written"
    finally:
        stalled.close()
