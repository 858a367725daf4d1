"""Malformed headers and bodies thrown at a live receiver: never a 5xx, and nothing stored
unless the request is properly signed and names an event."""

from __future__ import annotations

import time

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_support import SECRET, inbox_rows

from ogsync.webhooks.inbox import SQLiteInbox
from ogsync.webhooks.receiver import PATH, receiver_in_thread
from ogsync.webhooks.signature import HEADER, digest, sign

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
hexish = st.text("0123456789abcdefABCDEFxyz", min_size=0, max_size=70)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
envelope = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=12), st.integers(0, 2**40), st.none()),
        "type": st.one_of(st.sampled_from(["order.delete", "item.remove", ""]), json_value),
        "created": json_value,
        "data": json_value,
    },
).map(orjson.dumps)
bodies = st.one_of(st.binary(max_size=300), envelope, json_value.map(orjson.dumps))


@st.composite
def requests(draw):
    body = draw(bodies)
    ts = draw(st.integers(min_value=0, max_value=2**40))
    mode = draw(st.sampled_from(["none", "random", "shaped", "signed", "mutated", "other-key"]))
    name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in HEADER)
    headers: dict[str, str] = {}
    sent = body
    if mode == "random":
        headers[name] = draw(printable)
    elif mode == "shaped":
        parts = [f"ts={draw(printable.filter(lambda s: ',' not in s))}"]
        parts += [f"sig={draw(hexish)}" for _ in range(draw(st.integers(0, 3)))]
        headers[name] = ",".join(draw(st.permutations(parts)))
    elif mode == "other-key":
        headers[name] = sign(["some-other-key"], ts, body)
    elif mode in ("signed", "mutated"):
        extra = [f"sig={digest('rotated-out-key', ts, body)}"] if draw(st.booleans()) else []
        headers[name] = ",".join([f"ts={ts}", *extra, f"sig={digest(SECRET, ts, body)}"])
        if mode == "mutated":
            if body and draw(st.booleans()):
                at = draw(st.integers(0, len(body) - 1))
                sent = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
            else:
                sent = body + draw(st.binary(min_size=1, max_size=5))
    # HTTP cannot carry a value's outer whitespace (the client refuses to send it, a server
    # would strip it): send what would arrive.
    return mode, {k: v.strip() for k, v in headers.items()}, sent


def is_event(body: bytes) -> str | None:
    """The event id a properly signed body would be stored under, or None."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    event_id, kind = value.get("id"), value.get("type")
    ok = isinstance(event_id, str) and event_id.strip() and isinstance(kind, str) and kind.strip()
    return event_id if ok else None


def test_fuzzed_requests_never_5xx_and_store_only_signed_events(tmp_path):
    accepted: set[str] = set()
    with (
        SQLiteInbox(tmp_path / "inbox.sqlite") as inbox,
        receiver_in_thread(inbox, [SECRET]) as running,
        httpx.Client(base_url=running.url, timeout=10) as client,
    ):

        @settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(requests())
        def check(request):
            mode, headers, body = request
            response = client.post(PATH, content=body, headers=headers)
            assert response.status_code < 500, response.text
            event_id = is_event(body)
            if mode == "signed":
                assert response.status_code == (200 if event_id else 400), response.text
                if event_id:
                    accepted.add(event_id)
            else:
                assert response.status_code == 401, (mode, headers, response.text)

        started = time.monotonic()
        check()
        assert time.monotonic() - started < 30
        assert client.get("/healthz").status_code == 200
    assert {r["event_id"] for r in inbox_rows(tmp_path / "inbox.sqlite")} == accepted
