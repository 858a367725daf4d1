"""Bad settings and options: exit 2 with one line; an unexpected error never shows the key."""

from __future__ import annotations

import pytest

from ogsync.testing.cli import run_ogsync

KEY = "sk-CLI-ERRORS-4b1d-KEY"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["sync", "--since", "2025-02-01", "--until", "2025-01-01"], "after --until"),
        (["backfill", "--start", "2025-02-01", "--end", "2025-01-01"], "before --start"),
        (["sync", "--endpoints", ","], "no endpoints"),
        (["sync", "--workers", "9"], "workers"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, said):
    done = run_ogsync(*args, env={"OGSYNC_API_KEY": KEY}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and said in lines[0], done.stderr


@pytest.mark.parametrize(
    "setting",
    [
        "overlap_minutes = nan",
        "requests_per_minute = 1e9",
        '[endpoints.customers]\nhash = ["email"]',  # a field to hash, and no key for it
    ],
)
def test_bad_settings_in_the_file_exit_2_with_one_line(tmp_path, setting):
    (tmp_path / "ogsync.toml").write_text(setting + "\n")
    done = run_ogsync("sync", env={"OGSYNC_API_KEY": KEY}, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unexpected_error_shows_no_locals_and_no_key(tmp_path):
    """A warehouse path that is a folder fails inside DuckDB in a way nobody planned for."""
    (tmp_path / "w.duckdb").mkdir()
    env = {"OGSYNC_API_KEY": KEY, "OGSYNC_BASE_URL": "http://127.0.0.1:9"}
    done = run_ogsync("sync", "--destination", f"duckdb:///{tmp_path}/w.duckdb", env=env,
                      cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    assert KEY not in done.stdout + done.stderr
