"""The `Ordergroove-Signature` header: `ts=<unix>,sig=<hex>[,sig=<hex>...]`.

`sig` is the hex HMAC-SHA256, keyed with the shared verification key, of `"{ts}.{raw_body}"`.
While a key rotates, the header carries one `sig=` per key for 24 hours; a match on any counts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

HEADER = "Ordergroove-Signature"


class SignatureError(ValueError):
    """The header is missing, malformed, or matches none of the keys."""


@dataclass(frozen=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    """The header value for `body` signed with each key (more than one while rotating)."""
    sigs = [f"sig={digest(secret, timestamp, body)}" for secret in secrets]
    if not sigs:
        raise ValueError("at least one webhook secret is needed to sign")
    return ",".join([f"ts={timestamp}", *sigs])


def parse(header: str | None) -> ParsedSignature:
    if not header:
        raise SignatureError("missing Ordergroove-Signature header")
    timestamp: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed Ordergroove-Signature header")
        name, value = name.strip().lower(), value.strip()
        if name == "ts":
            # Unix seconds have ten digits for centuries yet; thousands would be a 500 in int().
            digits = value.isascii() and value.isdigit() and len(value) <= 18
            if timestamp is not None or not digits:
                raise SignatureError("malformed ts in Ordergroove-Signature header")
            timestamp = int(value)
        elif name == "sig":
            if len(value) != 64 or not all(c in "0123456789abcdefABCDEF" for c in value):
                raise SignatureError("malformed sig in Ordergroove-Signature header")
            sigs.append(value.lower())
    if timestamp is None or not sigs:
        raise SignatureError("Ordergroove-Signature header needs ts= and sig=")
    return ParsedSignature(timestamp, tuple(sigs))


def verify(
    header: str | None,
    body: bytes,
    secrets: Iterable[str],
    *,
    now: int | None = None,
    max_age_seconds: int | None = None,
) -> int:
    """Check the header against the body; return its timestamp or raise SignatureError."""
    parsed = parse(header)
    if max_age_seconds is not None and now is not None and now - parsed.timestamp > max_age_seconds:
        raise SignatureError("Ordergroove-Signature timestamp is too old")
    expected = [digest(secret, parsed.timestamp, body) for secret in secrets]
    # Compare every pair so the time taken does not depend on which one matched.
    matched = False
    for want in expected:
        for got in parsed.signatures:
            matched |= hmac.compare_digest(want, got)
    if not matched:
        raise SignatureError("Ordergroove-Signature does not match the body")
    return parsed.timestamp
