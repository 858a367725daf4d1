"""`ogsync demo`, the README's first command, end to end on a small merchant."""

from __future__ import annotations

import io

import duckdb
from rich.console import Console

from ogsync.demo import run_demo


def test_the_demo_syncs_changes_and_soft_deletes_what_the_webhooks_announce(tmp_path):
    out = io.StringIO()
    path = tmp_path / "demo.duckdb"
    run_demo(1500, path, Console(file=out, width=120))
    text = out.getvalue()
    assert "1. Full sync of all nine endpoints" in text
    assert "Signed webhooks delivered to the receiver" in text
    assert "ordergroove.orders_current" in text  # how to query it, by the view's new name
    with duckdb.connect(str(path), read_only=True) as conn:
        (deleted,) = conn.execute(
            "SELECT count(*) FROM ordergroove.orders WHERE _deleted_reason = 'webhook:order.delete'"
        ).fetchone()
        (runs,) = conn.execute(
            "SELECT count(DISTINCT run_id) FROM ordergroove._ogsync_runs WHERE status = 'success'"
        ).fetchone()
    assert deleted > 0
    assert runs == 2
