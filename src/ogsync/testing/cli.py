"""Running the `ogsync` command as a user would, for tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ogsync.serving import wait_until_answering
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE

RELAXED_CLOCK = {
    "OGSYNC_CLOCK_TOLERANCE_MINUTES": str(SIMULATED_CLOCK_TOLERANCE.total_seconds() / 60)
}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any OGSYNC_ setting, plus `extra` (and the
    simulated clock's tolerance, unless `extra` sets it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGSYNC_")}
    env.update(RELAXED_CLOCK)
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


def spawn_ogsync(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
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
    the block ends; killed then if it still runs."""
    proc = spawn_ogsync(*args, env=env, cwd=cwd)
    try:
        if not wait_until_answering(proc, ready_url, timeout=30):
            raise AssertionError(f"ogsync {args[0]} exited: {proc.communicate()[1]}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed (and assert it is one, with no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]
