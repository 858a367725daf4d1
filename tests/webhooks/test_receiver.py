"""The receiver over real HTTP: signatures, sizes, bodies, duplicates, metrics, health."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from webhook_support import (
    SECRET,
    body_of,
    event,
    inbox_rows,
    raw_request,
    signed,
    status_of,
)

from ogsync.webhooks.inbox import InboxEvent
from ogsync.webhooks.receiver import MAX_BODY, build_receiver
from ogsync.webhooks.signature import HEADER, digest, sign

OTHER = "whsec-other-key-9876543210"


def metrics(receiver) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = receiver.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def stored(receiver) -> list[dict[str, Any]]:
    return inbox_rows(receiver.inbox.path)


def test_valid_event_is_stored_once_and_a_duplicate_answered_200(receiver):
    payload = event("item.remove", order="ord-1", public_id="item-1")
    body = body_of(payload)
    first = receiver.post(body, signed(body))
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "stored", "id": payload["id"]}
    # Redelivered later with a new signature timestamp, as the service does.
    again = receiver.post(body, signed(body, ts=int(time.time()) + 1))
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    rows = stored(receiver)
    assert len(rows) == 1
    row = rows[0]
    assert row["event_id"] == payload["id"]
    assert row["type"] == "item.remove"
    assert row["created"] == payload["created"]
    assert (row["object_type"], row["object_id"], row["order_id"]) == ("item", "item-1", "ord-1")
    assert row["payload"] == body.decode()
    assert row["applied_at"] is None
    assert time.time() - row["received_at"] < 60
    assert receiver.inbox.backlog() == 1


@pytest.mark.parametrize(
    ("configured", "signing"),
    [
        ([SECRET], [SECRET, OTHER]),  # the old key configured, the header carries both
        ([OTHER], [SECRET, OTHER]),  # the new key configured
        ([SECRET, OTHER], [OTHER]),  # both configured, signed with one
        ([SECRET], [OTHER, SECRET]),  # the match is on any sig=, in any place
    ],
)
def test_key_rotation_accepts_a_match_on_any_sig(make_receiver, configured, signing):
    with make_receiver(secrets=configured) as receiver:
        body = body_of(event())
        headers = signed(body, signing)
        assert headers[HEADER].count("sig=") == len(signing)
        assert receiver.post(body, headers).status_code == 200
        assert len(stored(receiver)) == 1


def _bad_headers(body: bytes) -> dict[str, dict[str, str] | None]:
    ts = int(time.time())
    good = digest(SECRET, ts, body)
    return {
        "missing": None,
        "empty": {HEADER: ""},
        "no-sig": {HEADER: f"ts={ts}"},
        "no-ts": {HEADER: f"sig={good}"},
        "garbage": {HEADER: "this is not a signature"},
        "bad-ts": {HEADER: f"ts=12x4,sig={good}"},
        "two-ts": {HEADER: f"ts={ts},ts={ts},sig={good}"},
        "short-sig": {HEADER: f"ts={ts},sig={good[:-2]}"},
        "non-hex-sig": {HEADER: f"ts={ts},sig={'z' * 64}"},
        "wrong-key": {HEADER: sign([OTHER], ts, body)},
        "other-ts": {HEADER: f"ts={ts + 1},sig={good}"},
        "other-body": {HEADER: sign([SECRET], ts, body + b" ")},
        "zero-sig": {HEADER: f"ts={ts},sig={'0' * 64}"},
        "other-header": {"X-Ordergroove-Signature": sign([SECRET], ts, body)},
    }


@pytest.mark.parametrize("case", list(_bad_headers(b"{}")))
def test_missing_malformed_or_wrong_signature_is_401_and_stores_nothing(receiver, case):
    body = body_of(event())
    headers = _bad_headers(body)[case]
    response = receiver.post(body, headers)
    assert response.status_code == 401, (case, response.text)
    assert SECRET not in response.text
    assert stored(receiver) == []


def test_header_name_is_case_insensitive(receiver):
    body = body_of(event())
    value = signed(body)[HEADER]
    for name in (HEADER.upper(), HEADER.lower(), "oRDERgROOVE-sIGNATURE"):
        fresh = body_of(event())
        assert receiver.post(fresh, {name: sign([SECRET], int(time.time()), fresh)}).is_success
    assert len(stored(receiver)) == 3
    assert value  # the signed value itself is not in any log or answer


def test_replayed_signature_with_a_changed_byte_is_refused(receiver):
    body = body_of(event())
    headers = signed(body)
    for position in (0, len(body) // 2, len(body) - 1):
        changed = bytearray(body)
        changed[position] ^= 0x01
        assert receiver.post(bytes(changed), headers).status_code == 401
    longer = body[:-1] + b',"extra":1}'
    assert receiver.post(longer, headers).status_code == 401
    assert stored(receiver) == []
    assert receiver.post(body, headers).status_code == 200  # the original still passes


def test_truncated_body_is_refused_and_stores_nothing(receiver):
    body = body_of(event())
    headers = signed(body)
    for cut in (1, len(body) // 2, len(body) - 1):
        response = receiver.post(body[:cut], headers)
        assert response.status_code == 401, response.text
    # A sender that declares the full length, sends half and goes away.
    head = (
        f"POST /webhooks/ordergroove HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"{HEADER}: {headers[HEADER]}\r\n\r\n"
    ).encode()
    answer = raw_request(receiver.port, head + body[: len(body) // 2], half_close=True)
    assert status_of(answer) != 200
    assert stored(receiver) == []


def _big_event(size: int) -> bytes:
    """A valid event whose JSON body is exactly `size` bytes."""
    payload = event()
    payload["snapshot"] = {"pad": ""}
    base = len(body_of(payload))
    payload["snapshot"]["pad"] = "x" * (size - base)
    body = body_of(payload)
    assert len(body) == size
    return body


def test_body_of_exactly_1_mib_is_accepted(receiver):
    body = _big_event(MAX_BODY)
    assert receiver.post(body, signed(body)).status_code == 200
    assert len(stored(receiver)) == 1


def test_body_over_1_mib_is_413(receiver):
    body = _big_event(MAX_BODY + 1)
    # Declared with Content-Length, and signed: the size alone refuses it.
    assert receiver.post(body, signed(body)).status_code == 413
    # Chunked, with no Content-Length: counted while it streams.
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    response = receiver.post(iter(chunks), signed(body))  # type: ignore[arg-type]
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    # Signed in form but far larger: still 413, and the connection stays usable.
    huge = b"x" * (3 * MAX_BODY)
    assert receiver.post(huge, signed(b"{}")).status_code == 413
    assert receiver.client.get("/healthz").status_code == 200
    assert stored(receiver) == []
    counts = metrics(receiver)
    assert counts[("ogsync_webhook_events_rejected_total", (("reason", "too_large"),))] == 3
    # Unsigned: refused on the headers, before the body is read.
    assert receiver.post(huge).status_code == 401


def test_declared_oversize_is_refused_before_the_body_is_sent(receiver):
    """413 comes back on the headers alone: the receiver does not wait for 1 MiB."""
    head = (
        "POST /webhooks/ordergroove HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {MAX_BODY * 100}\r\n{HEADER}: ts=1,sig={'0' * 64}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = raw_request(receiver.port, head + b'{"id":', timeout=5)
    assert status_of(answer) == 413
    assert time.monotonic() - started < 3


def test_lying_content_length_cannot_smuggle_a_signed_body(receiver):
    """A Content-Length shorter than the body: the receiver reads that much, which fails
    the signature, or the HTTP parser refuses the remainder first (400): never stored."""
    body = _big_event(MAX_BODY + 1)
    head = (
        "POST /webhooks/ordergroove HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        f"{HEADER}: {signed(body)[HEADER]}\r\n\r\n"
    ).encode()
    answer = raw_request(receiver.port, head + body, timeout=5)
    assert status_of(answer) in (400, 401)
    assert stored(receiver) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "not_json"),
        (b'{"id": "a", "type": ', "not_json"),
        (b"\xff\xfe{}", "not_json"),
        (b"", "not_json"),
        (b"[1, 2]", "invalid_event"),
        (b'"just a string"', "invalid_event"),
        (b'{"type": "order.delete"}', "invalid_event"),
        (b'{"id": "e1"}', "invalid_event"),
        (b'{"id": "", "type": "order.delete"}', "invalid_event"),
        (b'{"id": 5, "type": "order.delete"}', "invalid_event"),
        (b'{"id": "e1", "type": null}', "invalid_event"),
    ],
)
def test_signed_body_that_is_not_an_event_is_400(receiver, body, reason, caplog):
    with caplog.at_level("WARNING", logger="ogsync.webhooks.receiver"):
        response = receiver.post(body, signed(body))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == reason
    assert stored(receiver) == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert reason in logged
    assert SECRET not in logged and "sig=" not in logged


def test_max_age_refuses_old_timestamps_only_when_set(make_receiver, sqlite_inbox):
    old = int(time.time()) - 3 * 3600  # a retry hours later, as the service does
    with make_receiver(max_age_seconds=300) as strict:
        body = body_of(event())
        assert strict.post(body, signed(body, ts=old)).status_code == 401
        assert strict.post(body, signed(body, ts=int(time.time()) + 3600)).status_code == 401
        assert stored(strict) == []
        assert strict.post(body, signed(body)).status_code == 200
        counts = metrics(strict)
        assert counts[("ogsync_webhook_events_rejected_total", (("reason", "stale_signature"),))]
    with make_receiver() as lenient:  # off by default
        body = body_of(event())
        assert lenient.post(body, signed(body, ts=old)).status_code == 200
        assert lenient.post(body, signed(body, ts=1)).status_code == 200  # a duplicate
    assert len(inbox_rows(sqlite_inbox.path)) == 2


def test_healthz(receiver):
    response = receiver.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_count_received_rejected_stored_duplicates_and_backlog(receiver):
    ids = []
    for _ in range(3):
        payload = event()
        ids.append(payload["id"])
        body = body_of(payload)
        assert receiver.post(body, signed(body)).status_code == 200
    assert receiver.post(body, signed(body)).status_code == 200  # duplicate
    other = body_of(event("order.success"))
    assert receiver.post(other, signed(other)).status_code == 200  # stored, ignored
    assert receiver.post(body, {HEADER: "nope"}).status_code == 401
    assert receiver.post(body, signed(body, [OTHER])).status_code == 401
    assert receiver.post(b"{}", signed(b"{}")).status_code == 400
    receiver.inbox.mark_applied(ids[:1])
    counts = metrics(receiver)

    def rejected(reason: str) -> float:
        return counts[("ogsync_webhook_events_rejected_total", (("reason", reason),))]

    assert counts[("ogsync_webhook_events_received_total", ())] == 8
    assert counts[("ogsync_webhook_events_stored_total", ())] == 4
    assert counts[("ogsync_webhook_events_duplicate_total", ())] == 1
    assert counts[("ogsync_webhook_events_ignored_total", ())] == 1
    assert counts[("ogsync_webhook_events_applied", ())] == 1
    assert rejected("malformed_signature") == 1
    assert rejected("bad_signature") == 1
    assert rejected("invalid_event") == 1
    assert rejected("too_large") == 0
    # 3 deletions and 1 other event wait for the warehouse; one deletion was applied
    assert counts[("ogsync_webhook_inbox_backlog", ())] == 3
    assert counts[("ogsync_webhook_request_seconds_count", ())] == 8
    receiver.inbox.mark_applied(ids[1:])
    assert metrics(receiver)[("ogsync_webhook_events_applied", ())] == 3


def test_other_event_types_are_stored_and_reach_the_warehouse_but_count_as_ignored(
    make_receiver,
):
    with make_receiver() as receiver:
        body = body_of(event("order.success"))
        assert receiver.post(body, signed(body)).status_code == 200
        [row] = stored(receiver)
        assert row["type"] == "order.success" and row["applied_at"] is None
        assert [e.type for e in receiver.inbox.pending()] == ["order.success"]
        assert metrics(receiver)[("ogsync_webhook_events_ignored_total", ())] == 1
    with make_receiver(accepted_types={"order.success"}) as receiver:
        body = body_of(event("order.success"))
        assert receiver.post(body, signed(body)).status_code == 200
        assert metrics(receiver)[("ogsync_webhook_events_ignored_total", ())] == 0


class _FailingInbox:
    """An inbox whose writes fail or hang: the receiver must answer 503, never 2xx."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.release = threading.Event()

    def submit(self, event: InboxEvent) -> Future[bool]:
        future: Future[bool] = Future()
        if self.mode == "error":
            future.set_exception(OSError("disk full"))
        return future  # "hang": never resolves

    def put(self, event: InboxEvent) -> bool:
        raise OSError("disk full")

    def backlog(self) -> int:
        raise OSError("disk full")

    def applied(self) -> int:
        raise OSError("disk full")

    commits = 0

    def healthy(self) -> bool:
        return True

    def pending(self, limit: int = 1000) -> list[InboxEvent]:
        return []

    def mark_applied(self, ids: Any) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_inbox_failure_is_503_so_the_sender_retries(make_receiver, mode):
    inbox = _FailingInbox(mode)
    with make_receiver(inbox=inbox, commit_timeout=0.3) as receiver:
        body = body_of(event())
        started = time.monotonic()
        response = receiver.post(body, signed(body))
        assert response.status_code == 503
        assert time.monotonic() - started < 3
        counts = metrics(receiver)  # the backlog is NaN, not a failed scrape
        assert counts[("ogsync_webhook_events_rejected_total", (("reason", "inbox_error"),))] == 1
        assert (
            counts[("ogsync_webhook_inbox_backlog", ())]
            != counts[("ogsync_webhook_inbox_backlog", ())]
        )


