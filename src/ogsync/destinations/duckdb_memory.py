"""DuckDB's memory limit, raised when a statement needs more rather than failing a sync.

The embedded warehouse keeps its primary-key indexes in memory, and a lakehouse writer's
working DuckDB keeps its key index within a small limit: either can meet a merchant larger
than its limit allows, and then gets more memory, up to most of the machine's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

import duckdb

log = logging.getLogger("ogsync.duckdb")
T = TypeVar("T")

UNITS = {"b": 1, "bytes": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
# The share of the machine's memory beyond which the limit is not raised.
CEILING = 0.8


def setting_bytes(setting: str) -> int | None:
    """DuckDB's memory setting ("244.1 MiB") in bytes."""
    number, _, unit = setting.strip().partition(" ")
    try:
        return int(float(number) * UNITS[unit.strip().lower() or "b"])
    except (KeyError, ValueError):
        return None


def with_memory(conn: duckdb.DuckDBPyConnection, action: Callable[[], T]) -> T:
    """Run `action`; if DuckDB runs out of memory, raise its limit and run it again.

    `action` must be safe to run again after it failed: a transaction that rolled back, or
    statements whose repetition changes nothing.
    """
    while True:
        try:
            return action()
        except duckdb.Error as exc:
            if not out_of_memory(exc) or not raise_memory_limit(conn):
                raise


# How DuckDB's buffer manager says it has no memory left, in whatever exception carries it.
NO_MEMORY = ("could not allocate block", "failed to pin block")


def out_of_memory(exc: duckdb.Error) -> bool:
    """DuckDB ran out of memory: in a statement, or in a commit, which tells it as a failed
    transaction (a plain INSERT into a keyed table adds its keys to the index then), and has
    rolled the transaction back."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    return isinstance(exc, duckdb.TransactionException) and any(m in str(exc) for m in NO_MEMORY)


def keep_headroom(conn: duckdb.DuckDBPyConnection) -> None:
    """Before a checkpoint: DuckDB fails one that runs out of memory fatally, closing the
    database for the rest of the run, where a statement's would only raise an error to run
    again with more. So the key indexes, which a checkpoint holds in memory whole (the rows
    not yet in the file can go to a scratch file), are kept under half the limit, raising it
    while they are not. (Plain INSERTs into keyed tables meet the limit nowhere else
    first.)"""
    (pinned,) = conn.execute(  # type: ignore[misc]
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'ART_INDEX'"
    ).fetchone()
    while (limit := memory_limit(conn)) is not None and pinned * 2 > limit:
        if not raise_memory_limit(conn):
            return


def memory_limit(conn: duckdb.DuckDBPyConnection) -> int | None:
    """DuckDB's memory limit in bytes."""
    (setting,) = conn.execute("SELECT current_setting('memory_limit')").fetchone()  # type: ignore[misc]
    return setting_bytes(setting)


def raise_memory_limit(conn: duckdb.DuckDBPyConnection) -> bool:
    """Double the limit, up to the ceiling; False when it is there already."""
    now = memory_limit(conn)
    ceiling = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * CEILING)
    if now is None or now >= ceiling:
        return False
    raised = min(now * 2, ceiling) // 2**20
    log.warning("DuckDB needed more memory: limit raised from %d to %d MiB", now // 2**20, raised)
    conn.execute(f"SET memory_limit = '{raised}MiB'")
    return True
