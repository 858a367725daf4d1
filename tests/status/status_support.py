"""Helpers for status and metrics tests: real syncs into DuckDB, and `ogsync` as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from ogsync.apitime import zone
from ogsync.client import OrdergrooveClient, RateBudget, RetryPolicy
from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoints import Endpoint, select
from ogsync.simulator.server import RunningSimulator
from ogsync.sync import SyncEngine, SyncOptions, SyncResult

FAST_RETRY = RetryPolicy(max_attempts=4, base_seconds=0.005, cap_seconds=0.05)
DEFAULT_ENDPOINTS = select(None)


def sync_into(
    sim: RunningSimulator, db: Path, endpoints: Sequence[Endpoint] = DEFAULT_ENDPOINTS
) -> SyncResult:
    """One real sync of `endpoints` from the simulator into the DuckDB file `db`."""
    destination = DuckDBDestination(f"duckdb:///{db}", "ordergroove")
    client = OrdergrooveClient(sim.url, sim.api_key, retry=FAST_RETRY, budget=RateBudget(10**6))
    try:
        options = SyncOptions(endpoints=tuple(endpoints))
        return SyncEngine(client, destination, zone("America/Chicago"), options).run()
    finally:
        destination.close()
        client.close()


def ogsync(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """`python -m ogsync ARGS`, with none of the caller's OGSYNC_ settings leaking in."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OGSYNC_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ogsync", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()
