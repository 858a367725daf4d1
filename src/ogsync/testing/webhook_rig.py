"""A simulator whose webhooks reach a real receiver, for end-to-end deletion tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ogsync.simulator.server import RunningSimulator, SimulatorConfig, simulator_in_thread
from ogsync.testing.sim_control import SimControl
from ogsync.webhooks.inbox import Inbox
from ogsync.webhooks.receiver import receiver_in_thread


@contextmanager
def signed_deliveries(
    inbox: Inbox, secret: str, **config: Any
) -> Iterator[tuple[RunningSimulator, SimControl]]:
    """The simulator (`config`) signs its webhooks with `secret` and sends them to a receiver
    storing into `inbox`: a third of them twice, out of order, retried at once when refused,
    as the hardest order a sync must still apply correctly."""
    with receiver_in_thread(inbox, [secret]) as receiver:
        sim_config = SimulatorConfig(
            webhook_url=f"{receiver.url}/webhooks/ordergroove",
            webhook_secrets=[secret],
            webhook_duplicates=0.3,
            webhook_shuffle=True,
            webhook_retry_seconds=0.05,
            **config,
        )
        with simulator_in_thread(sim_config) as sim, SimControl(sim.url) as control:
            yield sim, control
