"""Running the `ogsync` command as a user would, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any OGSYNC_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGSYNC_")}
    env.update(extra or {})
    return env


def run_ogsync(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m ogsync ARGS` to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "ogsync", *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_ogsync(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """`python -m ogsync ARGS` left running, its output on pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "ogsync", *args],
        env=clean_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def serving_ogsync(
    *args: str, env: dict[str, str], ready_url: str, cwd: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`python -m ogsync ARGS` (a server) running from the moment `ready_url` answers until
    the block ends; killed then if it still runs. Its stderr is on a pipe."""
    proc = subprocess.Popen([sys.executable, "-m", "ogsync", *args], env=clean_env(env), cwd=cwd,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"ogsync {args[0]} did not start") from None
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_with_sigterm(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """Send SIGTERM and wait for the process to end; what it wrote to stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return err


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed (and assert it is one, with no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]
