"""A merchant with webhooks and syncs with history, for the history and governance tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ogsync.client import OrdergrooveClient, RateBudget, RetryPolicy
from ogsync.destinations.base import Destination
from ogsync.endpoints import ENDPOINTS
from ogsync.governance import Governance
from ogsync.options import SyncOptions
from ogsync.simulator.server import RunningSimulator, SimulatorConfig, simulator_in_thread
from ogsync.sync import SyncEngine, sync_with
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE
from ogsync.testing.sim_control import SimControl
from ogsync.webhooks.inbox import SQLiteInbox
from ogsync.webhooks.receiver import receiver_in_thread

CHICAGO = ZoneInfo("America/Chicago")
ALL = Governance(history=frozenset(ep.name for ep in ENDPOINTS))
SECRET = "history-test-secret"
FAST_RETRY = RetryPolicy(max_attempts=12, base_seconds=0.005, cap_seconds=0.05)


def advance(sim: RunningSimulator, minutes: float, changes: int) -> None:
    with SimControl(sim.url) as control:
        control.advance(minutes, changes)
        control.wait_for_deliveries()  # the deletion webhooks reach the inbox


def run(
    sim: RunningSimulator,
    dest: Destination,
    inbox: SQLiteInbox,
    governance: Governance = ALL,
    **options: Any,
) -> None:
    with OrdergrooveClient(
        sim.url, sim.api_key, retry=FAST_RETRY, budget=RateBudget(1_000_000)
    ) as client:
        opts = SyncOptions(
            endpoints=ENDPOINTS,
            clock_tolerance=SIMULATED_CLOCK_TOLERANCE,
            governance=governance,
            **options,
        )
        result = sync_with(SyncEngine(client, dest, CHICAGO, opts), inbox)
    assert result.exit_code == 0, [(o.endpoint, o.run.error) for o in result.outcomes]


def seen(sim: RunningSimulator) -> dict[str, set[tuple[str, bytes]]]:
    """What a sync run now would see: each endpoint's current versions (key, content)."""
    with SimControl(sim.url) as control:
        return {
            ep.name: {
                (str(r[ep.key]), orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
                for r in control.truth(ep)
            }
            for ep in ENDPOINTS
        }


@contextmanager
def merchant(tmp_path: Any, start: datetime) -> Iterator[tuple[RunningSimulator, SQLiteInbox]]:
    with (
        SQLiteInbox(tmp_path / "inbox.sqlite") as inbox,
        receiver_in_thread(inbox, [SECRET]) as receiver,
        simulator_in_thread(
            SimulatorConfig(
                records=700,
                seed=41,
                start=start,
                frozen_clock=True,
                webhook_url=receiver.webhook_url,
                webhook_secrets=[SECRET],
                webhook_retry_seconds=0.05,
            )
        ) as sim,
    ):
        yield sim, inbox
