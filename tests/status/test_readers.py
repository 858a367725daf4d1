"""Readers beside a sync: `ogsync status` answers while a sync holds DuckDB, never makes a
starting sync fail, names any other program holding the file; personal data stays private."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import duckdb
import pytest

from ogsync.destinations.base import AlreadyRunning, DestinationError
from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.simulator.server import simulator_process
from ogsync.testing.cli import one_line_error, run_ogsync, spawn_ogsync

HOLD = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
    "time.sleep(60)"
)


def env_for(api, db: Path) -> dict[str, str]:
    return {"OGSYNC_API_KEY": api.api_key, "OGSYNC_BASE_URL": api.url,
            "OGSYNC_DESTINATION": f"duckdb:///{db}"}  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_status_answers_while_a_sync_holds_the_warehouse(tmp_path):
    db = tmp_path / "w.duckdb"
    with simulator_process(["--records", "8000", "--seed", "8", "--latency-ms", "150"]) as api:
        sync = spawn_ogsync("sync", "--log-format", "json", env=env_for(api, db), cwd=tmp_path)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and sync.poll() is None:
                if (tmp_path / "w.duckdb.ordergroove.status.json").exists():
                    break
                time.sleep(0.05)
            time.sleep(3.0)  # past the first refresh of the snapshot
            assert sync.poll() is None, "the sync ended before status could ask"
            during = run_ogsync("status", "--json", env=env_for(api, db), cwd=tmp_path)
            _, err = sync.communicate(timeout=180)
        finally:
            sync.kill()
    assert sync.returncode == 0, err
    assert during.returncode == 0, during.stderr
    assert f"a sync (PID {sync.pid}) holds the warehouse" in during.stderr
    rows = json.loads(during.stdout)
    assert {r["endpoint"] for r in rows} >= {"orders", "customers", "subscriptions"}
    assert "running" in {(r["last_run"] or {}).get("status") for r in rows}
    assert mode(tmp_path / "w.duckdb.ordergroove.status.json") == 0o600


@pytest.mark.slow
def test_readers_in_a_loop_never_make_a_starting_sync_fail(tmp_path):
    db = tmp_path / "w.duckdb"
    stop = threading.Event()
    reads = {"ok": 0, "held": 0}

    def read_forever() -> None:
        while not stop.is_set():
            try:
                with closing(DuckDBDestination(f"duckdb:///{db}", "ordergroove", read_only=True)):
                    reads["ok"] += 1
                    time.sleep(0.02)  # as long as a status takes to read
            except (AlreadyRunning, DestinationError):
                reads["held"] += 1

    with simulator_process(["--records", "400", "--seed", "9"]) as api:
        assert run_ogsync("sync", env=env_for(api, db), cwd=tmp_path).returncode == 0
        reader = threading.Thread(target=read_forever)
        reader.start()
        try:
            codes = [run_ogsync("sync", env=env_for(api, db), cwd=tmp_path) for _ in range(4)]
        finally:
            stop.set()
            reader.join()
    assert [c.returncode for c in codes] == [0] * 4, [c.stderr[-500:] for c in codes]
    assert reads["ok"] > 0


@pytest.mark.slow
def test_another_program_holding_the_file_is_named(tmp_path):
    db = tmp_path / "w.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        status = run_ogsync("status", "--destination", f"duckdb:///{db}", cwd=tmp_path)
        sync = run_ogsync("sync", "--destination", f"duckdb:///{db}", cwd=tmp_path,
                          env={"OGSYNC_API_KEY": "k"})  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    for result in (status, sync):
        assert result.returncode == 1, result.stderr
        line = one_line_error(result)
        assert f"(PID {holder.pid}) has {db} open" in line and "close it there" in line


def test_files_with_personal_data_are_owner_only_whatever_the_umask(tmp_path):
    script = f"""
import os, sys
os.umask(0)
from ogsync.webhooks.inbox import SQLiteInbox, InboxEvent
inbox = SQLiteInbox({str(tmp_path / "inbox.sqlite")!r})
inbox.put(InboxEvent.from_body(b'{{"id": "e1", "type": "order.delete", "created": 1733000000}}'))
from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoints import ENDPOINTS
wh = DuckDBDestination({"duckdb:///" + str(tmp_path / "lib.duckdb")!r}, "ordergroove")
wh.prepare(ENDPOINTS)
from ogsync.webhooks.apply import apply_inbox
apply_inbox(inbox, wh)
print(sorted(os.listdir({str(tmp_path)!r})), flush=True)
os._exit(0)  # as if killed: the inbox's WAL and DuckDB's log are still there
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    present = {p.name for p in tmp_path.iterdir()}
    assert {"inbox.sqlite", "inbox.sqlite-wal", "lib.duckdb", "lib.duckdb.wal"} <= present
    for name in present:
        assert mode(tmp_path / name) == 0o600, name


def test_the_command_line_creates_owner_only_files(tmp_path):
    cli = tmp_path / "cli"
    cli.mkdir()
    script = (
        "import os, sys; os.umask(0); sys.argv = ['ogsync', *sys.argv[1:]]; "
        "from ogsync.cli import main; main()"
    )
    with simulator_process(["--records", "200", "--seed", "3"]) as api:
        done = subprocess.run(
            [sys.executable, "-c", script, "sync", "--metrics-file", str(cli / "m.prom")],
            env={**os.environ, **env_for(api, cli / "w.duckdb")},
            cwd=cli, capture_output=True, text=True,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    present = sorted(p.name for p in cli.iterdir())
    assert {"w.duckdb", "m.prom", "w.duckdb.ordergroove.status.json"} <= set(present)
    assert [name for name in present if mode(cli / name) != 0o600] == []
