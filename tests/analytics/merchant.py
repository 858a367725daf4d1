"""A simulated merchant synced into a warehouse over a few simulated months, as in production
(settings, webhooks delivered to a receiver, incremental syncs), with what the simulator knows
kept for the known-answer tests: every version of every subscription, which of them a sync
saw, the final truth and the deletions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ogsync.config import Settings
from ogsync.endpoints import ENDPOINTS
from ogsync.simulator.server import SimulatorConfig, simulator_in_thread
from ogsync.sync import SyncOptions, run_sync
from ogsync.testing.sim_control import SimControl
from ogsync.webhooks.inbox import SQLiteInbox
from ogsync.webhooks.receiver import receiver_in_thread

SECRET = "dbt-test-secret"
# A fixed simulated start, so that a seed always gives the same merchant (as tests/conftest.py).
START = datetime(2025, 3, 14, 17, 0, 0, tzinfo=UTC)
KNOWN = ("subscriptions", "customers", "orders", "items", "products")


@dataclass
class SyncedMerchant:
    settings: Settings
    # Per subscription, its versions the simulator made, oldest first, as records.
    versions: dict[str, list[dict[str, Any]]]
    # The contents each sync saw (key -> sorted JSON), one set per sync.
    seen: list[dict[str, bytes]]
    truth: dict[str, list[dict[str, Any]]]  # the final records of the endpoints in KNOWN
    deleted: dict[str, set[str]]  # orders and items hard-deleted (the webhooks' deletions)

    def seen_versions(self) -> dict[str, list[dict[str, Any]]]:
        """The versions some sync saw (the history table can hold no other), oldest first."""
        contents = {(key, content) for snapshot in self.seen for key, content in snapshot.items()}
        return {
            key: [v for v in versions if (key, _content(v)) in contents]
            for key, versions in self.versions.items()
        }


def _content(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def sync_merchant(
    destination: str,
    schema: str,
    folder: Path,
    *,
    start: datetime,
    records: int = 3000,
    seed: int = 11,
    rounds: int = 3,
    days_per_round: int = 20,
    changes_per_round: int = 150,
) -> SyncedMerchant:
    """Generate a merchant, sync it (all nine endpoints, history as by default), then `rounds`
    times let `days_per_round` simulated days pass with changes and sync again."""
    with (
        SQLiteInbox(folder / f"{schema}-inbox.sqlite") as inbox,
        receiver_in_thread(inbox, [SECRET]) as receiver,
        simulator_in_thread(
            SimulatorConfig(
                records=records,
                seed=seed,
                start=start,
                frozen_clock=True,
                webhook_url=receiver.webhook_url,
                webhook_secrets=[SECRET],
                webhook_retry_seconds=0.05,
            )
        ) as sim,
        SimControl(sim.url) as control,
    ):
        settings = Settings(
            api_key=sim.api_key,
            base_url=sim.url,
            destination=destination,
            schema=schema,
            clock_tolerance_minutes=10 * 365 * 24 * 60,  # the simulated clock is in 2025
            requests_per_minute=1_000_000,
        )
        options = SyncOptions.from_settings(settings, ENDPOINTS)
        seen = []
        for round_ in range(rounds + 1):
            if round_:
                control.advance(days_per_round * 24 * 60, changes_per_round)
                control.wait_for_deliveries()
            result = run_sync(settings, options, inbox=inbox)
            assert result.exit_code == 0, [(o.endpoint, o.run.error) for o in result.outcomes]
            seen.append({r["public_id"]: _content(r) for r in control.truth("subscriptions")})
        versions: dict[str, list[dict[str, Any]]] = {}
        for version in control.versions("subscriptions"):
            versions.setdefault(version["id"], []).append(version["record"])
        return SyncedMerchant(
            settings=settings,
            versions=versions,
            seen=seen,
            truth={name: control.truth(name) for name in KNOWN},
            deleted={name: set(control.deleted(name)) for name in ("orders", "items")},
        )
