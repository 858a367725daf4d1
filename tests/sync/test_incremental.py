"""The sync against the simulator over HTTP, into real DuckDB files: equal to the truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from sync_support import (
    assert_equals_truth,
    query,
    rows,
    run_sync,
    simulator,
)

from ogsync.endpoints import BY_NAME, ENDPOINTS
from ogsync.testing.sim_control import SimControl


def test_full_sync_then_incremental_equals_truth_with_far_fewer_requests(db):
    with simulator(records=3000, seed=3) as sim, SimControl(sim.url) as control:
        first = run_sync(sim, db)
        assert first.exit_code == 0
        checked = assert_equals_truth(sim, db)
        assert sum(checked.values()) >= 2900
        first_requests = control.stats()["requests_total"]

        control.advance(minutes=45, changes=150)
        httpx_reset = control.stats()
        second = run_sync(sim, db)
        assert second.exit_code == 0
        assert_equals_truth(sim, db)
        second_requests = control.stats()["requests_total"] - httpx_reset["requests_total"]
        assert second_requests < first_requests / 2
        assert {o.endpoint: o.mode for o in second.outcomes}["orders"] == "incremental"
        # Cards removed from the API are soft-deleted by the payments full refresh.
        gone = set(control.deleted(BY_NAME["payments"]))
        if gone:
            reasons = rows(db, BY_NAME["payments"], "_deleted_at IS NOT NULL")
            assert {r["_deleted_reason"] for r in reasons.values()} == {"full_refresh"}
            assert gone <= set(reasons)


def test_incremental_run_with_no_changes_asks_one_page_per_endpoint(db):
    with simulator(records=2000, seed=4, frozen_clock=True) as sim, SimControl(sim.url) as control:
        run_sync(sim, db)
        before = control.stats()["requests"]
        control.advance(minutes=120, changes=0)
        result = run_sync(sim, db)
        after = control.stats()["requests"]
        per_endpoint = {name: after[name] - before.get(name, 0) for name in after}
        for ep in ENDPOINTS:
            if ep.incremental:
                # the run's clock check is one /customers/ call on top
                extra = 1 if ep.name == "customers" else 0
                assert per_endpoint[ep.name] == 1 + extra, ep.name
        assert result.exit_code == 0


def test_rows_written_again_are_updated_in_place_not_deleted_and_inserted(db):
    """A full refresh writes every row again, and an incremental run the changed ones: each
    stays where it is. (Setting the key in DuckDB's upsert moved every row, about 16 times
    the work.)"""
    full_refresh, incremental = BY_NAME["payments"], BY_NAME["orders"]

    def places(ep):
        found = query(db, f"SELECT {ep.column_key}, rowid, _run_id FROM ordergroove.{ep.name}")
        return {key: (rowid, run) for key, rowid, run in found}

    with simulator(records=2000, seed=4, frozen_clock=True) as sim, SimControl(sim.url) as control:
        assert run_sync(sim, db).exit_code == 0
        before = {ep.name: places(ep) for ep in (full_refresh, incremental)}
        control.advance(minutes=120, changes=300)
        assert run_sync(sim, db).exit_code == 0
        for ep in (full_refresh, incremental):
            after = places(ep)
            written = {k for k in before[ep.name] if after[k][1] != before[ep.name][k][1]}
            assert written, f"{ep.name}: no stored row was written again"
            moved = {k for k in written if after[k][0] != before[ep.name][k][0]}
            assert not moved, f"{ep.name}: {len(moved)} of {len(written)} rows moved"


def test_watermark_is_the_run_start_and_windows_use_the_overlap(db):
    with simulator(records=1000, seed=5, frozen_clock=True) as sim, SimControl(sim.url) as control:
        first = run_sync(sim, db, [BY_NAME["orders"]])
        (watermark,) = query(db, "SELECT watermark FROM ordergroove._ogsync_state")[0]
        assert watermark == first.run_started_at
        control.advance(minutes=30, changes=0)
        second = run_sync(sim, db, [BY_NAME["orders"]])
        window = second.outcomes[0].run
        assert window.window_start == first.run_started_at - timedelta(minutes=60)
        # The end widens by the overlap too, so a misread zone never holds the last hour back.
        assert window.window_end == second.run_started_at + timedelta(minutes=60)
        runs = query(db, "SELECT count(*) FROM ordergroove._ogsync_runs WHERE status='success'")
        assert runs == [(2,)]


def test_records_changed_exactly_at_the_boundary_are_not_lost(db):
    start = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)
    with (
        simulator(records=1500, seed=6, frozen_clock=True, start=start) as sim,
        SimControl(sim.url) as control,
    ):
        first = run_sync(sim, db, overlap=timedelta(0))
        assert first.run_started_at == start
        # Every change lands on the very second the first run started: the inclusive start
        # bound must take them even with no overlap at all.
        control.advance(minutes=0, changes=60)
        run_sync(sim, db, overlap=timedelta(0))
        assert_equals_truth(sim, db)


def test_api_in_eastern_time_while_ogsync_assumes_central_loses_nothing(db):
    with (
        simulator(records=2000, seed=8, timezone="America/New_York") as sim,
        SimControl(sim.url) as control,
    ):
        run_sync(sim, db, api_timezone="America/Chicago")
        for _ in range(3):
            control.advance(minutes=20, changes=60)
            assert run_sync(sim, db, api_timezone="America/Chicago").exit_code == 0
        assert_equals_truth(sim, db)


def test_runs_across_the_fall_back_and_spring_forward_changes_lose_nothing(db):
    for start in (
        datetime(2026, 11, 1, 5, 40, tzinfo=UTC),  # 00:40 CDT, an hour before clocks go back
        datetime(2026, 3, 8, 7, 40, tzinfo=UTC),  # 01:40 CST, just before clocks go forward
    ):
        target = db.with_name(f"dst-{start:%m%d}.duckdb")
        with (
            simulator(records=1500, seed=9, frozen_clock=True, start=start) as sim,
            SimControl(sim.url) as control,
        ):
            run_sync(sim, target, overlap=timedelta(minutes=60))
            for _ in range(8):  # 8 x 20 minutes walks through the repeated or missing hour
                control.advance(minutes=20, changes=40)
                assert run_sync(sim, target).exit_code == 0
            assert_equals_truth(sim, target)


def test_a_duckdb_memory_limit_too_small_is_raised_not_fatal(db, caplog):
    with simulator(records=6000, seed=12) as sim, caplog.at_level("WARNING"):
        result = run_sync(sim, db, memory_limit="4MB")
        assert result.exit_code == 0, [o.run.error for o in result.outcomes if not o.ok]
        assert_equals_truth(sim, db)
    assert any("limit raised" in r.getMessage() for r in caplog.records)


def test_a_sync_that_waits_on_the_api_checkpoints_as_it_goes(db, monkeypatch):
    """The loader's idle moments write the log into the file, so closing has little to do."""
    import ogsync.destinations.duckdb as duck

    logs: list[int] = []  # the log's size each time the loader went idle
    idle = duck.DuckDBDestination.idle

    def watched(self: duck.DuckDBDestination) -> None:
        wal = Path(f"{self.path}.wal")
        logs.append(wal.stat().st_size if wal.exists() else 0)
        idle(self)

    monkeypatch.setattr(duck, "IDLE_CHECKPOINT_BYTES", 64 * 1024)
    monkeypatch.setattr(duck.DuckDBDestination, "idle", watched)
    with simulator(records=3000, seed=13, faults=_latency(25)) as sim:
        assert run_sync(sim, db, batch_records=300, max_workers=1).exit_code == 0
        assert_equals_truth(sim, db)
    # Left alone, the log only grows until the file is closed; here it was emptied on the way.
    drops = [later < earlier for earlier, later in pairwise(logs)]
    assert len(logs) >= 3 and any(drops), logs


