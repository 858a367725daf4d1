"""`ogsync webhooks serve` as a user runs it: help, configuration errors, a real process."""

from __future__ import annotations

from webhook_support import SECRET

from ogsync.testing.cli import run_ogsync as ogsync


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
