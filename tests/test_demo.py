"""`ogsync demo`, the README's first command, end to end on a small merchant."""

from __future__ import annotations

import io

import duckdb
import pytest
from rich.console import Console

from ogsync.demo import run_demo


@pytest.mark.slow  # two syncs and a dbt build
def test_the_demo_syncs_changes_soft_deletes_and_shows_mrr_and_churn(tmp_path):
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
        months = conn.execute(
            "SELECT strftime(month_start, '%Y-%m'), sum(mrr) "
            "FROM ordergroove_analytics.ordergroove__monthly_recurring_revenue "
            "GROUP BY 1 ORDER BY 1 DESC LIMIT 12"
        ).fetchall()
    assert deleted > 0
    assert runs == 2
    # The summary: the last twelve months of the MRR mart, each with its bar, the largest full.
    assert "Monthly recurring revenue and churn" in text, text[-3000:]
    assert len(months) == 12
    for month, mrr in months:
        assert month in text and f"{mrr:,.0f}" in text
    assert "█" * 24 in text
    assert (tmp_path / "demo-dbt" / "dbt_project.yml").is_file()