def test_a_loading_sync_checkpoints_after_writes_on_more_threads_and_goes_back_to_one(
    db, monkeypatch
):
    """The loader writes the log into the file itself once it has grown past
    `CHECKPOINT_BYTES`, on more threads than its statements get (DuckDB's own checkpoint
    runs in a commit, on the statements' one thread)."""
    import ogsync.destinations.duckdb as duck

    bound = 96 * 1024
    seen: list[tuple[int, int, str]] = []  # each checkpoint's log size before, after; threads
    checkpoint = duck.DuckDBDestination._checkpoint

    def watched(self: duck.DuckDBDestination, at_bytes: int) -> None:
        wal = Path(f"{self.path}.wal")
        before = wal.stat().st_size if wal.exists() else 0
        checkpoint(self, at_bytes)
        after = wal.stat().st_size if wal.exists() else 0
        ((threads,),) = self.conn.execute("SELECT current_setting('threads')").fetchall()
        if at_bytes == bound:  # after a write (idle moments use their own bound)
            seen.append((before, after, str(threads)))

    monkeypatch.setattr(duck, "CHECKPOINT_BYTES", bound)
    monkeypatch.setattr(duck.DuckDBDestination, "_checkpoint", watched)
    with simulator(records=3000, seed=14) as sim:
        assert run_sync(sim, db, batch_records=150, max_workers=1).exit_code == 0
        assert_equals_truth(sim, db)
    assert len(seen) >= 5 and {threads for *_, threads in seen} == {"1"}
    emptied = [(before, after) for before, after, _ in seen if before >= bound]
    assert emptied and all(after < before for before, after in emptied), seen


