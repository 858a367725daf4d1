"""`ogsync status`: what it reads from a real warehouse, and --max-lag's exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from status_support import DEFAULT_ENDPOINTS, query, sync_into

from ogsync.endpoints import BY_NAME
from ogsync.simulator.server import SimulatorConfig, simulator_in_thread
from ogsync.status import EndpointStatus, parse_duration, stale
from ogsync.testing.cli import one_line_error
from ogsync.testing.cli import run_ogsync as ogsync

DEFAULT_NAMES = {ep.name for ep in DEFAULT_ENDPOINTS}


def status(db: Path, *args: str):
    return ogsync("status", "--destination", f"duckdb:///{db}", *args)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A warehouse synced just now from a simulator whose clock is the real one."""
    db = tmp_path_factory.mktemp("fresh") / "warehouse.duckdb"
    with simulator_in_thread(SimulatorConfig(seed=5, records=700)) as sim:
        result = sync_into(sim, db)
    assert result.exit_code == 0
    return db


@pytest.fixture(scope="module")
def three_days_old(tmp_path_factory) -> Path:
    """A warehouse whose watermarks are three days old: the API's clock was, when it synced."""
    db = tmp_path_factory.mktemp("stale") / "warehouse.duckdb"
    start = datetime.now(UTC) - timedelta(days=3)
    config = SimulatorConfig(seed=5, records=700, start=start, frozen_clock=True)
    with simulator_in_thread(config) as sim:
        result = sync_into(sim, db)
    assert result.exit_code == 0
    return db


def test_json_reports_each_endpoint_as_the_warehouse_has_it(fresh: Path) -> None:
    result = status(fresh, "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["endpoint"]: row for row in json.loads(result.stdout)}
    assert set(rows) == DEFAULT_NAMES  # payments and products were never synced: not shown
    for name, row in rows.items():
        ((live,),) = query(fresh, f"SELECT count(*) FROM ordergroove.{name}_current")
        ((total,),) = query(fresh, f"SELECT count(*) FROM ordergroove.{name}")
        assert (row["live"], row["deleted"]) == (live, total - live), name
        ((records,),) = query(
            fresh, "SELECT records FROM ordergroove._ogsync_runs WHERE endpoint = ?", [name]
        )
        run = row["last_run"]
        assert run["status"] == "success" and run["records"] == records, name
        assert run["kind"] == ("sync" if BY_NAME[name].incremental else "full_refresh")
        assert row["watermark"] is not None and row["last_success_at"] is not None
        assert 0 <= row["lag_seconds"] < 600, name  # the simulator's clock is ours
        assert row["stale"] is None  # no --max-lag asked


def test_fresh_warehouse_is_within_max_lag(fresh: Path) -> None:
    result = status(fresh, "--max-lag", "26h")
    assert result.returncode == 0, result.stderr
    for name in DEFAULT_NAMES:  # the Rich table
        assert name in result.stdout


def test_three_day_old_watermarks_are_stale_beyond_26h_but_not_4d(three_days_old: Path) -> None:
    result = status(three_days_old, "--json", "--max-lag", "26h")
    assert result.returncode == 1
    line = one_line_error(result)
    rows = {row["endpoint"]: row for row in json.loads(result.stdout)}
    incremental = {n for n in DEFAULT_NAMES if BY_NAME[n].incremental}
    assert {n for n, row in rows.items() if row["stale"]} == incremental
    for name in incremental:
        assert name in line
        assert (
            timedelta(days=3) - timedelta(hours=1)
            < timedelta(seconds=rows[name]["lag_seconds"])
            < timedelta(days=3, hours=1)
        )
    # A full-refresh endpoint is as fresh as its last successful run's start (local clock).
    assert rows["one_time_incentives"]["lag_seconds"] < 600
    assert status(three_days_old, "--max-lag", "4d").returncode == 0
    assert status(three_days_old, "--max-lag", "70h").returncode == 1


def test_an_endpoint_never_synced_is_stale(tmp_path: Path) -> None:
    db = tmp_path / "warehouse.duckdb"
    with simulator_in_thread(SimulatorConfig(seed=6, records=300)) as sim:
        sync_into(sim, db, [BY_NAME["customers"], BY_NAME["orders"]])
    result = status(db, "--max-lag", "4d")
    assert result.returncode == 1
    line = one_line_error(result)
    assert "subscriptions (never synced)" in line and "customers" not in line
    chosen = status(db, "--endpoints", "customers,orders", "--max-lag", "26h", "--json")
    assert chosen.returncode == 0, chosen.stderr
    assert [r["endpoint"] for r in json.loads(chosen.stdout)] == ["customers", "orders"]
    everything = status(db, "--endpoints", "all", "--json")
    never = [r for r in json.loads(everything.stdout) if r["last_run"] is None]
    assert len(never) == 7 and all(r["lag_seconds"] is None for r in never)


@pytest.mark.parametrize("value", ["5 parsecs", "26", "-1h", "h", ""])
def test_bad_max_lag_is_one_line_and_exit_2(fresh: Path, value: str) -> None:
    result = status(fresh, "--max-lag", value)
    assert result.returncode == 2
    assert "--max-lag" in one_line_error(result)


def test_bad_settings_and_missing_warehouse_are_exit_2(tmp_path: Path) -> None:
    missing = status(tmp_path / "nothing.duckdb")
    assert missing.returncode == 2
    assert "no warehouse" in one_line_error(missing)
    assert not (tmp_path / "nothing.duckdb").exists()  # status never creates one
    bad = ogsync("status", "--destination", "mysql://db/x")
    assert bad.returncode == 2
    assert "unsupported destination" in one_line_error(bad)
    schema = ogsync("status", "--destination", f"duckdb:///{tmp_path}/x", "--schema", "a-b")
    assert schema.returncode == 2
    one_line_error(schema)


def test_a_warehouse_in_use_is_one_line_and_exit_1(fresh: Path) -> None:
    """Held by a program that keeps no status snapshot (a notebook, say): it is named."""
    hold = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print(1, flush=True); "
    holder = subprocess.Popen([sys.executable, "-c", hold + "time.sleep(60)", str(fresh)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline()
        result = status(fresh, "--max-lag", "26h")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert f"(PID {holder.pid}) has {fresh} open" in one_line_error(result)


def test_an_empty_warehouse_reads_as_never_synced(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    result = status(db, "--json", "--max-lag", "1d")
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert {r["endpoint"] for r in rows} == DEFAULT_NAMES
    assert all(r["stale"] and r["live"] == 0 for r in rows)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26h", timedelta(hours=26)),
        ("90m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("3600s", timedelta(hours=1)),
        ("1w", timedelta(weeks=1)),
        ("1d12h", timedelta(hours=36)),
        (" 1.5 h ", timedelta(minutes=90)),
        ("45 minutes", timedelta(minutes=45)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "26", "h", "5 parsecs", "-2h", "2h-", "1y"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_stale_compares_lag_and_counts_never_synced() -> None:
    def one(name: str, lag: timedelta | None) -> EndpointStatus:
        return EndpointStatus(name, True, None, None, lag, None, None, 0, 0)

    statuses = [one("a", timedelta(hours=1)), one("b", timedelta(hours=30)), one("c", None)]
    assert stale(statuses, timedelta(hours=26)) == ["b", "c"]
    assert stale(statuses, timedelta(hours=30)) == ["c"]
