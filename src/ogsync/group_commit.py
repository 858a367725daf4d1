"""One thread owns a connection; callers queue work on it and wait on futures.

Both the sync's loader (batches into the warehouse) and the webhook inbox (events into SQLite
or PostgreSQL) need the same thing: a single writer, since their connections are not shared
between threads, and group commit, since one transaction for many waiting writes costs about
what one write costs (a disk flush, a round trip). Writes queued while a commit is in flight
are committed together by the next one, each still answered on its own future. Should a group
fail, each write is committed alone, so only the one at fault fails.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger("ogsync.group_commit")

W = TypeVar("W")  # what a write carries
R = TypeVar("R")  # what a write answers
T = TypeVar("T")


class WriterClosed(RuntimeError):
    """The writer was closed; nothing more can be queued on it."""


@dataclass
class _Write(Generic[W, R]):
    item: W
    future: Future[R]


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


_STOP = object()


class GroupCommitWriter(Generic[W, R]):
    """Runs `commit(writes) -> answers` (one transaction, answers in order) and plain calls
    on one thread, in the order they were queued; consecutive writes, up to `max_group`,
    form one group. A caller that gave up cancels its future, and its job is skipped if it
    has not begun. With `idle`, the thread calls it once no job has come for `idle_after`
    seconds (housekeeping that would otherwise wait for the end)."""

    def __init__(
        self,
        commit: Callable[[list[W]], Sequence[R]],
        *,
        name: str,
        max_group: int,
        closed_error: Callable[[], Exception] = lambda: WriterClosed("the writer is closed"),
        idle: Callable[[], None] | None = None,
        idle_after: float = 0.05,
    ) -> None:
        self._commit = commit
        self.max_group = max_group
        self._closed_error = closed_error
        self._idle = idle
        self._idle_after = idle_after
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self.commits = 0  # groups committed (for metrics, tests and benchmarks)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def write(self, item: W) -> Future[R]:
        future: Future[R] = Future()
        self._queue(_Write(item, future))
        return future

    def call(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue(_Call(fn, future))
        return future

    @property
    def alive(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def close(self) -> None:
        """Finish what was queued, then stop the thread; later jobs fail with the closed
        error (writes that raced the close are still committed)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._jobs.put(_STOP)
        self._thread.join()

    def _queue(self, job: _Write[W, R] | _Call) -> None:
        if self._closed:
            raise self._closed_error()
        self._jobs.put(job)

    # -- the thread

    def _run(self) -> None:
        held = None
        while True:
            job = held if held is not None else self._next()
            held = None
            if job is _STOP:
                break
            if isinstance(job, _Call):
                if job.future.set_running_or_notify_cancel():
                    _settle(job.future, job.fn)
                continue
            group = [job]
            while len(group) < self.max_group:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Write):
                    held = more  # keeps its place after the group
                    break
                group.append(more)
            self._write([w for w in group if w.future.set_running_or_notify_cancel()])
        self._drain()

    def _next(self) -> Any:
        if self._idle is None:
            return self._jobs.get()
        try:
            return self._jobs.get(timeout=self._idle_after)
        except queue.Empty:
            pass
        try:
            self._idle()
        except Exception as exc:  # housekeeping only: the next commit says if it matters
            log.warning("housekeeping failed: %s", exc)
        return self._jobs.get()

    def _drain(self) -> None:
        """Jobs that raced the close: writes are committed, calls refused."""
        rest = []
        with contextlib.suppress(queue.Empty):
            while True:
                job = self._jobs.get_nowait()
                if job is not _STOP and job.future.set_running_or_notify_cancel():
                    rest.append(job)
        self._write([job for job in rest if isinstance(job, _Write)])
        for job in rest:
            if isinstance(job, _Call):
                job.future.set_exception(self._closed_error())

    def _write(self, group: list[_Write[W, R]]) -> None:
        if not group:
            return
        try:
            answers = self._commit([w.item for w in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            log.warning("a group of %d writes failed (%s); writing each alone", len(group), exc)
            for w in group:
                self._write([w])
            return
        self.commits += 1
        for w, answer in zip(group, answers, strict=True):
            w.future.set_result(answer)


def _settle(future: Future[Any], job: Callable[[], Any]) -> None:
    try:
        future.set_result(job())
    except BaseException as exc:
        future.set_exception(exc)
