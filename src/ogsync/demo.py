"""`ogsync demo`: a simulated merchant synced into DuckDB, changed, and synced again; then,
when dbt is installed, ogsync's dbt package built on it and a monthly MRR and churn summary.

Everything runs in this process: the simulator, the webhook receiver with its inbox (in a
temporary folder), and the syncs, so the deletions the changes cause arrive as signed
webhooks and end as soft deletes, as they would in production. dbt runs as its own process.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ogsync.analytics import build
from ogsync.analytics.scaffold import init_project
from ogsync.config import Settings
from ogsync.destinations.duckdb import file_url
from ogsync.endpoints import ENDPOINTS
from ogsync.shell import runnable
from ogsync.simulator.server import SimulatorConfig, simulator_in_thread
from ogsync.sync import SyncOptions, SyncResult, run_sync
from ogsync.webhooks.inbox import SQLiteInbox
from ogsync.webhooks.receiver import receiver_in_thread


def _counts(path: Path, schema: str) -> dict[str, tuple[int, int]]:
    """(current, soft-deleted) rows per table."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return {
            ep.name: conn.execute(
                f"SELECT count(*) FILTER (WHERE _deleted_at IS NULL), "
                f"count(*) FILTER (WHERE _deleted_at IS NOT NULL) FROM {schema}.{ep.name}"
            ).fetchone()
            for ep in ENDPOINTS
        }


def _wait_for_webhooks(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        seen = httpx.get(f"{url}/__sim__/webhooks").json()
        done = seen["delivered"] + seen["gave_up"] >= seen["queued"] and not seen["pending"]
        if done or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def run_demo(records: int, path: Path, console: Console) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    console.print(f"Starting the Ordergroove simulator with about {records:,} records...")
    secret = secrets.token_hex(16)
    with (
        tempfile.TemporaryDirectory(prefix="ogsync-demo-") as folder,
        SQLiteInbox(Path(folder) / "inbox.sqlite") as inbox,
        receiver_in_thread(inbox, [secret]) as receiver,
        simulator_in_thread(
            SimulatorConfig(
                records=records,
                webhook_url=f"{receiver.url}/webhooks/ordergroove",
                webhook_secrets=[secret],
                webhook_retry_seconds=0.2,
            )
        ) as sim,
    ):
        settings = Settings(
            api_key=sim.api_key,
            base_url=sim.url,
            destination=file_url(path),
            clock_tolerance_minutes=24 * 60,  # the simulated merchant's clock is moved on
        )
        options = SyncOptions.from_settings(settings, ENDPOINTS)

        first = run_sync(settings, options, inbox=inbox)
        console.print(_result_table("1. Full sync of all nine endpoints", first))
        before = _counts(path, settings.schema)

        change = httpx.post(f"{sim.url}/__sim__/advance", json={"minutes": 90, "changes": 400})
        made = change.json()["changes"]
        console.print(f"\n2. 90 simulated minutes pass with 400 changes: {made}")
        delivered = _wait_for_webhooks(sim.url)
        console.print(
            f"   Signed webhooks delivered to the receiver: {delivered['delivered']} "
            f"({delivered['by_type'].get('order.delete', 0)} order.delete, "
            f"{delivered['by_type'].get('item.remove', 0)} item.remove)\n"
        )

        second = run_sync(settings, options, inbox=inbox)
        console.print(_result_table("3. Incremental sync", second))
        after = _counts(path, settings.schema)

        table = Table(title=f"What changed in {path}")
        for column in ("table", "current before", "current after", "soft-deleted", "API now"):
            table.add_column(column, justify="left" if column == "table" else "right")
        for ep in ENDPOINTS:
            truth = len(httpx.get(f"{sim.url}/__sim__/truth/{ep.name}", timeout=60).json())
            table.add_row(
                ep.name,
                f"{before[ep.name][0]:,}",
                f"{after[ep.name][0]:,}",
                f"{after[ep.name][1]:,}",
                f"{truth:,}",
            )
        console.print(table)
        query = "SELECT status, count(*) FROM ordergroove.orders_current GROUP BY 1"
        console.print(
            f"Query it ({path} is yours to keep; orders_current is orders not deleted):\n"
            f'  {runnable("python")} -c "import duckdb; '
            f"duckdb.connect('{path}').sql('{query}').show()\"",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    analytics(path, settings, console)


def analytics(path: Path, settings: Settings, console: Console) -> bool:
    """Build the dbt package on the demo warehouse (a project beside it) and print a monthly
    MRR and churn summary; without dbt, say how to install it. True when it was built."""
    if not build.dbt_available("duckdb"):
        console.print(
            "\n4. Analytics: ogsync's dbt package builds MRR, churn and retention models on "
            f"this warehouse. dbt is not installed: {build.INSTALL_HINT}, then run the demo "
            "again.",
            markup=False,  # [dbt] is the extra's name, not markup
        )
        return False
    project = path.with_name(f"{path.stem}-dbt")
    init_project(project, settings, force=True)
    console.print(f"\n4. Building ogsync's dbt package on the warehouse (project {project})...")
    result = build.build_package(project)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-15:])
        console.print(f"[red]dbt failed[/] (exit {result.returncode}):\n{escape(tail)}")
        return False
    console.print(_summary_table(build.monthly_summary(path, settings.schema)))
    dbt = runnable("dbt")
    console.print(
        f"Explore it: cd {project} && {dbt} docs generate && {dbt} docs serve "
        f"(the marts are in {settings.schema}_analytics)",
        markup=False,
        highlight=False,
    )
    return True


def _summary_table(months: list[build.MonthSummary]) -> Table:
    table = Table(title="Monthly recurring revenue and churn (month-end, from the dbt marts)")
    # gained: new and reactivated MRR; lost: churned and contraction (definitions in the docs)
    for column in ("month", "active", "MRR", "", "gained", "lost", "cancelled"):
        table.add_column(column, justify="left" if column in ("month", "") else "right")
    largest = max((m.mrr for m in months), default=0.0)
    for m in months:
        table.add_row(
            m.month.strftime("%Y-%m"),
            f"{m.active_subscriptions:,}",
            f"{m.mrr:,.0f}",
            build.bar(m.mrr, largest),
            _signed("+", m.new_mrr),
            _signed("-", m.churned_mrr),
            f"{m.cancellations:,}",
        )
    return table


def _signed(sign: str, amount: float) -> str:
    shown = f"{amount:,.0f}"
    return shown if shown == "0" else f"{sign}{shown}"


def _result_table(title: str, result: SyncResult) -> Table:
    table = Table(title=title)
    for column in ("endpoint", "mode", "status", "records", "pages", "requests"):
        table.add_column(
            column, justify="right" if column in ("records", "pages", "requests") else "left"
        )
    for o in sorted(result.outcomes, key=lambda o: o.endpoint):
        table.add_row(
            o.endpoint,
            o.mode,
            o.run.status,
            f"{o.run.records:,}",
            str(o.run.pages),
            str(o.run.requests),
        )
    return table
