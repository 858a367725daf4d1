"""`ogsync sync --metrics-file`: Prometheus text format that prometheus_client parses back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from status_support import DEFAULT_ENDPOINTS, query

from ogsync.simulator.server import simulator_process
from ogsync.testing.cli import one_line_error
from ogsync.testing.cli import run_ogsync as ogsync
from ogsync.testing.sim_control import SimControl

DEFAULT_NAMES = {ep.name for ep in DEFAULT_ENDPOINTS}
PER_ENDPOINT = (
    "ogsync_sync_records",
    "ogsync_sync_requests",
    "ogsync_sync_retries",
    "ogsync_sync_duration_seconds",
    "ogsync_sync_success",
)


@pytest.fixture(scope="module")
def api():
    with simulator_process(["--records", "700", "--seed", "12"]) as sim:
        yield sim


@pytest.fixture(scope="module")
def control(api):
    with SimControl(api.url) as control:
        yield control


def env_for(api, db: Path) -> dict[str, str]:
    return {
        "OGSYNC_API_KEY": api.api_key,
        "OGSYNC_BASE_URL": api.url,
        "OGSYNC_DESTINATION": f"duckdb:///{db}",
    }


def metrics(path: Path) -> dict[str, dict[str, float]]:
    """{metric name: {endpoint: value}}, and every family a gauge with its help."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge" and family.documentation, family.name
        for sample in family.samples:
            out.setdefault(sample.name, {})[sample.labels["endpoint"]] = sample.value
    return out


def last_runs(db: Path) -> dict[str, tuple]:
    rows = query(
        db,
        "SELECT endpoint, records, requests, retries, status, finished_at "
        "FROM ordergroove._ogsync_runs ORDER BY started_at",
    )
    return {r[0]: r[1:] for r in rows}


