"""The simulator delivering to the receiver as Ordergroove does: duplicates, shuffling,
retries, and a receiver killed with SIGKILL mid-stream. Nothing answered 2xx may be lost, and
nothing else may be lost either: it is delivered again."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from webhook_support import SECRET, inbox_rows

from ogsync.serving import stop_process
from ogsync.simulator.server import SimulatorConfig, free_port, simulator_in_thread
from ogsync.testing.cli import clean_env
from ogsync.testing.sim_control import SimControl, WebhookState
from ogsync.webhooks.receiver import PATH

START_ISO = "2025-03-14T17:00:00+00:00"


def simulator_config(webhook_url: str, **kw: Any) -> SimulatorConfig:
    from datetime import datetime

    return SimulatorConfig(
        seed=kw.pop("seed", 11),
        records=kw.pop("records", 2000),
        start=datetime.fromisoformat(START_ISO),
        frozen_clock=True,
        webhook_url=webhook_url,
        webhook_secrets=[SECRET],
        webhook_duplicates=0.3,
        webhook_shuffle=True,
        webhook_retry_seconds=0.05,
        **kw,
    )


def wait_delivered(sim: SimControl, timeout: float) -> WebhookState:
    deadline = time.monotonic() + timeout
    while True:
        state = sim.webhooks()
        # `pending` leaves out the one delivery in flight: wait until each queued one has ended.
        finished = state["delivered"] + state["gave_up"]
        if state["pending"] == 0 and state["queued"] > 0 and finished == state["queued"]:
            return state
        assert time.monotonic() < deadline, f"still pending: {state['pending']}"
        time.sleep(0.05)


def check_inbox_against_simulator(
    rows: list[dict[str, Any]], state: WebhookState, sim: SimControl, events: Counter
) -> None:
    ids = [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert set(state["delivered_ids"]) == set(ids)  # every delivered event, and only those
    assert len(ids) == sum(events.values())  # every event the simulator made
    assert state["gave_up"] == 0
    by_type = Counter(r["type"] for r in rows)
    assert by_type == events
    deleted_orders = {r["object_id"] for r in rows if r["type"] == "order.delete"}
    assert deleted_orders == set(sim.deleted("orders"))
    removed = {r["object_id"] for r in rows if r["type"] == "item.remove"}
    assert removed <= set(sim.deleted("items"))
    assert all(r["order_id"] for r in rows if r["type"] == "item.remove")


def test_simulator_delivers_everything_exactly_once_into_the_inbox(make_receiver, sqlite_inbox):
    with make_receiver() as receiver:
        config = simulator_config(receiver.running.webhook_url)
        with simulator_in_thread(config) as running, SimControl(running.url) as sim:
            events: Counter = Counter()
            for _ in range(3):
                result = sim.advance(minutes=20, changes=150)
                events.update(result["events"])
            state = wait_delivered(sim, timeout=20)
            assert state["delivered"] > sum(events.values())  # duplicates were sent
            rows = inbox_rows(sqlite_inbox.path)
            check_inbox_against_simulator(rows, state, sim, events)
            metrics = receiver.client.get("/metrics").text
            assert f"ogsync_webhook_events_stored_total {float(len(rows))}" in metrics
            duplicates = state["delivered"] - len(rows)
            assert f"ogsync_webhook_events_duplicate_total {float(duplicates)}" in metrics


def test_deliveries_refused_while_the_key_is_wrong_arrive_after_it_is_fixed(
    make_receiver, sqlite_inbox
):
    with make_receiver(secrets=["not-the-key"]) as receiver:
        config = simulator_config(receiver.running.webhook_url, seed=12)
        with simulator_in_thread(config) as running, SimControl(running.url) as sim:
            result = sim.advance(minutes=20, changes=40)
            deadline = time.monotonic() + 10
            while sim.webhooks()["failed_attempts"] < 40:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert inbox_rows(sqlite_inbox.path) == []
            # The right key now (as after a configuration fix): the retries get through.
            with make_receiver(secrets=[SECRET]) as fixed:
                assert running.sim is not None
                running.sim.deliverer.url = fixed.running.webhook_url
                state = wait_delivered(sim, timeout=20)
            check_inbox_against_simulator(
                inbox_rows(sqlite_inbox.path), state, sim, Counter(result["events"])
            )


def spawn_receiver(port: int, inbox: Path, log: Path) -> subprocess.Popen[bytes]:
    env = clean_env()
    env["OGSYNC_WEBHOOK_SECRET"] = SECRET
    cmd = [sys.executable, "-m", "ogsync", "webhooks", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--inbox", str(inbox)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_mid_delivery_loses_nothing(tmp_path):
    port = free_port()
    inbox, log = tmp_path / "inbox.sqlite", tmp_path / "receiver.log"
    url = f"http://127.0.0.1:{port}{PATH}"
    receiver = spawn_receiver(port, inbox, log)
    try:
        config = simulator_config(url, seed=13)
        with simulator_in_thread(config) as running, SimControl(running.url) as sim:
            events = Counter(sim.advance(minutes=60, changes=1500)["events"])
            total = sum(events.values())
            deadline = time.monotonic() + 20
            while sim.webhooks()["delivered"] < total // 3:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            receiver.send_signal(signal.SIGKILL)
            receiver.wait()
            at_kill = sim.webhooks()
            assert at_kill["pending"] > 0  # killed mid-stream, with work left
            # Every event answered 2xx before the kill is on disk.
            answered = set(at_kill["delivered_ids"])
            on_disk = {r["event_id"] for r in inbox_rows(inbox)}
            assert answered <= on_disk, len(answered - on_disk)
            time.sleep(0.3)  # deliveries fail meanwhile and are retried later
            receiver = spawn_receiver(port, inbox, log)
            state = wait_delivered(sim, timeout=30)
            assert state["failed_attempts"] > 0
            check_inbox_against_simulator(inbox_rows(inbox), state, sim, events)
    finally:
        stop_process(receiver)
    assert receiver.returncode == 0, log.read_text()  # a clean stop on SIGTERM
    assert "Traceback" not in log.read_text()


def test_the_deliverer_outlives_an_error_from_the_http_stack_and_sends_again():
    """A receiver killed mid-request once surfaced from httpcore as an AttributeError, which
    stopped the deliverer for good; it is now a failed attempt like any other."""
    import asyncio

    from ogsync.simulator.deliver import WebhookDeliverer

    answers = [AttributeError("'NoneType' object has no attribute 'getpeername'")]

    def handle(request: httpx.Request) -> httpx.Response:
        if answers:
            raise answers.pop()
        return httpx.Response(204)

    async def deliver() -> WebhookDeliverer:
        deliverer = WebhookDeliverer(
            "http://receiver.test/webhooks",
            [SECRET],
            retry_base_seconds=0.01,
            transport=httpx.MockTransport(handle),
        )
        deliverer.start()
        deliverer.enqueue([{"id": "evt-1", "type": "order.delete", "object": {}}])
        for _ in range(200):
            if not deliverer.pending:
                break
            await asyncio.sleep(0.01)
        await deliverer.stop()
        return deliverer

    deliverer = asyncio.run(deliver())
    assert deliverer.sent_ids == ["evt-1"]
    assert (deliverer.stats.attempts, deliverer.stats.failed_attempts) == (2, 1)
