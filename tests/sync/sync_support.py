"""Helpers for sync tests: a simulator, a real DuckDB file, and comparison with the truth."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson

from ogsync.apitime import zone
from ogsync.client import OrdergrooveClient, RateBudget, RetryPolicy
from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint
from ogsync.simulator.server import RunningSimulator, SimulatorConfig, simulator_in_thread
from ogsync.sync import Listener, SyncEngine, SyncOptions, SyncResult, sync_with
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE
from ogsync.testing.sim_control import SimControl

FAST_RETRY = RetryPolicy(max_attempts=12, base_seconds=0.005, cap_seconds=0.05)


@contextmanager
def simulator(**config: Any) -> Iterator[RunningSimulator]:
    with simulator_in_thread(SimulatorConfig(**config)) as sim:
        yield sim


def client_for(sim: RunningSimulator, **kwargs: Any) -> OrdergrooveClient:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("budget", RateBudget(1_000_000))
    kwargs.setdefault("seed", 7)
    return OrdergrooveClient(sim.url, sim.api_key, **kwargs)


def run_sync(
    sim: RunningSimulator,
    db: Path,
    endpoints: Sequence[Endpoint] = ENDPOINTS,
    *,
    api_timezone: str = "America/Chicago",
    client: OrdergrooveClient | None = None,
    listener: Listener | None = None,
    overlap: timedelta = timedelta(minutes=60),
    memory_limit: str | None = None,
    inbox: Any = None,
    **options: Any,
) -> SyncResult:
    destination = DuckDBDestination(f"duckdb:///{db}", "ordergroove", memory_limit)
    own_client = client is None
    client = client or client_for(sim)
    try:
        options.setdefault("clock_tolerance", SIMULATED_CLOCK_TOLERANCE)
        opts = SyncOptions(endpoints=tuple(endpoints), overlap=overlap, **options)
        engine = SyncEngine(client, destination, zone(api_timezone), opts, listener)
        return sync_with(engine, inbox)
    finally:
        destination.close()
        if own_client:
            client.close()


def rows(db: Path, ep: Endpoint, where: str = "TRUE") -> dict[str, dict[str, Any]]:
    """Warehouse rows of an endpoint by key, as dicts of column values."""
    with duckdb.connect(str(db), read_only=True) as conn:
        cursor = conn.execute(f"SELECT * FROM ordergroove.{ep.name} WHERE {where}")
        names = [d[0] for d in cursor.description]
        return {
            str(r[names.index(ep.column_key)]): dict(zip(names, r, strict=True))
            for r in cursor.fetchall()
        }


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql, list(params)).fetchall()


def assert_equals_truth(sim: RunningSimulator, db: Path, endpoints=ENDPOINTS) -> dict[str, int]:
    """Live rows equal the API's records, version for version.

    Orders and items the API hard-deleted stay live until their webhooks are applied, so
    they are set aside here; a full refresh (payments) must have soft-deleted its own.
    """
    checked = {}
    with SimControl(sim.url) as control:
        for ep in endpoints:
            expected = control.truth_by_key(ep)
            live = rows(db, ep, "_deleted_at IS NULL")
            gone = set(control.deleted(ep))
            if not ep.incremental:
                assert not gone & set(live), f"{ep.name}: deleted records still live"
            live = {k: v for k, v in live.items() if k not in gone}
            missing = set(expected) - set(live)
            extra = set(live) - set(expected)
            assert not missing, (
                f"{ep.name}: {len(missing)} records missing, e.g. {sorted(missing)[:3]}"
            )
            assert not extra, (
                f"{ep.name}: {len(extra)} unexpected records, e.g. {sorted(extra)[:3]}"
            )
            stale = [k for k, row in live.items() if orjson.loads(row["_raw"]) != expected[k]]
            assert not stale, f"{ep.name}: {len(stale)} stale versions, e.g. {stale[:3]}"
            checked[ep.name] = len(expected)
    return checked


def assert_deletions_reflected(sim, db) -> None:
    with SimControl(sim.url) as control:
        for ep in (BY_NAME["orders"], BY_NAME["items"]):
            live = set(rows(db, ep, "_deleted_at IS NULL"))
            soft = set(rows(db, ep, "_deleted_at IS NOT NULL"))
            assert live == set(control.truth_by_key(ep)), ep.name
            gone = set(control.deleted(ep))
            assert soft <= gone, ep.name
            # what was deleted and never soft-deleted never reached the warehouse at all
            assert not (gone - soft) & set(rows(db, ep)), ep.name
