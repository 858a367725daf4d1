"""`ogsync sync` and `ogsync check` as a user runs them: real processes, exit codes, messages."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest
from sync_support import assert_equals_truth, query

from ogsync.endpoints import BY_NAME
from ogsync.simulator.server import free_port, simulator_process
from ogsync.testing.cli import one_line_error, spawn_ogsync
from ogsync.testing.cli import run_ogsync as ogsync
from ogsync.testing.sim_control import SimControl

SECRET_KEY = "k3y-THAT-must-NEVER-leak-9f8e7d"


@pytest.fixture(scope="module")
def api():
    with simulator_process(
        ["--records", "6000", "--seed", "31", "--latency-ms", "4"], api_key=SECRET_KEY
    ) as sim:
        yield sim


@pytest.fixture(scope="module")
def control(api):
    with SimControl(api.url) as control:
        yield control


def env_for(api, db: Path, **extra: str) -> dict[str, str]:
    return {
        "OGSYNC_API_KEY": SECRET_KEY,
        "OGSYNC_BASE_URL": api.url,
        "OGSYNC_DESTINATION": f"duckdb:///{db}",
        **extra,
    }


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["sync"], {"OGSYNC_API_KEY": ""}, "OGSYNC_API_KEY"),
        (["sync", "--endpoints", "orders,bogus"], {}, "unknown endpoint 'bogus'"),
        (["sync", "--destination", "mysql://db/x"], {}, "unsupported destination"),
        (["sync", "--destination", "duckdb:///no/such/dir/x.duckdb"], {}, "does not exist"),
        (["sync"], {"OGSYNC_API_TIMEZONE": "Mars/Base"}, "unknown time zone"),
        (["sync"], {"OGSYNC_BASE_URL": "ftp://example"}, "not an http(s) URL"),
        (["sync", "--env", "moon"], {}, "unknown environment"),
        (["sync", "--since", "last tuesday"], {}, "not an ISO date"),
        (["sync", "--log-format", "xml"], {}, "--log-format"),
    ],
)
def test_bad_settings_exit_2_with_one_clear_line(api, tmp_path, args, env, needle):
    result = ogsync(*args, env={**env_for(api, tmp_path / "w.duckdb"), **env}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in one_line_error(result)


def test_a_bad_config_file_exits_2(api, tmp_path):
    (tmp_path / "ogsync.toml").write_text("workers = 'many'\nsurprise = 1\n")
    result = ogsync("sync", env=env_for(api, tmp_path / "w.duckdb"), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown setting(s) surprise" in one_line_error(result)
    (tmp_path / "ogsync.toml").write_text("workers = [")
    result = ogsync("sync", env=env_for(api, tmp_path / "w.duckdb"), cwd=tmp_path)
    assert result.returncode == 2 and "not valid TOML" in one_line_error(result)


def test_a_wrong_key_exits_3_and_is_never_echoed(api, tmp_path):
    wrong = "wrong-key-also-secret-123456"
    env = {**env_for(api, tmp_path / "w.duckdb"), "OGSYNC_API_KEY": wrong}
    for command in ("sync", "check"):
        result = ogsync(command, env=env, cwd=tmp_path)
        assert result.returncode == 3
        line = one_line_error(result)
        assert "401" in line and "OGSYNC_API_KEY" in line
        assert wrong not in result.stderr + result.stdout


def test_a_key_without_bulk_permission_exits_3_naming_it(tmp_path):
    with simulator_process(["--records", "200", "--limited-key", "limited-key-xyz"]) as sim:
        env = {
            "OGSYNC_API_KEY": "limited-key-xyz",
            "OGSYNC_BASE_URL": sim.url,
            "OGSYNC_DESTINATION": f"duckdb:///{tmp_path / 'w.duckdb'}",
        }
        result = ogsync("check", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "Bulk Operations" in one_line_error(result)


def test_check_reports_ok(api, tmp_path):
    result = ogsync("check", env=env_for(api, tmp_path / "w.duckdb"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_sync_logs_json_without_the_key_anywhere(api, tmp_path):
    db = tmp_path / "w.duckdb"
    result = ogsync("sync", "--log-format", "json", env=env_for(api, db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert any('"event":"endpoint_finished"' in e for e in events)
    assert all('"run_id"' in e for e in events if '"event":"batch"' in e)
    assert SECRET_KEY not in result.stderr + result.stdout
    dump = query(
        db, "SELECT string_agg(CAST(COLUMNS(*) AS VARCHAR), '|') FROM ordergroove._ogsync_runs"
    )
    dump += query(
        db, "SELECT string_agg(CAST(COLUMNS(*) AS VARCHAR), '|') FROM ordergroove._ogsync_state"
    )
    assert SECRET_KEY not in str(dump)


@pytest.mark.slow
def test_a_second_sync_on_the_same_warehouse_exits_with_a_clear_message(api, tmp_path):
    db = tmp_path / "w.duckdb"
    # Slow on purpose (5 requests a second) so that the two runs overlap.
    (tmp_path / "ogsync.toml").write_text("batch_records = 100\nrequests_per_minute = 300\n")
    first = spawn_ogsync(
        "sync", "--endpoints", "items", "--log-format", "json", env=env_for(api, db), cwd=tmp_path
    )
    try:
        assert first.stderr is not None
        assert '"event":"planned"' in first.stderr.readline()  # it holds the warehouse now
        second = ogsync("sync", env=env_for(api, db), cwd=tmp_path)
        assert first.poll() is None, "the first sync ended before the second began"
        assert second.returncode == 1
        assert "another ogsync process" in one_line_error(second)
    finally:
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err


@pytest.mark.slow
def test_a_sync_killed_between_batches_resumes_without_loss_or_duplicates(api, control, tmp_path):
    db = tmp_path / "w.duckdb"
    (tmp_path / "ogsync.toml").write_text("batch_records = 200\nrequests_per_minute = 100000\n")
    env = env_for(api, db)
    before = control.stats()["requests"].get("items", 0)
    victim = spawn_ogsync(
        "sync", "--endpoints", "items,orders", "--log-format", "json", env=env, cwd=tmp_path
    )
    deadline = time.monotonic() + 60
    while control.stats()["requests"].get("items", 0) - before < 12:
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    committed = query(db, "SELECT count(*) FROM ordergroove.items")[0][0]
    (checkpoint,) = query(
        db, "SELECT checkpoint_url FROM ordergroove._ogsync_state WHERE endpoint = 'items'"
    )[0]
    assert committed >= 200 and checkpoint, "the kill came before the first commit"

    result = ogsync("sync", "--endpoints", "items,orders", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    items = BY_NAME["items"]
    total = query(db, "SELECT count(*), count(DISTINCT public_id) FROM ordergroove.items")[0]
    assert total[0] == total[1]
    resumed_pages = query(
        db,
        "SELECT pages FROM ordergroove._ogsync_runs WHERE endpoint = 'items' "
        "AND status = 'success'",
    )[0][0]
    all_pages = -(-len(control.truth("items")) // 100)
    assert resumed_pages < all_pages  # it picked up from the checkpoint, not from scratch
    assert_equals_truth(api, db, [items, BY_NAME["orders"]])


def test_webhooks_apply_stores_events_and_records_deletions(tmp_path):
    from ogsync.webhooks.inbox import InboxEvent, SQLiteInbox

    inbox_path = tmp_path / "inbox.sqlite"
    inbox = SQLiteInbox(inbox_path)
    bodies = [
        {"id": "ev-1", "type": "order.delete", "created": 1_780_000_000,
         "data": {"object": {"type": "order", "public_id": "a" * 32}}},
        {"id": "ev-2", "type": "subscription.cancel", "created": 1_780_000_100,
         "data": {"object": {"type": "subscription", "public_id": "b" * 32}}},
    ]  # fmt: skip
    for body in bodies:
        assert inbox.put(InboxEvent.from_body(orjson.dumps(body)))
    inbox.close()
    db = tmp_path / "w.duckdb"
    env = {"OGSYNC_DESTINATION": f"duckdb:///{db}"}
    result = ogsync("webhooks", "apply", "--inbox", str(inbox_path), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 events stored, 1 deletions recorded" in result.stdout
    again = ogsync("webhooks", "apply", "--inbox", str(inbox_path), env=env, cwd=tmp_path)
    assert "0 events stored" in again.stdout  # applied events are not applied twice
    assert query(db, "SELECT type FROM ordergroove.events ORDER BY created") == [
        ("order.delete",),
        ("subscription.cancel",),
    ]
    assert query(db, "SELECT record_id, reason FROM ordergroove._ogsync_deletions") == [
        ("a" * 32, "webhook:order.delete")
    ]


def test_an_unreachable_database_exits_2_with_one_line_and_no_password(api, tmp_path):
    port = free_port()  # nothing listens there
    url = f"postgresql://ogsync:hunter2-very-secret@127.0.0.1:{port}/warehouse"
    result = ogsync("sync", env={**env_for(api, tmp_path / "w.duckdb"),
                                 "OGSYNC_DESTINATION": url}, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    line = one_line_error(result)
    assert "cannot connect" in line and "***" in line
    assert "hunter2" not in result.stderr + result.stdout
