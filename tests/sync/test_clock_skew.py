"""A simulator whose clock jumps: no watermark ever moves past real time, and one already there
is repaired (changes made meanwhile are fetched)."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from sync_support import assert_equals_truth, query, run_sync, simulator

from ogsync.clock import ClockSkew, OnSkew
from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoints import BY_NAME
from ogsync.status import stale, warehouse_status
from ogsync.testing.sim_control import SimControl

ORDERS = [BY_NAME["orders"]]
FIVE = timedelta(minutes=5)


def watermark(db) -> datetime:
    return query(db, "SELECT watermark FROM ordergroove._ogsync_state WHERE endpoint='orders'")[0][
        0
    ]


def clocks(db, status: str) -> list[str | None]:
    return [r[0] for r in query(db, "SELECT clock FROM ordergroove._ogsync_runs "
                                    f"WHERE status = '{status}' ORDER BY started_at")]  # fmt: skip


def test_an_api_clock_a_year_ahead_fails_the_run_or_gives_way_to_the_local_clock(db):
    with simulator(records=800, seed=61) as sim, SimControl(sim.url) as control:
        assert run_sync(sim, db, ORDERS, clock_tolerance=FIVE).exit_code == 0
        before = watermark(db)
        control.set_clock(datetime.now(UTC) + timedelta(days=365))
        with pytest.raises(ClockSkew, match="ahead"):
            run_sync(sim, db, ORDERS, clock_tolerance=FIVE)
        assert watermark(db) == before
        failed = query(db, "SELECT error FROM ordergroove._ogsync_runs WHERE status='failed'")
        assert len(failed) == 1 and "not trusted" in failed[0][0]

        result = run_sync(sim, db, ORDERS, clock_tolerance=FIVE, on_clock_skew=OnSkew.LOCAL)
        assert result.exit_code == 0
        assert watermark(db) <= datetime.now(UTC)
        assert clocks(db, "success") == ["api", "local"]


def test_a_watermark_in_the_future_is_reported_and_repaired(db):
    with simulator(records=800, seed=62) as sim, SimControl(sim.url) as control:
        # An older ogsync, trusting any Date, synced while the API's clock was a year ahead.
        control.set_clock(datetime.now(UTC) + timedelta(days=365))
        assert run_sync(sim, db, ORDERS, clock_tolerance=timedelta(days=400)).exit_code == 0
        assert watermark(db) > datetime.now(UTC) + timedelta(days=300)
        control.set_clock(datetime.now(UTC))  # the clock is mended; changes go on meanwhile
        made = control.advance(minutes=1, changes=150)["changes"]
        assert made

        with closing(DuckDBDestination(f"duckdb:///{db}", "ordergroove")) as wh:
            (orders,) = warehouse_status(wh, datetime.now(UTC), ORDERS, tolerance=FIVE)
        assert orders.future_watermark and orders.as_json()["future_watermark"] is True
        assert stale([orders], timedelta(days=9999)) == ["orders"]

        assert run_sync(sim, db, ORDERS, clock_tolerance=FIVE).exit_code == 0
        assert watermark(db) <= datetime.now(UTC) + FIVE  # the API's clock, a minute ahead
        assert_equals_truth(sim, db, ORDERS)  # the changes made meanwhile were fetched
        with closing(DuckDBDestination(f"duckdb:///{db}", "ordergroove")) as wh:
            (orders,) = warehouse_status(wh, datetime.now(UTC), ORDERS, tolerance=FIVE)
        assert not orders.future_watermark
