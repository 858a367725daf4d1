"""The built-in scheduler: when it fires, that it never overlaps, and how it stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import duckdb
import pytest

from ogsync.schedule import Scheduler, next_run, validate_cron
from ogsync.simulator.server import simulator_process
from ogsync.testing.cli import clean_env

CHICAGO = ZoneInfo("America/Chicago")


def test_the_default_fires_at_13_chicago_time_on_both_sides_of_a_clock_change():
    before = datetime(2026, 10, 31, 19, 0, tzinfo=UTC)  # 14:00 CDT
    first = next_run("0 13 * * *", CHICAGO, before)
    second = next_run("0 13 * * *", CHICAGO, first)
    assert first.isoformat() == "2026-11-01T13:00:00-06:00"  # the day clocks go back
    assert second.isoformat() == "2026-11-02T13:00:00-06:00"
    assert next_run("0 13 * * *", CHICAGO, datetime(2026, 7, 1, tzinfo=UTC)).hour == 13


@pytest.mark.parametrize("bad", ["0 99 * * *", "every day", "", "* * *"])
def test_a_bad_cron_expression_is_refused_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="bad cron expression"):
        validate_cron(bad)


@pytest.mark.slow
def test_it_fires_on_a_short_cron_and_skips_ticks_while_a_run_goes_on():
    runs: list[float] = []

    def slow_job(stop: threading.Event) -> int:
        runs.append(time.monotonic())
        stop.wait(2.5)  # longer than the one-second ticks
        return 0

    stop = threading.Event()
    scheduler = Scheduler("* * * * * *", CHICAGO, slow_job)  # every second
    worker = threading.Thread(target=scheduler.run, args=(stop,))
    worker.start()
    time.sleep(6)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert scheduler.tally.runs >= 2
    assert scheduler.tally.skipped >= 2
    assert all(b - a >= 2 for a, b in pairwise(runs))  # never overlapping


@pytest.mark.slow
def test_a_failing_run_is_counted_and_the_scheduler_keeps_going():
    stop = threading.Event()
    calls = []

    def failing(stop_event: threading.Event) -> int:
        calls.append(1)
        return 1

    scheduler = Scheduler("* * * * * *", CHICAGO, failing)
    tally = scheduler.run(stop, max_runs=2)
    assert tally.runs == 2 and tally.failed == 2 and len(calls) == 2


@pytest.mark.slow
def test_sigterm_ends_the_scheduler_cleanly_with_committed_data(tmp_path):
    args = ["--records", "3000", "--latency-ms", "20"]
    with simulator_process(args) as api:
        env = clean_env()
        db = tmp_path / "w.duckdb"
        env.update(OGSYNC_API_KEY=api.api_key, OGSYNC_BASE_URL=api.url,
                   OGSYNC_DESTINATION=f"duckdb:///{db}")  # fmt: skip
        (tmp_path / "ogsync.toml").write_text("batch_records = 200\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ogsync", "schedule", "--cron", "* * * * * */2",
             "--log-format", "json"],
            env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines = []
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the first batch of the first run
            lines.append(line)
            if '"event":"batch"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(lines) + rest
        assert "next run at" in "".join(lines)
    with duckdb.connect(str(db), read_only=True) as conn:
        (committed,) = conn.execute("SELECT count(*) FROM ordergroove._ogsync_runs").fetchone()
    assert committed >= 1


def test_schedule_with_a_bad_cron_exits_2_with_one_line(tmp_path):
    env = clean_env()
    env["OGSYNC_API_KEY"] = "k"
    result = subprocess.run(
        [sys.executable, "-m", "ogsync", "schedule", "--cron", "0 99 * * *"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "bad cron" in lines[0]


def test_schedule_can_receive_webhooks_in_the_same_process(tmp_path):
    """...and takes its schedule from the settings file when no --cron is given."""
    from ogsync.serving import stop_process
    from ogsync.simulator.server import free_port
    from ogsync.testing.cli import serving_ogsync

    port = free_port()
    (tmp_path / "ogsync.toml").write_text(
        'schedule = "0 7 * * 6"\nschedule_timezone = "Europe/Paris"\n'
    )
    env = dict(OGSYNC_API_KEY="k", OGSYNC_BASE_URL="http://127.0.0.1:9",
               OGSYNC_WEBHOOK_SECRET="s3cret", OGSYNC_WEBHOOK_INBOX=str(tmp_path / "in.sqlite"),
               OGSYNC_DESTINATION=f"duckdb:///{tmp_path / 'w.duckdb'}")  # fmt: skip
    with serving_ogsync(
        "schedule", "--with-webhooks", "--webhooks-port", str(port),
        env=env, cwd=tmp_path, ready_url=f"http://127.0.0.1:{port}/healthz",
    ) as proc:  # fmt: skip
        err = stop_process(proc, grace=30)
    assert proc.returncode == 0, err
    started = next(line for line in err.splitlines() if "scheduler started" in line)
    assert "(0 7 * * 6, Europe/Paris)" in started
    when = datetime.fromisoformat(started.rsplit("next run at ", 1)[1].strip())
    assert (when.weekday(), when.hour, when.minute) == (5, 7, 0)
    assert when.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
