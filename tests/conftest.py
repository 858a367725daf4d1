"""Shared fixtures: simulators served over real HTTP, and a small client to talk to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ogsync.endpoints import BY_NAME, Endpoint
from ogsync.simulator.server import RunningSimulator, SimulatorConfig, simulator_in_thread
from ogsync.testing.sim_control import SimControl

# A fixed simulated start, so that a seed always gives the same records.
START = datetime(2025, 3, 14, 17, 0, 0, tzinfo=UTC)
CURSOR = {"X-OG-API-VERSION": "2"}


class Api(SimControl):
    """A client for one running simulator: the walks tests need, and its controls (`truth`,
    `advance`, `stats`, ...) from `SimControl`."""

    def __init__(self, running: RunningSimulator) -> None:
        super().__init__(running.url)
        self.url = running.url
        self.api_key = running.api_key
        self.sim = running.sim
        self.client = httpx.Client(
            base_url=running.url, headers={"x-api-key": running.api_key}, timeout=30
        )

    def close(self) -> None:
        self.client.close()
        super().close()

    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.client.get(path, params=params, **kw)

    def list(self, ep: str, params: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        """One cursor-mode request to an endpoint."""
        headers = {**CURSOR, **kw.pop("headers", {})}
        return self.client.get(BY_NAME[ep].path, params=params, headers=headers, **kw)

    def page(self, ep: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.list(ep, params)
        assert response.status_code == 200, response.text
        return response.json()

    def follow(self, url: str) -> dict[str, Any]:
        response = self.client.get(url, headers=CURSOR)
        assert response.status_code == 200, response.text
        return response.json()

    def pages(self, ep: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a cursor walk, following `next` exactly as given."""
        body = self.page(ep, params)
        yield body
        while body["next"]:
            body = self.follow(body["next"])
            yield body

    def walk(self, ep: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        params = {"page_size": 100, **(params or {})}
        return [r for body in self.pages(ep, params) for r in body["results"]]

    @staticmethod
    def ids(ep: str | Endpoint, records: list[dict[str, Any]]) -> list[str]:
        """The records' keys (`merchant_user_id` for customers, and so on), in order."""
        key = (BY_NAME[ep] if isinstance(ep, str) else ep).key
        return [r[key] for r in records]


@contextmanager
def open_api(**config: Any) -> Iterator[Api]:
    """A simulator in a thread of this process (fixed start unless given) and a client to it."""
    config.setdefault("start", START)
    with simulator_in_thread(SimulatorConfig(**config)) as running:
        api = Api(running)
        try:
            yield api
        finally:
            api.close()


@pytest.fixture(scope="session")
def make_api() -> Callable[..., AbstractContextManager[Api]]:
    return open_api


@pytest.fixture(scope="session")
def api() -> Iterator[Api]:
    """A read-only simulator shared by the whole session: tests must not change its data."""
    with open_api(seed=7, records=5000, frozen_clock=True) as shared:
        yield shared


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server (`ogsync.testing.postgres.PostgresServer`) per session.

    Connect with `postgres_server.url`; tests share it, so each should use its own tables.
    """
    from ogsync.testing.postgres import throwaway_postgres

    with throwaway_postgres() as server:
        yield server
