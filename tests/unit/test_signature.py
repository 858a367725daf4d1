"""The Ordergroove-Signature header, as properties: any input is refused cleanly or verified."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ogsync.webhooks.signature import SignatureError, parse, sign, verify

SECRET = "the-shared-verification-key"
bodies = st.binary(max_size=512)
stamps = st.integers(0, 2**40)


@given(header=st.one_of(st.none(), st.text(max_size=200)), body=bodies)
def test_any_header_is_refused_with_signature_error_or_verified(header, body):
    try:
        verify(header, body, [SECRET])
    except SignatureError:
        return
    assert header is not None and "sig=" in header.lower()  # only a real match gets here


@given(body=bodies, ts=stamps, other=st.text(min_size=1, max_size=30))
def test_signing_then_verifying_round_trips_and_any_other_body_or_key_fails(body, ts, other):
    header = sign([SECRET], ts, body)
    assert verify(header, body, [SECRET]) == ts
    assert verify(header, body, [other, SECRET]) == ts  # a match on any configured key
    try:
        verify(header, body + b"x", [SECRET])
    except SignatureError:
        pass
    else:
        raise AssertionError("a changed body verified")
    if other != SECRET:
        try:
            verify(header, body, [other])
        except SignatureError:
            pass
        else:
            raise AssertionError("a wrong key verified")


@given(body=bodies, ts=stamps)
def test_during_a_rotation_either_key_verifies(body, ts):
    header = sign(["old-key", "new-key"], ts, body)
    assert len(parse(header).signatures) == 2
    assert verify(header, body, ["new-key"]) == ts
    assert verify(header, body, ["old-key"]) == ts


@given(ts=stamps, age=st.integers(0, 10_000), limit=st.integers(1, 5_000))
def test_max_age_refuses_only_what_is_older_than_the_limit(ts, age, limit):
    header = sign([SECRET], ts, b"{}")
    try:
        verify(header, b"{}", [SECRET], now=ts + age, max_age_seconds=limit)
    except SignatureError:
        assert age > limit
    else:
        assert age <= limit
