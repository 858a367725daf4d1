"""Helpers for status and metrics tests: real syncs into DuckDB, and `ogsync` as a process."""

from __future__ import annotations

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
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE

FAST_RETRY = RetryPolicy(max_attempts=4, base_seconds=0.005, cap_seconds=0.05)
DEFAULT_ENDPOINTS = select(None)


def sync_into(
    sim: RunningSimulator, db: Path, endpoints: Sequence[Endpoint] = DEFAULT_ENDPOINTS
) -> SyncResult:
    """One real sync of `endpoints` from the simulator into the DuckDB file `db`."""
    destination = DuckDBDestination(f"duckdb:///{db}", "ordergroove")
    client = OrdergrooveClient(sim.url, sim.api_key, retry=FAST_RETRY, budget=RateBudget(10**6))
    try:
        options = SyncOptions(endpoints=tuple(endpoints), clock_tolerance=SIMULATED_CLOCK_TOLERANCE)
        return SyncEngine(client, destination, zone("America/Chicago"), options).run()
    finally:
        destination.close()
        client.close()


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()
