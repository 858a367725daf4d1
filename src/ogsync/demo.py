"""`ogsync demo`: the simulator in-process, paged as a sync would, then changed and paged again."""

from __future__ import annotations

from datetime import timedelta

import httpx
from rich.console import Console
from rich.table import Table

from ogsync.apitime import format_filter, zone
from ogsync.endpoints import ENDPOINTS
from ogsync.simulator.server import SimulatorConfig, simulator_in_thread


def _page_all(client: httpx.Client, path: str, params: dict[str, str]) -> tuple[int, int]:
    """(records, pages) of one endpoint, following `next` as given."""
    records = pages = 0
    url: str | None = path
    first = True
    while url:
        response = client.get(url, params={**params, "page_size": "100"} if first else None)
        response.raise_for_status()
        page = response.json()
        records += len(page["results"])
        pages += 1
        url, first = page["next"], False
    return records, pages


def run_demo(records: int, console: Console) -> None:
    config = SimulatorConfig(records=records)
    console.print(f"Starting the Ordergroove simulator with {records:,} records...")
    with simulator_in_thread(config) as running:
        headers = {"x-api-key": running.api_key, "X-OG-API-VERSION": "2"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=30) as client:
            clock = client.get("/__sim__/clock").json()
            console.print(f"Simulated time: {clock['local']} ({clock['timezone']})")
            table = Table(title="Full history, paged with the cursor (page_size=100)")
            for column in ("endpoint", "records", "pages"):
                table.add_column(column, justify="right" if column != "endpoint" else "left")
            for ep in ENDPOINTS:
                found, pages = _page_all(client, ep.path, dict(ep.list_params))
                table.add_row(ep.name, f"{found:,}", str(pages))
            console.print(table)

            tz = zone(clock["timezone"])
            sim = running.sim
            assert sim is not None
            since = sim.clock.now_datetime() - timedelta(minutes=1)
            changed = client.post("/__sim__/advance", json={"minutes": 60, "changes": 300}).json()
            console.print(f"\nAdvanced 60 minutes with 300 changes: {changed['changes']}")
            console.print(f"Webhook events raised: {changed['events']}")
            table = Table(title=f"Changed since {format_filter(since, tz)} (incremental fetch)")
            for column in ("endpoint", "records", "pages", "deleted so far"):
                table.add_column(column, justify="right" if column != "endpoint" else "left")
            for ep in ENDPOINTS:
                if not ep.incremental:
                    continue
                params = {ep.start_param or "": format_filter(since, tz)}
                found, pages = _page_all(client, ep.path, params)
                gone = len(client.get(f"/__sim__/deleted/{ep.name}").json())
                table.add_row(ep.name, f"{found:,}", str(pages), str(gone))
            console.print(table)