def test_metrics_of_a_good_run_then_one_with_a_failing_endpoint(
    api, control, tmp_path: Path
) -> None:
    db, prom = tmp_path / "warehouse.duckdb", tmp_path / "ogsync.prom"
    before = time.time()
    first = ogsync("sync", "--metrics-file", str(prom), env=env_for(api, db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    text = prom.read_text()
    assert "# HELP ogsync_sync_records " in text and "# TYPE ogsync_sync_records gauge" in text
    got = metrics(prom)
    runs = last_runs(db)
    for name in PER_ENDPOINT:
        assert set(got[name]) == DEFAULT_NAMES, name
    for endpoint in DEFAULT_NAMES:
        records, requests, retries, status, finished = runs[endpoint]
        assert status == "success"
        assert got["ogsync_sync_records"][endpoint] == records
        assert got["ogsync_sync_requests"][endpoint] == requests > 0
        assert got["ogsync_sync_retries"][endpoint] == retries
        assert got["ogsync_sync_success"][endpoint] == 1
        assert 0 <= got["ogsync_sync_duration_seconds"][endpoint] < 60
        stamp = got["ogsync_sync_last_success_timestamp_seconds"][endpoint]
        assert stamp == pytest.approx(finished.timestamp(), abs=1e-3)
        assert before <= stamp <= time.time()
    assert sum(got["ogsync_sync_records"].values()) > 0
    first_success = got["ogsync_sync_last_success_timestamp_seconds"]

    # Orders now always come back malformed: with two attempts, the endpoint fails.
    control.set_faults(only_endpoints=["orders"], rate_malformed=1.0)
    try:
        (tmp_path / "ogsync.toml").write_text("[ogsync]\nmax_attempts = 2\n")
        second = ogsync("sync", "--metrics-file", str(prom), env=env_for(api, db), cwd=tmp_path)
    finally:
        control.set_faults(rate_malformed=0.0)
    assert second.returncode == 1, second.stderr
    got = metrics(prom)
    runs = last_runs(db)
    assert runs["orders"][3] == "failed"
    assert got["ogsync_sync_success"] == {n: (0 if n == "orders" else 1) for n in DEFAULT_NAMES}
    for endpoint in DEFAULT_NAMES:
        assert got["ogsync_sync_records"][endpoint] == runs[endpoint][0]
        assert got["ogsync_sync_requests"][endpoint] == runs[endpoint][1]
    # The failed endpoint's last success is still the first run's, from the warehouse.
    stamps = got["ogsync_sync_last_success_timestamp_seconds"]
    assert stamps["orders"] == pytest.approx(first_success["orders"], abs=1e-3)
    assert all(stamps[n] > first_success[n] for n in DEFAULT_NAMES - {"orders"})
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ogsync.prom")] == [
        "ogsync.prom"
    ]  # no temporary file left beside it


def test_a_failed_endpoint_never_synced_has_no_last_success(api, control, tmp_path: Path) -> None:
    db, prom = tmp_path / "warehouse.duckdb", tmp_path / "m.prom"
    control.set_faults(only_endpoints=["addresses"], rate_malformed=1.0)
    try:
        (tmp_path / "ogsync.toml").write_text("[ogsync]\nmax_attempts = 2\n")
        result = ogsync(
            "sync", "--endpoints", "customers,addresses", "--metrics-file", str(prom),
            env=env_for(api, db), cwd=tmp_path,
        )  # fmt: skip
    finally:
        control.set_faults(rate_malformed=0.0)
    assert result.returncode == 1
    got = metrics(prom)
    assert got["ogsync_sync_success"] == {"customers": 1, "addresses": 0}
    assert set(got["ogsync_sync_last_success_timestamp_seconds"]) == {"customers"}


def test_a_run_refused_up_front_still_writes_failure_metrics(api, tmp_path: Path) -> None:
    db, prom = tmp_path / "warehouse.duckdb", tmp_path / "m.prom"
    env = {**env_for(api, db), "OGSYNC_API_KEY": "wrong-key"}
    result = ogsync("sync", "--endpoints", "orders", "--metrics-file", str(prom), env=env)
    assert result.returncode == 3
    one_line_error(result)
    got = metrics(prom)
    assert got["ogsync_sync_success"] == {"orders": 0}
    assert "ogsync_sync_last_success_timestamp_seconds" not in got


def test_several_merchants_share_the_file_and_one_failing_stops_no_other(api, tmp_path):
    db, prom = tmp_path / "warehouse.duckdb", tmp_path / "m.prom"
    (tmp_path / "ogsync.toml").write_text(
        f'destination = "duckdb:///{db}"\n'
        f'[merchants.broken]\napi_key_env = "BROKEN_KEY"\nbase_url = "{api.url}"\n'
        'schema = "broken"\n'
        f'[merchants.good]\napi_key_env = "GOOD_KEY"\nbase_url = "{api.url}"\n'
        'schema = "good"\n'
    )
    env = {"BROKEN_KEY": "wrong-key", "GOOD_KEY": api.api_key}
    result = ogsync(
        "sync", "--endpoints", "customers,orders", "--metrics-file", str(prom),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3  # the worst of the merchants' exit codes: a refused key
    assert "merchant good (schema good)" in result.stderr  # came after the broken one
    success = {
        (s.labels["merchant"], s.labels["endpoint"]): s.value
        for family in text_string_to_metric_families(prom.read_text())
        for s in family.samples
        if s.name == "ogsync_sync_success"
    }
    assert success == {
        ("broken", "customers"): 0, ("broken", "orders"): 0,
        ("good", "customers"): 1, ("good", "orders"): 1,
    }  # fmt: skip
    assert query(db, "SELECT count(*) FROM good.customers")[0][0] > 0


@pytest.mark.parametrize("where", ["no/such/folder/m.prom", "."])
def test_an_unwritable_metrics_path_is_exit_2_before_syncing(
    api, tmp_path: Path, where: str
) -> None:
    db = tmp_path / "warehouse.duckdb"
    result = ogsync("sync", "--metrics-file", where, env=env_for(api, db), cwd=tmp_path)
    assert result.returncode == 2
    assert "metrics file" in one_line_error(result)
    assert not db.exists()  # refused before the sync started
