"""`/__sim__/advance`: changes, hard deletions, the simulated clock; signed webhook delivery."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from ogsync.endpoints import BY_NAME
from ogsync.webhooks.signature import HEADER, parse, verify


def date_header(api) -> object:
    response = api.list("customers", {"page_size": 1})
    assert response.status_code == 200
    return parsedate_to_datetime(response.headers["date"])


def test_advance_reports_counts_and_changes_the_truth(make_api):
    with make_api(seed=21, records=2000, frozen_clock=True) as api:
        before = {ep: api.truth(ep) for ep in ("orders", "items", "customers", "subscriptions")}
        clock = api.clock()
        result = api.advance(minutes=90, changes=300)
        assert sum(result["changes"].values()) == 300
        assert set(result["changes"]) >= {"place_order", "cancel_subscription", "skip_order"}
        assert result["events"]["order.delete"] > 0
        assert result["events"]["item.remove"] > 0
        assert result["events"]["order.success"] > 0
        after_clock = api.clock()
        assert after_clock["now"] == result["clock"]
        assert after_clock["frozen"] is True
        assert after_clock["timezone"] == "America/Chicago"
        assert after_clock["local"] > clock["local"]
        for ep, records in before.items():
            assert api.truth(ep) != records, ep
        # Changed records carry update times inside the advanced window.
        window_start = clock["local"]
        touched = [o for o in api.truth("orders") if o["updated"] > window_start]
        assert touched and all(o["updated"] <= after_clock["local"] for o in touched)


def test_no_record_is_stamped_after_the_simulated_clock(make_api):
    """A stamp in the future would let a later change land behind a paging cursor."""
    with make_api(seed=24, records=2000, frozen_clock=True) as api:
        for _ in range(5):
            api.advance(minutes=1, changes=100)
            local = api.clock()["local"]
            for ep in ("orders", "items", "subscriptions", "customers"):
                field = BY_NAME[ep].update_field
                latest = max(r[field] for r in api.truth(ep))
                assert latest <= local, (ep, latest, local)


def test_advance_rejects_bad_input(api):
    for body in ({"minutes": -1}, {"changes": "many"}, [1, 2]):
        response = api.client.post("/__sim__/advance", json=body)
        assert response.status_code == 400
    assert api.client.post("/__sim__/advance", content=b"{nope").status_code == 400


def test_deleted_ids_are_gone_from_truth_and_listing(make_api):
    with make_api(seed=22, records=2000) as api:
        known_orders = set(api.ids("orders", api.truth("orders")))
        known_items = set(api.ids("items", api.truth("items")))
        for _ in range(3):
            api.advance(minutes=10, changes=150)
        for ep, known in (("orders", known_orders), ("items", known_items)):
            gone = api.deleted(ep)
            assert gone, ep
            assert len(gone) == len(set(gone))
            # Some of the deleted records existed at the start (the rest were made since).
            assert set(gone) & known, ep
            assert not set(gone) & set(api.ids(ep, api.truth(ep)))
            assert not set(gone) & set(api.ids(ep, api.walk(ep)))
        # Deleted items belonged to unsent orders: none of the remaining items points to a
        # deleted order.
        assert not {i["order"] for i in api.truth("items")} & set(api.deleted("orders"))
        # Raw requests: the controls' own error statuses (SimControl raises on them).
        assert api.get("/__sim__/deleted/nothing").status_code == 404
        assert api.get("/__sim__/truth/nothing").status_code == 404


@pytest.mark.slow
def test_date_header_follows_the_simulated_clock(make_api):
    with make_api(seed=23, records=300, frozen_clock=True) as api:
        first = date_header(api)
        assert first == api.sim.clock.now_datetime().replace(microsecond=0)
        time.sleep(1.1)
        assert date_header(api) == first  # frozen: real time does not move it
        api.advance(minutes=7)
        assert date_header(api) - first == timedelta(minutes=7)
        api.advance(minutes=0.5, changes=5)
        assert date_header(api) - first == timedelta(minutes=7, seconds=30)


def test_date_header_runs_with_real_time_when_not_frozen(make_api):
    with make_api(seed=23, records=300) as api:
        first = date_header(api)
        api.advance(minutes=3)
        moved = date_header(api) - first
        assert timedelta(minutes=3) <= moved <= timedelta(minutes=3, seconds=5)


def test_clock_can_be_set(make_api):
    with make_api(seed=23, records=300) as api:
        state = api.set_clock(datetime(2026, 11, 1, 6, 30, tzinfo=UTC), frozen=True)
        assert state["local"] == "2026-11-01 01:30:00"
        assert date_header(api).isoformat() == "2026-11-01T06:30:00+00:00"
        bad = api.client.post("/__sim__/clock", json={"set": "tomorrow"})
        assert bad.status_code == 400


@pytest.mark.slow
def test_freezing_and_thawing_the_clock_never_moves_it(make_api):
    with make_api(seed=23, records=300) as api:
        time.sleep(0.6)
        running = parsedate_to_datetime(api.list("customers").headers["date"])
        frozen = api.freeze()
        assert frozen["frozen"] is True
        stopped = date_header(api)
        assert timedelta(0) <= stopped - running <= timedelta(seconds=1)
        time.sleep(0.6)
        assert date_header(api) == stopped
        api.thaw()
        assert timedelta(0) <= date_header(api) - stopped <= timedelta(seconds=1)


# -- webhooks --------------------------------------------------------------------------------


class Receiver:
    """An HTTP server in a thread recording every POST; it can fail the first few."""

    def __init__(self, fail_first: int = 1) -> None:
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    status = 500 if len(receiver.requests) < fail_first else 200
                    receiver.requests.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def wait_delivered(api, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = api.webhooks()
        if state["pending"] == 0 and state["queued"] > 0:
            return state
        assert time.monotonic() < deadline, f"webhooks still pending: {state}"
        time.sleep(0.05)


def header_named(headers: dict[str, str], name: str) -> str:
    return next(v for k, v in headers.items() if k.lower() == name.lower())


def header_of(headers: dict[str, str]) -> str:
    return header_named(headers, HEADER)


@pytest.fixture(scope="module")
def delivery(make_api):
    with (
        Receiver(fail_first=1) as receiver,
        make_api(
            seed=31,
            records=2000,
            webhook_url=receiver.url,
            webhook_secrets=["s3cret"],
            webhook_retry_seconds=0.05,
            webhook_duplicates=0.5,
            webhook_shuffle=True,
        ) as api,
    ):
        results = [api.advance(minutes=5, changes=100) for _ in range(3)]
        state = wait_delivered(api)
        yield (
            api,
            receiver,
            results,
            state,
            {
                "orders": api.deleted("orders"),
                "items": api.deleted("items"),
            },
        )


def test_every_webhook_is_signed_and_shaped_as_documented(delivery):
    _, receiver, _, _, _ = delivery
    assert len(receiver.requests) > 20
    for headers, body, _ in receiver.requests:
        assert header_named(headers, "content-type") == "application/json"
        ts = verify(header_of(headers), body, ["s3cret"])
        assert abs(ts - time.time()) < 120
        event = orjson.loads(body)
        assert set(event) >= {"id", "type", "created", "data"}
        assert isinstance(event["id"], str) and len(event["id"]) == 32
        assert isinstance(event["created"], int) and not isinstance(event["created"], bool)
        obj = event["data"]["object"]
        assert len(obj["public_id"]) == 32
        if event["type"].startswith("item."):
            assert len(obj["order"]) == 32
        if event["type"].startswith("order."):
            for name in ("created", "updated"):
                assert obj[name] is None or isinstance(obj[name], int), (name, obj[name])
    # A wrong secret does not verify.
    headers, body, _ = receiver.requests[0]
    with pytest.raises(ValueError):
        verify(header_of(headers), body, ["other"])


def test_every_deletion_is_announced(delivery):
    api, receiver, results, state, deleted = delivery
    events = [orjson.loads(body) for _, body, status in receiver.requests if status == 200]
    announced_orders = {
        e["data"]["object"]["public_id"] for e in events if e["type"] == "order.delete"
    }
    removed_items = {e["data"]["object"]["public_id"] for e in events if e["type"] == "item.remove"}
    assert deleted["orders"] and set(deleted["orders"]) == announced_orders
    assert removed_items and removed_items <= set(deleted["items"])
    # Removed items name the order they left: it still exists or its deletion was announced.
    live_orders = set(api.ids("orders", api.truth("orders")))
    for e in events:
        if e["type"] == "item.remove":
            assert e["data"]["object"]["order"] in live_orders | announced_orders
    sent = Counter(e["type"] for e in {e["id"]: e for e in events}.values())
    made = Counter()
    for result in results:
        made.update(result["events"])
    assert sent == made
    assert state["delivered"] == len(events)
    assert state["gave_up"] == 0


def test_duplicates_and_retries_are_delivered(delivery):
    _, receiver, _, state, _ = delivery
    ok = Counter(orjson.loads(body)["id"] for _, body, status in receiver.requests if status == 200)
    assert any(n >= 2 for n in ok.values()), "no duplicate delivered"
    _, body, status = receiver.requests[0]
    assert status == 500
    failed_id = orjson.loads(body)["id"]
    assert ok[failed_id] >= 1, "the failed first attempt was not retried"
    assert state["failed_attempts"] >= 1
    assert state["attempts"] == len(receiver.requests)
    assert sorted(state["delivered_ids"]) == sorted(ok.elements())


def test_shuffled_delivery_is_out_of_order(delivery):
    _, receiver, _, _, _ = delivery
    created = [orjson.loads(body)["created"] for _, body, _ in receiver.requests]
    assert created != sorted(created)


def test_rotation_signs_with_every_key(make_api):
    with (
        Receiver(fail_first=0) as receiver,
        make_api(
            seed=32,
            records=1000,
            webhook_url=receiver.url,
            webhook_secrets=["old-key", "new-key"],
            webhook_retry_seconds=0.05,
        ) as api,
    ):
        api.advance(minutes=5, changes=60)
        state = wait_delivered(api)
        assert state["failed_attempts"] == 0
        assert receiver.requests
        for headers, body, _ in receiver.requests:
            header = header_of(headers)
            assert header.count("sig=") == 2
            assert len(parse(header).signatures) == 2
            verify(header, body, ["old-key"])
            verify(header, body, ["new-key"])


def test_no_webhooks_without_a_url(make_api):
    with make_api(seed=33, records=500) as api:
        api.advance(minutes=5, changes=50)
        state = api.webhooks()
        assert state["queued"] == 0 and state["pending"] == 0