def test_build_receiver_needs_a_secret(sqlite_inbox):
    with pytest.raises(ValueError, match="secret"):
        build_receiver(sqlite_inbox, [])
    with pytest.raises(ValueError, match="max_age"):
        build_receiver(sqlite_inbox, [SECRET], max_age_seconds=0)


def test_many_concurrent_senders_each_stored_once(receiver):
    payloads = [event() for _ in range(200)]
    bodies = [body_of(p) for p in payloads]
    results: list[int] = []

    def send(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=receiver.url, timeout=10) as client:
            for body in chunk:
                for _ in range(2):  # each twice
                    r = client.post("/webhooks/ordergroove", content=body, headers=signed(body))
                    results.append(r.status_code)

    threads = [threading.Thread(target=send, args=(bodies[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 400
    rows = stored(receiver)
    assert sorted(r["event_id"] for r in rows) == sorted(p["id"] for p in payloads)
    assert [orjson.loads(r["payload"])["id"] for r in rows] == [r["event_id"] for r in rows]


def test_receiver_stores_into_the_postgres_warehouse(make_receiver, postgres_inbox):
    with make_receiver(inbox=postgres_inbox) as receiver:
        payload = event("order.delete", public_id="ord-pg")
        body = body_of(payload)
        assert receiver.post(body, signed(body)).json()["status"] == "stored"
        assert receiver.post(body, signed(body)).json()["status"] == "duplicate"
        assert receiver.post(body, {HEADER: "ts=1,sig=" + "0" * 64}).status_code == 401
    [pending] = postgres_inbox.pending()
    assert (pending.event_id, pending.object_id) == (payload["id"], "ord-pg")
    assert pending.payload == body.decode()
