"""Building and running a simulator: in the foreground, in a thread, or as a child process."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from ogsync.apitime import DEFAULT_API_TIMEZONE, zone
from ogsync.serving import (
    serve_until_stopped,
    stop_process,
    uvicorn_config,
    uvicorn_in_thread,
    wait_until_answering,
)
from ogsync.simulator import DEFAULT_API_KEY
from ogsync.simulator.app import Simulator, build_app
from ogsync.simulator.changes import Changer
from ogsync.simulator.clock import SimClock
from ogsync.simulator.data import Catalog, Factory, generate, hex_id
from ogsync.simulator.deliver import WebhookDeliverer
from ogsync.simulator.faults import FaultDice, Faults
from ogsync.simulator.store import Store


@dataclass
class SimulatorConfig:
    seed: int = 1
    records: int = 10_000
    timezone: str = DEFAULT_API_TIMEZONE
    api_key: str = DEFAULT_API_KEY
    limited_key: str | None = None
    start: datetime | None = None  # the simulated clock's start; None is now
    frozen_clock: bool = False
    database: Path | None = None  # where SQLite keeps the records; None is a temporary file
    faults: Faults = field(default_factory=Faults)
    webhook_url: str | None = None
    webhook_secrets: list[str] = field(default_factory=list)
    webhook_duplicates: float = 0.0
    webhook_shuffle: bool = False
    webhook_retry_seconds: float = 1.0


def build(config: SimulatorConfig) -> Simulator:
    """Generate the merchant's data and wire up a simulator (no server yet)."""
    tz = zone(config.timezone)
    rng = random.Random(config.seed)
    clock = SimClock(config.start, frozen=config.frozen_clock)
    store = Store(config.database)
    factory = Factory(rng, tz, Catalog(merchant=hex_id(rng)))
    generate(store, factory, config.records, clock.now())
    deliverer = WebhookDeliverer(
        config.webhook_url,
        config.webhook_secrets,
        seed=config.seed,
        duplicates=config.webhook_duplicates,
        shuffle=config.webhook_shuffle,
        retry_base_seconds=config.webhook_retry_seconds,
    )
    return Simulator(
        store=store,
        clock=clock,
        tz=tz,
        changer=Changer(store, factory),
        deliverer=deliverer,
        faults=config.faults,
        dice=FaultDice(config.faults, config.seed),
        api_key=config.api_key,
        limited_key=config.limited_key,
    )


def simulator_config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn_config(app, host, port, date_header=False)  # it sends its own clock's Date


def serve(
    config: SimulatorConfig,
    host: str,
    port: int,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve in the foreground until stopped; `on_ready` gets the port once it listens."""
    sim = build(config)
    try:
        serve_until_stopped(simulator_config(build_app(sim), host, port), on_ready)
    finally:
        sim.store.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningSimulator:
    url: str
    api_key: str
    sim: Simulator | None = None  # present when it runs in this process


@contextmanager
def simulator_in_thread(
    config: SimulatorConfig, host: str = "127.0.0.1"
) -> Iterator[RunningSimulator]:
    """A simulator serving from a thread of this process, for tests and the demo."""
    sim = build(config)
    port = free_port(host)
    try:
        with uvicorn_in_thread(simulator_config(build_app(sim), host, port), "ogsync-simulator"):
            yield RunningSimulator(f"http://{host}:{port}", config.api_key, sim)
    finally:
        sim.store.close()


@contextmanager
def simulator_process(
    args: list[str],
    host: str = "127.0.0.1",
    *,
    api_key: str = DEFAULT_API_KEY,
    timeout: float = 120,
) -> Iterator[RunningSimulator]:
    """`ogsync simulator serve ARGS` as a child process (its own core, as in production).

    A port found free can be taken by someone else before the child binds it: a child that
    exits while starting is started again on another port.
    """
    for attempt in range(3):
        port = free_port(host)
        cmd = [sys.executable, "-m", "ogsync", "simulator", "serve", "--host", host]
        cmd += ["--port", str(port), "--api-key", api_key, *args]
        proc = subprocess.Popen(cmd, env=os.environ.copy())
        url = f"http://{host}:{port}"
        if wait_until_answering(proc, f"{url}/__sim__/clock", timeout):
            break
        if attempt == 2:
            raise RuntimeError(f"the simulator exited with status {proc.returncode}")
    try:
        yield RunningSimulator(url, api_key)
    finally:
        stop_process(proc)


def utc(text: str) -> datetime:
    """An ISO time; one without a zone is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
