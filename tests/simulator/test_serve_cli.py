"""`ogsync simulator serve` on the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from ogsync.serving import stop_process
from ogsync.simulator.server import free_port, simulator_process
from ogsync.testing.cli import serving_ogsync
from ogsync.testing.sim_control import ready_url

OGSYNC = str(Path(sys.executable).with_name("ogsync"))


def test_serve_help():
    done = subprocess.run([OGSYNC, "simulator", "serve", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for flag in ("--records", "--seed", "--timezone", "--webhook-url", "--rate-429"):
        assert flag in done.stdout


def test_unknown_timezone_is_a_one_line_usage_error():
    done = subprocess.run(
        [OGSYNC, "simulator", "serve", "--timezone", "Mars/Base", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Mars/Base" in lines[0]
    assert "Traceback" not in done.stderr


def test_webhook_url_needs_a_secret():
    done = subprocess.run(
        [OGSYNC, "simulator", "serve", "--webhook-url", "http://127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1


def test_served_in_a_subprocess_and_stopped(tmp_path):
    with simulator_process(["--records", "500", "--seed", "3"]) as running:
        response = httpx.get(
            f"{running.url}/customers/",
            headers={"x-api-key": running.api_key, "X-OG-API-VERSION": "2"},
        )
        assert response.status_code == 200
        body = response.json()
        assert list(body) == ["next", "previous", "results"]
        assert body["results"]
        url = running.url
    # Once the context ends the process is gone and the port answers no more.
    try:
        httpx.get(f"{url}/customers/", timeout=1)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the simulator still answers after terminate")


def test_sigterm_stops_the_simulator_with_exit_0_and_nothing_left_in_tmp(tmp_path):
    scratch, port = tmp_path / "tmp", free_port()
    scratch.mkdir()
    with serving_ogsync(
        "simulator", "serve", "--port", str(port), "--records", "300",
        env={"TMPDIR": str(scratch)}, ready_url=ready_url(f"http://127.0.0.1:{port}"),
    ) as proc:  # fmt: skip
        assert list(scratch.iterdir()) == []  # its database was removed as soon as it was open
        err = stop_process(proc, grace=30)
    assert proc.returncode == 0, err
    assert list(scratch.iterdir()) == []