def test_a_checkpoint_that_fails_after_a_write_fails_no_batch(db, monkeypatch, caplog):
    """The batches were committed before the loader's checkpoint: a failing one is told, and
    the log is written into the file later (here: on close)."""
    import duckdb

    import ogsync.destinations.duckdb as duck

    checkpoint = duck.DuckDBDestination._checkpoint
    failed: list[int] = []

    def failing(self: duck.DuckDBDestination, at_bytes: int) -> None:
        if at_bytes == duck.CHECKPOINT_BYTES and not failed:
            failed.append(at_bytes)
            raise duckdb.IOException("IO Error: no space left on device")
        checkpoint(self, at_bytes)

    monkeypatch.setattr(duck, "CHECKPOINT_BYTES", 0)
    monkeypatch.setattr(duck.DuckDBDestination, "_checkpoint", failing)
    with simulator(records=1500, seed=15) as sim, caplog.at_level("WARNING"):
        result = run_sync(sim, db, batch_records=200, max_workers=1)
        assert result.exit_code == 0, [o.run.error for o in result.outcomes if not o.ok]
        assert_equals_truth(sim, db)
    assert failed
    assert any("no space left on device" in r.getMessage() for r in caplog.records)


def test_never_more_than_one_request_at_a_time_on_an_endpoint(db):
    with (
        simulator(records=3000, seed=10, faults=_latency(15)) as sim,
        SimControl(sim.url) as control,
    ):
        result = run_sync(sim, db, max_workers=5)
        seen = control.stats()
        assert seen["max_concurrent_per_endpoint"] == 1
        # Pages that keep workers waiting open more slots: endpoints ran side by side.
        assert seen["max_concurrent_total"] >= 2
        assert 2 <= result.workers_at_once <= 5


def test_truth_check_would_notice_a_stale_version(db):
    """The comparison itself must be able to fail."""
    with simulator(records=800, seed=11, frozen_clock=True) as sim, SimControl(sim.url) as control:
        run_sync(sim, db, [BY_NAME["customers"]])
        control.advance(minutes=5, changes=80)
        expected = control.truth_by_key(BY_NAME["customers"])
        stored = rows(db, BY_NAME["customers"])
        assert set(expected) != set(stored) or any(
            stored[k]["last_updated"] is None or expected[k]["last_updated"] for k in expected
        )
        try:
            assert_equals_truth(sim, db, [BY_NAME["customers"]])
        except AssertionError:
            return
        raise AssertionError("a warehouse behind the API passed the truth check")


def _latency(ms: float):
    from ogsync.simulator.faults import Faults

    return Faults(latency_ms=ms)
