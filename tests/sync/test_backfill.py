"""Backfills: history in windows, resumable after kill -9, slow windows split, clean handover."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from sync_support import assert_equals_truth, query, run_sync, simulator
from test_cli import SECRET_KEY, env_for

from ogsync.endpoints import BY_NAME
from ogsync.plan import WindowSize
from ogsync.simulator.faults import Faults
from ogsync.simulator.server import simulator_process
from ogsync.sync import Backfill, Listener
from ogsync.testing.cli import run_ogsync as ogsync
from ogsync.testing.cli import spawn_ogsync
from ogsync.testing.sim_control import SimControl

HISTORY_START = datetime(2023, 1, 1, tzinfo=UTC)  # before the simulator's oldest record


def test_a_monthly_backfill_equals_truth_and_hands_over_to_incremental_syncs(db):
    with simulator(records=2500, seed=51, frozen_clock=True) as sim, SimControl(sim.url) as control:
        result = run_sync(sim, db, backfill=Backfill(HISTORY_START, size=WindowSize.MONTH))
        assert result.exit_code == 0
        assert {o.mode for o in result.outcomes} == {"backfill", "full_refresh"}
        assert_equals_truth(sim, db)
        windows = query(db, "SELECT count(*), count(done_at) FROM ordergroove._ogsync_backfill "
                            "WHERE endpoint = 'orders'")[0]  # fmt: skip
        assert windows[0] == windows[1] >= 30  # every month done
        marks = dict(query(db, "SELECT endpoint, watermark FROM ordergroove._ogsync_state"))
        assert marks["orders"] == result.run_started_at
        # the next sync goes on from the backfill's start, asking one page per endpoint
        control.advance(minutes=120, changes=0)
        before = control.stats()["requests"]
        run_sync(sim, db)
        after = control.stats()["requests"]
        assert after["orders"] - before["orders"] == 1
        control.advance(minutes=30, changes=80)
        run_sync(sim, db)
        assert_equals_truth(sim, db)
        # a backfill of an older range never moves a watermark backwards
        run_sync(sim, db, [BY_NAME["orders"]], backfill=Backfill(
            HISTORY_START, HISTORY_START + timedelta(days=60)))  # fmt: skip
        again = dict(query(db, "SELECT endpoint, watermark FROM ordergroove._ogsync_state"))
        assert again["orders"] >= marks["orders"]


@pytest.mark.slow
def test_slow_pages_split_the_rest_of_their_window_and_the_result_still_equals_truth(db):
    with simulator(records=2000, seed=52, faults=Faults(latency_ms=40, latency_jitter=0)) as sim:
        spec = Backfill(HISTORY_START, size=WindowSize.MONTH, slow_page_seconds=0.02,
                        floor=timedelta(days=10))  # fmt: skip
        result = run_sync(sim, db, [BY_NAME["orders"], BY_NAME["items"]], backfill=spec)
        assert result.exit_code == 0
        assert_equals_truth(sim, db, [BY_NAME["orders"], BY_NAME["items"]])
        spans = query(db, "SELECT window_end - window_start FROM ordergroove._ogsync_backfill "
                          "WHERE endpoint = 'orders' AND done_at IS NOT NULL")  # fmt: skip
        assert any(span < timedelta(days=27) for (span,) in spans)  # some months were split


@pytest.mark.slow
def test_a_backfill_killed_at_several_points_resumes_without_refetching_committed_windows(
    tmp_path,
):
    args = ["--records", "6000", "--seed", "53", "--frozen-clock", "--latency-ms", "3"]
    command = ["backfill", "--start", "2023-01-01", "--window", "month",
               "--endpoints", "orders,items", "--log-format", "json"]  # fmt: skip
    with simulator_process(args, api_key=SECRET_KEY) as api, SimControl(api.url) as control:
        # An uninterrupted backfill, to know what one costs.
        clean = tmp_path / "clean"
        clean.mkdir()
        (clean / "ogsync.toml").write_text("batch_records = 200\nrequests_per_minute = 100000\n")
        before = control.stats()["requests_total"]
        done = ogsync(*command, env=env_for(api, clean / "w.duckdb"), cwd=clean)
        assert done.returncode == 0, done.stderr
        uninterrupted = control.stats()["requests_total"] - before

        work = tmp_path / "killed"
        work.mkdir()
        (work / "ogsync.toml").write_text("batch_records = 200\nrequests_per_minute = 100000\n")
        db = work / "w.duckdb"
        before = control.stats()["requests_total"]
        kills = 0
        for share in (0.2, 0.45, 0.7):
            start = control.stats()["requests_total"]
            victim = spawn_ogsync(*command, env=env_for(api, db), cwd=work)
            deadline = time.monotonic() + 60
            while control.stats()["requests_total"] - start < uninterrupted * share / 2:
                assert victim.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=30)
            kills += 1
        finished = ogsync(*command, env=env_for(api, db), cwd=work)
        assert finished.returncode == 0, finished.stderr
        spent = control.stats()["requests_total"] - before
        assert_equals_truth(api, db, [BY_NAME["orders"], BY_NAME["items"]])
        # Each restart costs its clock check and the pages of batches in flight, never the
        # windows committed before the kill.
        print(f"requests: uninterrupted {uninterrupted}, with {kills} kills {spent}")
        assert spent <= uninterrupted + kills * 2 * 6


class ChangesMidway(Listener):
    """Changes the API while the backfill is half done."""

    def __init__(self, control: SimControl) -> None:
        self.control = control
        self.batches = 0

    def batch(self, endpoint, run, fetched) -> None:
        self.batches += 1
        if self.batches == 3:
            self.control.advance(minutes=10, changes=100)


def test_records_changed_while_a_backfill_runs_are_taken_by_the_next_sync(db):
    with simulator(records=2500, seed=54, frozen_clock=True) as sim, SimControl(sim.url) as control:
        spec = Backfill(HISTORY_START, size=WindowSize.MONTH)
        listener = ChangesMidway(control)
        assert run_sync(sim, db, backfill=spec, batch_records=100, listener=listener).exit_code == 0
        assert listener.batches >= 3
        run_sync(sim, db)
        assert_equals_truth(sim, db)
