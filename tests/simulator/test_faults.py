"""Faults on the wire, the per-client limit, and the concurrency the stats record."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from ogsync.simulator.faults import Faults


def test_429_without_retry_after(make_api):
    with make_api(seed=41, records=200, faults=Faults(rate_429=1.0)) as api:
        for _ in range(3):
            response = api.list("orders")
            assert response.status_code == 429
            assert "retry-after" not in response.headers
        assert api.stats()["faults"] == {"429": 3}


def test_429_with_retry_after(make_api):
    with make_api(seed=41, records=200, faults=Faults(rate_429=1.0, retry_after=2)) as api:
        response = api.list("customers")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("faults", "statuses"),
    [
        (Faults(rate_5xx=1.0), {500, 502, 503, 504}),
        (Faults(rate_423=1.0), {423}),
    ],
)
def test_refusals(make_api, faults, statuses):
    with make_api(seed=42, records=200, faults=faults) as api:
        seen = {api.list("orders").status_code for _ in range(8)}
        assert seen <= statuses and seen
        response = api.list("items")
        assert response.status_code in statuses
        assert "detail" in response.json()


def test_malformed_body_is_200_and_not_json(make_api):
    with make_api(seed=43, records=200, faults=Faults(rate_malformed=1.0)) as api:
        response = api.list("orders")
        assert response.status_code == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(response.content)


def test_dropped_connection_fails_the_read(make_api):
    with make_api(seed=44, records=200, faults=Faults(rate_drop=1.0)) as api:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            api.list("orders")
        # The server keeps serving afterwards.
        api.set_faults(rate_drop=0.0)
        assert api.list("orders").status_code == 200


def test_latency(make_api):
    with make_api(seed=45, records=200, faults=Faults(latency_ms=100)) as api:
        for _ in range(3):
            started = time.monotonic()
            assert api.list("orders").status_code == 200
            assert time.monotonic() - started >= 0.075
        # It is jittered around the setting, by a quarter either way.
        started = time.monotonic()
        api.list("orders")
        assert time.monotonic() - started < 1.0


def test_limit_per_minute(make_api):
    with make_api(seed=46, records=200, faults=Faults(limit_per_minute=5)) as api:
        statuses = [api.list("orders").status_code for _ in range(5)]
        assert statuses == [200] * 5
        throttled = api.list("customers")
        assert throttled.status_code == 429
        assert api.stats()["faults"] == {"rate_limit": 1}
        # The controls are not limited.
        api.clock()  # raises unless it answers 2xx


def test_faults_switch_off_and_on_at_runtime(make_api):
    with make_api(seed=47, records=200, faults=Faults(rate_5xx=1.0)) as api:
        assert api.list("orders").status_code >= 500
        assert api.set_faults(rate_5xx=0.0)["rate_5xx"] == 0.0
        assert all(api.list("orders").status_code == 200 for _ in range(5))
        api.set_faults(rate_423=1.0)
        assert api.list("orders").status_code == 423
        assert api.faults()["rate_423"] == 1.0
        unknown = api.client.post("/__sim__/faults", json={"rate_meteor": 1.0})
        assert unknown.status_code == 400


def test_faults_aimed_at_chosen_endpoints(make_api):
    faults = Faults(rate_5xx=1.0, only_endpoints=["orders"])
    with make_api(seed=48, records=200, faults=faults) as api:
        assert api.list("orders").status_code >= 500
        assert api.list("customers").status_code == 200


def test_faults_do_not_hide_auth_errors(make_api):
    with make_api(seed=49, records=200, faults=Faults(rate_malformed=1.0)) as api:
        response = httpx.get(f"{api.url}/orders/", headers={"x-api-key": "nope"})
        assert response.status_code == 401
        assert response.json()["detail"]


# -- stats -----------------------------------------------------------------------------------


def test_stats_count_requests_and_sequential_concurrency(make_api):
    with make_api(seed=50, records=300) as api:
        for _ in range(4):
            api.list("orders")
        api.list("customers")
        api.list("orders", {"status": "abc"})
        stats = api.stats()
        assert stats["requests"] == {"orders": 5, "customers": 1}
        assert stats["requests_total"] == 6
        assert stats["statuses"] == {"200": 5, "400": 1}
        assert stats["max_concurrent"] == {"orders": 1, "customers": 1}
        assert stats["max_concurrent_per_endpoint"] == 1
        reset = api.reset_stats()
        assert reset["requests_total"] == 0 and reset["max_concurrent"] == {}


def test_stats_see_concurrent_requests(make_api):
    with make_api(seed=51, records=300, faults=Faults(latency_ms=200)) as api:

        def fetch(_: int) -> int:
            return api.list("orders").status_code

        with ThreadPoolExecutor(max_workers=5) as pool:
            assert list(pool.map(fetch, range(5))) == [200] * 5
        api.list("customers")
        stats = api.stats()
        assert stats["max_concurrent"]["orders"] >= 2
        assert stats["max_concurrent"]["customers"] == 1
        assert stats["max_concurrent_total"] >= 2
