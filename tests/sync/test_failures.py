"""What goes wrong on the way: fault storms, broken pages, half-finished refreshes."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import orjson
from sync_support import assert_equals_truth, client_for, query, rows, run_sync
from sync_support import simulator as running_simulator

from ogsync.client import RetryPolicy
from ogsync.endpoints import BY_NAME
from ogsync.output import LogListener
from ogsync.simulator.faults import Faults
from ogsync.testing.sim_control import SimControl


def test_429_and_5xx_storms_still_end_equal_to_truth(db):
    storm = Faults(rate_429=0.25, rate_5xx=0.1, rate_423=0.05, rate_drop=0.03, rate_malformed=0.03)
    with (
        running_simulator(records=2500, seed=21, faults=storm) as sim,
        SimControl(sim.url) as control,
    ):
        first = run_sync(sim, db, batch_records=150)  # many batches, each with its checkpoint
        assert first.exit_code == 0, [o.run.error for o in first.outcomes if not o.ok]
        control.advance(minutes=30, changes=120)
        second = run_sync(sim, db, batch_records=150)
        assert second.exit_code == 0, [o.run.error for o in second.outcomes if not o.ok]
        assert_equals_truth(sim, db)
    logged = query(db, "SELECT sum(retries), sum(rate_limit_waits) FROM ordergroove._ogsync_runs")
    retries, waits = logged[0]
    assert retries > 20 and waits > 10


def test_a_page_that_stays_broken_fails_only_its_endpoint_and_keeps_its_watermark(db):
    with running_simulator(records=1500, seed=22) as sim, SimControl(sim.url) as control:
        assert run_sync(sim, db).exit_code == 0
        before = dict(query(db, "SELECT endpoint, watermark FROM ordergroove._ogsync_state"))
        control.advance(minutes=10, changes=50)
        control.set_faults(rate_malformed=1.0, only_endpoints=["orders"])
        client = client_for(sim, retry=RetryPolicy(max_attempts=3, base_seconds=0.001))
        result = run_sync(sim, db, client=client)
        client.close()
    after = dict(query(db, "SELECT endpoint, watermark FROM ordergroove._ogsync_state"))
    outcome = {o.endpoint: o for o in result.outcomes}
    assert result.exit_code == 1
    assert not outcome["orders"].ok
    assert "invalid JSON" in (outcome["orders"].run.error or "")
    assert "3 attempts" in (outcome["orders"].run.error or "")
    assert all(o.ok for name, o in outcome.items() if name != "orders")
    assert after["orders"] == before["orders"]
    assert after["customers"] > before["customers"]
    (status, error) = query(
        db,
        "SELECT status, error FROM ordergroove._ogsync_runs WHERE endpoint = 'orders' "
        "ORDER BY started_at DESC LIMIT 1",
    )[0]
    assert status == "failed" and "attempts" in error


def _rewriting(sim, rewrite: Callable[[httpx.Request, dict], dict | None]) -> httpx.BaseTransport:
    """Real HTTP to the simulator, with the body reshaped: a page the simulator cannot make."""
    real = httpx.HTTPTransport()

    class Rewrite(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = real.handle_request(request)
            response.read()
            body = orjson.loads(response.content)
            changed = rewrite(request, body)
            if changed is None:
                return response
            headers = {k: v for k, v in response.headers.items() if k != "content-length"}
            return httpx.Response(response.status_code, headers=headers, json=changed)

    return Rewrite()


def test_a_record_without_its_key_fails_its_endpoint_with_a_clear_error(db):
    def drop_key(request: httpx.Request, body: dict) -> dict | None:
        if request.url.path == "/subscriptions/" and body.get("results"):
            del body["results"][0]["public_id"]
            return body
        return None

    with running_simulator(records=800, seed=23) as sim:
        client = client_for(sim, transport=_rewriting(sim, drop_key))
        result = run_sync(sim, db, client=client)
        client.close()
    outcome = {o.endpoint: o for o in result.outcomes}
    assert not outcome["subscriptions"].ok
    assert outcome["subscriptions"].run.error == "subscriptions: a record has no public_id"
    assert outcome["orders"].ok and result.exit_code == 1
    assert rows(db, BY_NAME["subscriptions"]) == {}


def test_unknown_fields_survive_in_raw_and_are_reported_once_per_run(db, caplog):
    def add_field(request: httpx.Request, body: dict) -> dict | None:
        if request.url.path == "/customers/":
            for record in body.get("results", []):
                record["loyalty_tier"] = "gold"
            return body
        return None

    with running_simulator(records=1500, seed=24) as sim:
        client = client_for(sim, transport=_rewriting(sim, add_field))
        with caplog.at_level(logging.WARNING, logger="ogsync"):
            result = run_sync(
                sim, db, [BY_NAME["customers"]], client=client, listener=LogListener()
            )
        client.close()
    assert result.outcomes[0].unknown_fields == {"loyalty_tier"}
    stored = rows(db, BY_NAME["customers"])
    assert len(stored) > 50
    assert all(orjson.loads(r["_raw"])["loyalty_tier"] == "gold" for r in stored.values())
    reports = [r for r in caplog.records if "loyalty_tier" in r.getMessage()]
    assert len(reports) == 1


def test_a_full_refresh_soft_deletes_only_when_it_completed(db):
    payments = BY_NAME["payments"]
    with running_simulator(records=3000, seed=25) as sim:
        run_sync(sim, db, [payments])
        store = sim.sim.store
        removed = [r[0] for r in store.conn.execute("SELECT id FROM payments LIMIT 3")]
        store.delete(payments, removed, sim.sim.clock.now())

        def fail_second_page(request: httpx.Request, body: dict) -> dict | None:
            if request.url.path == "/payments/" and "cursor" in request.url.params:
                return {"detail": "boom"}  # no `results`: a malformed page
            return None

        client = client_for(sim, transport=_rewriting(sim, fail_second_page))
        broken = run_sync(sim, db, [payments], client=client)
        client.close()
        assert broken.exit_code == 1
        still = rows(db, payments, "_deleted_at IS NULL")
        assert set(removed) <= set(still)

        assert run_sync(sim, db, [payments]).exit_code == 0
        gone = rows(db, payments, "_deleted_at IS NOT NULL")
        assert set(gone) == set(removed)
        assert {r["_deleted_reason"] for r in gone.values()} == {"full_refresh"}
        tombstones = query(
            db, "SELECT record_id FROM ordergroove._ogsync_deletions WHERE reason='full_refresh'"
        )
        assert {t[0] for t in tombstones} == set(removed)


def test_a_test_window_leaves_the_watermark_alone(db):
    with (
        running_simulator(records=1000, seed=26, frozen_clock=True) as sim,
        SimControl(sim.url) as control,
    ):
        first = run_sync(sim, db, [BY_NAME["orders"]])
        control.advance(minutes=60, changes=40)
        since = first.run_started_at
        window = run_sync(sim, db, [BY_NAME["orders"]], since=since)
        assert window.outcomes[0].mode == "test_window"
        (watermark,) = query(db, "SELECT watermark FROM ordergroove._ogsync_state")[0]
        assert watermark == first.run_started_at
        assert window.outcomes[0].run.records > 0
