"""The README's promises, run: its quick start command by command, as a newcomer types them,
and its settings table against what the code reads."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ogsync.config import FILE_KEYS
from ogsync.simulator.server import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SRC = ROOT / "src" / "ogsync"
DEFAULT_PORT = 8765  # the simulator's, as the README writes it


def section(title: str) -> str:
    """The text under `## title`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"no section {title!r} in the README"
    return match.group(1)


def code_blocks(text: str) -> list[list[str]]:
    """The indented code blocks, each as its lines."""
    blocks: list[list[str]] = []
    previous_blank = True
    for line in text.splitlines():
        if line.startswith("    ") and line.strip():
            if previous_blank or not blocks:
                blocks.append([])
            blocks[-1].append(line[4:])
            previous_blank = False
        else:
            previous_blank = not line.strip()
            if line.strip():
                previous_blank = True  # prose ends a block too
    return blocks


def newcomer_env() -> dict[str, str]:
    """A shell with no ogsync settings of its own, as on a fresh machine."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OGSYNC_")}


def read_until_ready(proc: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    """The simulator's stderr up to the last line of its ready message."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    said: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the simulator never said it was ready: {said}") from None
        if line is None:
            raise AssertionError(f"the simulator exited: {said}")
        said.append(line)
        if line.strip().endswith(" sync") and any("export" in s for s in said):
            return said


def test_the_quick_start_runs_as_written(tmp_path):
    venv = Path(sys.prefix)
    if not (venv / "bin" / "ogsync").exists():
        pytest.skip("the quick start runs ogsync from a virtual environment, as make demo makes")
    first, second = code_blocks(section("Quick start"))
    assert first == [".venv/bin/ogsync simulator serve"]
    # The newcomer's folder: `.venv` beside them, as after `make demo`.
    (tmp_path / ".venv").symlink_to(venv)
    port = free_port()  # the default port may be taken on a shared machine
    proc = subprocess.Popen(
        [*first[0].split(), "--port", str(port)],
        cwd=tmp_path,
        env=newcomer_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = read_until_ready(proc)
        # What it prints is what the README says to type (on the port it was given).
        printed = [s.strip() for s in said if s.strip().startswith("export ")]
        written = [line for line in second if line.startswith("export ")]
        assert printed == [line.replace(f":{DEFAULT_PORT}", f":{port}") for line in written]

        script = "\n".join(line.replace(f":{DEFAULT_PORT}", f":{port}") for line in second)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=newcomer_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "subscriptions" in done.stdout  # the status table
        query = done.stdout[done.stdout.index("┌") :]  # DuckDB's table, last
        assert re.search(r"│\s+true\s+│\s+\d+\s+│", query), query
        assert re.search(r"│\s+false\s+│\s+\d+\s+│", query), query  # cancelled, yet current
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        try:  # stopped as a shell's Ctrl-C stops a program (130: ended by SIGINT)
            assert proc.wait(timeout=30) in (0, 130)
        finally:
            if proc.poll() is None:
                proc.kill()


def env_vars_in_code() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        # ogsync init's template only names variables (its own test holds it to the code).
        if "testing" not in path.parts and path.name != "settings_file.py":
            found |= set(re.findall(r"\bOGSYNC_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    return found


def test_the_readme_documents_every_setting_and_variable_the_code_reads():
    undocumented = {name for name in FILE_KEYS if f"`{name}`" not in README}
    undocumented |= {name for name in env_vars_in_code() if f"`{name}`" not in README}
    assert not undocumented, f"not in the README: {sorted(undocumented)}"
    assert "`[ogsync]`" in README


def test_the_readme_names_no_view_by_its_deprecated_name_alone():
    # `<table>_live` is mentioned only as the deprecated alias of `<table>_current`.
    for match in re.finditer(r"\w+_live\b", README):
        around = README[max(0, match.start() - 300) : match.end() + 300]
        assert "_current" in around and "deprecated" in around, match.group()
