"""`SimControl`, the one client of the simulator's `/__sim__/` controls: what it adds to them."""

from __future__ import annotations

from datetime import datetime

import pytest

from ogsync.simulator.server import free_port
from ogsync.testing.sim_control import DeliveriesPending, SimControl, SimControlError


def test_an_error_answer_raises_with_its_status_and_the_simulators_detail(api):
    with pytest.raises(SimControlError) as raised:
        api.truth("nothing")
    assert raised.value.status_code == 404
    assert str(raised.value) == "GET /__sim__/truth/nothing answered 404: unknown endpoint nothing"
    with pytest.raises(SimControlError, match="answered 400: unknown fault setting 'rate_meteor'"):
        api.set_faults(rate_meteor=1.0)  # type: ignore[call-arg]


def test_truth_by_key_keys_the_records_as_text_the_way_the_warehouse_does(api):
    records = api.truth("customers")
    by_key = api.truth_by_key("customers")
    assert list(by_key) == [str(r["merchant_user_id"]) for r in records]
    assert list(by_key.values()) == records


def test_the_clock_is_set_only_to_an_aware_time(api):
    with pytest.raises(ValueError, match="aware"):
        api.set_clock(datetime(2026, 1, 1))


def test_a_closed_control_sends_nothing(api):
    with SimControl(api.url) as control:
        assert control.clock()["frozen"] is True
    with pytest.raises(RuntimeError, match="closed"):
        control.clock()


def test_waiting_for_deliveries_that_cannot_arrive_raises_with_the_last_state(make_api):
    nobody = f"http://127.0.0.1:{free_port()}/webhooks"
    with make_api(
        seed=34, records=300, webhook_url=nobody, webhook_secrets=["k"], webhook_retry_seconds=60
    ) as api:
        api.advance(minutes=5, changes=40)
        with pytest.raises(DeliveriesPending) as raised:
            api.wait_for_deliveries(timeout=0.3)
    state = raised.value.state
    assert state["queued"] > 0 and state["pending"] > 0 and state["delivered"] == 0
