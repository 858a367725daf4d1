"""A worker's pages keep coming while the writer holds its last batch."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sync_support import assert_equals_truth, client_for
from sync_support import simulator as running_simulator

from ogsync.apitime import zone
from ogsync.client import PAGE_SIZE
from ogsync.destinations.base import BatchWrite, WriteResult
from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoint_run import MAX_PAGES_AHEAD, pages_ahead
from ogsync.endpoints import BY_NAME
from ogsync.sync import SyncEngine, SyncOptions, sync_with
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE
from ogsync.testing.sim_control import SimControl

BATCH = 500


class SlowFirstWrite(DuckDBDestination):
    """Holds the first batch until the API has served `wanted` item pages (or 10 s)."""

    def __init__(self, url: str, control: SimControl, wanted: int) -> None:
        super().__init__(url, "ordergroove")
        self.control, self.wanted = control, wanted
        self.served_meanwhile: int | None = None

    def _items_served(self) -> int:
        return self.control.stats()["requests"].get("items", 0)

    def write(self, writes: Sequence[BatchWrite]) -> list[WriteResult]:
        if self.served_meanwhile is None:
            deadline = time.monotonic() + 10
            while self._items_served() < self.wanted and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # and nothing past what the worker may hold
            self.served_meanwhile = self._items_served()
        return super().write(writes)


def test_the_fetcher_runs_a_batch_ahead_while_the_writer_is_busy(db):
    per_batch = BATCH // PAGE_SIZE
    # While batch 1 is written: the worker types batch 2 and then waits, its fetcher holds a
    # batch's worth of pages and has one more in hand.
    wanted = 3 * per_batch + 1
    items = BY_NAME["items"]
    with (
        running_simulator(records=12_000, seed=5) as sim,
        SimControl(sim.url) as control,
        client_for(sim) as client,
    ):
        control.reset_stats()
        dest = SlowFirstWrite(f"duckdb:///{db}", control, wanted)
        options = SyncOptions(
            endpoints=(items,), batch_records=BATCH, clock_tolerance=SIMULATED_CLOCK_TOLERANCE
        )
        try:
            result = sync_with(SyncEngine(client, dest, zone("America/Chicago"), options))
        finally:
            dest.close()
        pages = control.stats()["requests"]["items"]
        assert result.exit_code == 0
        assert pages > wanted + 2 * per_batch, "too few pages for the test to say anything"
        assert dest.served_meanwhile == wanted
        assert_equals_truth(sim, db, (items,))


def test_a_large_batch_does_not_let_the_fetcher_hold_more_pages():
    assert pages_ahead(100) == 2
    assert pages_ahead(5000) == MAX_PAGES_AHEAD
    assert pages_ahead(1_000_000) == MAX_PAGES_AHEAD
