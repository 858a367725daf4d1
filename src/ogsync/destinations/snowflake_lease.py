"""Who may write a schema in Snowflake: leases in `_ogsync_leases`, renewed while held.

Snowflake has no advisory locks and no session-bound lock a crash would release, so a run
takes a lease row (the whole schema, or, for a run that claims some endpoints, the schema
shared and each claimed endpoint alone, as PostgreSQL's advisory locks do), and a thread
renews it on its own session every quarter of its length. A run that dies stops renewing; its
lease lapses after `lease_seconds` (120 unless the URL says), and the next run takes over.

Two runs starting at once take turns: each acquisition first updates the table's one mutex
row, and Snowflake holds that row's lock until the acquisition commits, so the second reads
the first's lease once it may go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ogsync.destinations.errors import AlreadyRunning

log = logging.getLogger("ogsync.snowflake")

LEASES_TABLE = "_ogsync_leases"
MUTEX = "*"  # the row every acquisition updates first
SCHEMA = "schema"  # the lease on the whole schema; other names are endpoints
EXCLUSIVE, SHARED = "exclusive", "shared"

# Runs one statement on a session: (sql, params) -> (rows, rowcount).
Run = Callable[[str, Sequence[Any]], tuple[list[tuple], int]]


@dataclass(frozen=True)
class Held:
    holder: str
    name: str
    mode: str
    host: str | None
    pid: int | None
    session_id: str | None
    expired: bool


def wanted(claims: Sequence[str] | None) -> list[tuple[str, str]]:
    """The leases a run needs: the schema alone, or the schema shared and its endpoints."""
    if claims is None:
        return [(SCHEMA, EXCLUSIVE)]
    return [(SCHEMA, SHARED), *((name, EXCLUSIVE) for name in claims)]


def conflicts(mine: Sequence[tuple[str, str]], theirs: Held) -> bool:
    for name, mode in mine:
        if name == SCHEMA and theirs.name == SCHEMA:
            if EXCLUSIVE in (mode, theirs.mode):
                return True
        elif name == SCHEMA:  # their endpoint: only a run holding the whole schema minds
            if mode == EXCLUSIVE:
                return True
        elif name == theirs.name:  # the same endpoint
            return True
    return False


class Lease:
    """A run's hold on a schema: taken at open, renewed by a thread, given back at close."""

    def __init__(
        self,
        table: str,
        holder: str,
        claims: Sequence[str] | None,
        seconds: int,
        open_session: Callable[[], tuple[Run, Callable[[], None]]],
        describe: str,
    ) -> None:
        self.table = table  # qualified and quoted
        self.holder = holder
        self.rows = wanted(claims)
        self.seconds = seconds
        self._open_session = open_session  # a session of its own for renewals
        self._describe = describe  # what is held, for messages: "schema x on <url>"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # another run took over after this lease lapsed

    def acquire(self, run: Run, session_id: str | None) -> list[str]:
        """Take the lease, or raise AlreadyRunning; returns the sessions of lapsed holders, whose
        transactions the caller may abort (they would hold their locks until Snowflake does)."""
        run(
            f"CREATE TABLE IF NOT EXISTS {self.table} (name VARCHAR, holder VARCHAR, "
            "mode VARCHAR, host VARCHAR, pid BIGINT, session_id VARCHAR, "
            "acquired_at TIMESTAMP_TZ, expires_at TIMESTAMP_TZ)",
            [],
        )
        run(
            f"INSERT INTO {self.table} (name, holder, mode) SELECT ?, '', 'mutex' "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.table} WHERE name = ?)",
            [MUTEX, MUTEX],
        )
        run("BEGIN", [])
        try:
            run(f"UPDATE {self.table} SET expires_at = CURRENT_TIMESTAMP() WHERE name = ?", [MUTEX])
            rows, _ = run(
                "SELECT holder, name, mode, host, pid, session_id, "
                f"expires_at < CURRENT_TIMESTAMP() FROM {self.table} WHERE name <> ?",
                [MUTEX],
            )
            held = [Held(*row) for row in rows]
            live = [h for h in held if not h.expired and h.holder != self.holder]
            blocking = [h for h in live if conflicts(self.rows, h)]
            if blocking:
                raise AlreadyRunning(self._refusal(blocking[0]))
            run(
                f"DELETE FROM {self.table} WHERE name <> ? AND "
                "(expires_at < CURRENT_TIMESTAMP() OR holder = ?)",
                [MUTEX, self.holder],
            )
            values = ", ".join(
                f"(?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP(), {self._expiry()})" for _ in self.rows
            )
            params: list[Any] = []
            for name, mode in self.rows:
                params += [name, self.holder, mode, socket.gethostname(), os.getpid(), session_id]
            run(
                f"INSERT INTO {self.table} (name, holder, mode, host, pid, session_id, "
                f"acquired_at, expires_at) VALUES {values}",
                params,
            )
            run("COMMIT", [])
        except BaseException:
            with contextlib.suppress(Exception):
                run("ROLLBACK", [])
            raise
        lapsed = {h.session_id for h in held if h.expired and h.session_id}
        return sorted(lapsed - {session_id})

    def _expiry(self) -> str:
        return f"DATEADD(second, {int(self.seconds)}, CURRENT_TIMESTAMP())"

    def _refusal(self, other: Held) -> str:
        who = f"host {other.host}, PID {other.pid}" if other.host else "another host"
        return (
            f"another ogsync process ({who}) is syncing {self._describe}; wait for it to "
            f"finish (a process that died gives up its hold {self.seconds} s after its last "
            "renewal)"
        )

    def moved(self, run: Run, session_id: str | None) -> None:
        """The run continues on a new session: the lease names it (and the old one's locks)."""
        run(f"UPDATE {self.table} SET session_id = ? WHERE holder = ?", [session_id, self.holder])

    # -- renewal ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="ogsync lease", daemon=True)
        self._thread.start()

    def renew(self, run: Run) -> None:
        _, count = run(
            f"UPDATE {self.table} SET expires_at = {self._expiry()} WHERE holder = ?",
            [self.holder],
        )
        if count == 0:
            self.lost = True  # it lapsed, and another run took the schema over

    def _renew(self) -> None:
        session: tuple[Run, Callable[[], None]] | None = None
        try:
            while not self.lost and not self._stop.wait(self.seconds / 4):
                try:
                    if session is None:
                        session = self._open_session()
                    self.renew(session[0])
                except Exception as exc:  # the next beat tries again, on a new session
                    log.warning("could not renew the hold on %s: %s", self._describe, exc)
                    if session is not None:
                        with contextlib.suppress(Exception):
                            session[1]()
                    session = None
        finally:
            if session is not None:
                with contextlib.suppress(Exception):
                    session[1]()

    def check(self) -> None:
        """Raise if another run has taken over: nothing more may be committed."""
        if self.lost:
            raise AlreadyRunning(
                f"this run's hold on {self._describe} lapsed (no renewal for {self.seconds} s) "
                "and another ogsync process took over; it stops here"
            )

    def release(self, run: Run | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if run is not None and not self.lost:
            with contextlib.suppress(Exception):  # else it lapses by itself
                run(f"DELETE FROM {self.table} WHERE holder = ?", [self.holder])
