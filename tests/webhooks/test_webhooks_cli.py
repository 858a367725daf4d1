"""`ogsync webhooks serve` as a user runs it: help, configuration errors, a real process."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
from webhook_support import SECRET

from ogsync.serving import stop_process
from ogsync.simulator.server import free_port
from ogsync.testing.cli import run_ogsync as ogsync
from ogsync.testing.cli import serving_ogsync
from ogsync.webhooks.signature import HEADER, sign


def test_help_names_the_options():
    done = ogsync("webhooks", "serve", "--help")
    assert done.returncode == 0
    for option in ("--host", "--port", "--inbox", "--max-age-seconds", "OGSYNC_WEBHOOK_SECRET"):
        assert option in done.stdout


def test_missing_secret_is_one_line_and_exit_2(tmp_path):
    done = ogsync("webhooks", "serve", "--inbox", str(tmp_path / "inbox.sqlite"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OGSYNC_WEBHOOK_SECRET" in lines[0]
    assert not (tmp_path / "inbox.sqlite").exists()


def test_unusable_inbox_is_one_line_and_exit_2(tmp_path):
    done = ogsync(
        "webhooks",
        "serve",
        "--inbox",
        str(tmp_path / "no" / "such" / "dir" / "inbox.sqlite"),
        env={"OGSYNC_WEBHOOK_SECRET": SECRET},
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "inbox" in lines[0]
    assert SECRET not in done.stderr


def test_sigterm_stops_the_receiver_with_exit_0_and_its_inbox_closed(tmp_path):
    """uvicorn raises SIGTERM again after its shutdown; the inbox must still be closed (the
    SQLite log folded into the file) and the process end as a clean stop."""
    inbox, port = tmp_path / "inbox.sqlite", free_port()
    body = b'{"id": "evt-1", "type": "order.delete", "created": 1700000000, ' \
           b'"data": {"object": {"type": "order", "public_id": "o-1"}}}'  # fmt: skip
    with serving_ogsync(
        "webhooks", "serve", "--inbox", str(inbox), "--port", str(port),
        env={"OGSYNC_WEBHOOK_SECRET": SECRET}, ready_url=f"http://127.0.0.1:{port}/healthz",
    ) as proc:  # fmt: skip
        sent = httpx.post(f"http://127.0.0.1:{port}/webhooks/ordergroove", content=body,
                          headers={HEADER: sign([SECRET], int(time.time()), body)})  # fmt: skip
        assert sent.status_code == 200, sent.text
        assert Path(f"{inbox}-wal").exists()  # open, in WAL mode
        err = stop_process(proc, grace=30)
    assert proc.returncode == 0, err
    assert not Path(f"{inbox}-wal").exists()  # closed: the log went into the file
    with sqlite3.connect(inbox) as conn:
        assert conn.execute("SELECT count(*) FROM _ogsync_inbox").fetchone()[0] == 1
