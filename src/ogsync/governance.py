"""What ogsync keeps of each endpoint: which keep every version (history), and which fields are
left out or replaced by a keyed hash before anything is written.

The rules apply to every copy of the data ogsync writes: a governed record is what typing,
`_raw`, the history, the dead letters and the events table see. An excluded field has no
column; a hashed field's column holds HMAC-SHA-256 hex of the value (NULL stays NULL), with a
key from the environment, so equal values hash equally across runs and joins still work.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint, FieldType

DEFAULT_HISTORY = ("subscriptions", "customers", "addresses", "orders", "items")


class GovernanceError(ValueError):
    """The rules name something that does not exist or cannot be governed (one line)."""


@dataclass(frozen=True)
class FieldRules:
    exclude: frozenset[str] = frozenset()
    hash: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Governance:
    history: frozenset[str] = frozenset()  # endpoints whose every version is kept
    rules: Mapping[str, FieldRules] = field(default_factory=dict)  # by endpoint name
    hash_key: bytes | None = None

    def __post_init__(self) -> None:
        for name in self.history:
            if name not in BY_NAME:
                raise GovernanceError(f"history: unknown endpoint {name!r}")
        for name, rules in self.rules.items():
            ep = BY_NAME.get(name)
            if ep is None:
                raise GovernanceError(f"[endpoints.{name}]: unknown endpoint")
            for kind, names in (("exclude", rules.exclude), ("hash", rules.hash)):
                for field_name in sorted(names):
                    if field_name not in ep.field_names:
                        raise GovernanceError(
                            f"[endpoints.{name}] {kind}: {ep.name} has no field {field_name!r}"
                        )
                    if field_name in (ep.key, ep.update_field):
                        raise GovernanceError(
                            f"[endpoints.{name}] {kind}: {field_name!r} is the record's key or "
                            "update time, which the sync needs as they are"
                        )
            both = rules.exclude & rules.hash
            if both:
                raise GovernanceError(
                    f"[endpoints.{name}]: {', '.join(sorted(both))} both excluded and hashed"
                )

    def require_key(self) -> Governance:
        """These rules, once sure a field to hash has its key (a writer needs it; a reader,
        such as status, does not)."""
        for name, rules in self.rules.items():
            if rules.hash and not self.hash_key:
                raise GovernanceError(
                    f"[endpoints.{name}] hashes {', '.join(sorted(rules.hash))}, but no hash "
                    "key is set: set hash_key_env to a variable holding the key"
                )
        return self

    # -- the endpoints as the warehouse keeps them

    def endpoint(self, ep: Endpoint) -> Endpoint:
        """`ep` with its excluded fields left out, its hashed fields as text, and whether it
        keeps history."""
        rules = self.rules.get(ep.name, FieldRules())
        fields = tuple(
            replace(f, type=FieldType.TEXT) if f.name in rules.hash else f
            for f in BY_NAME.get(ep.name, ep).fields
            if f.name not in rules.exclude
        )
        plain = BY_NAME.get(ep.name, ep)
        return replace(
            ep, fields=fields, history=ep.name in self.history, rules=self.fingerprint(plain)
        )

    def endpoints(self, eps: Iterable[Endpoint] = ENDPOINTS) -> tuple[Endpoint, ...]:
        return tuple(self.endpoint(ep) for ep in eps)

    @property
    def changes_records(self) -> bool:
        return any(r.exclude or r.hash for r in self.rules.values())

    # -- the records

    def record(self, endpoint: str, record: Any) -> Any:
        """The record as it may be written; anything not a JSON object passes unchanged (the
        typing step refuses it)."""
        rules = self.rules.get(endpoint)
        if rules is None or not isinstance(record, dict):
            return record
        if not (rules.exclude or rules.hash) or not (record.keys() & (rules.exclude | rules.hash)):
            return record
        governed = {}
        for name, value in record.items():
            if name in rules.exclude:
                continue
            governed[name] = self.hashed(value) if name in rules.hash else value
        return governed

    def hashed(self, value: Any) -> str | None:
        """HMAC-SHA-256 hex of the value as text (JSON for anything not a string)."""
        if value is None:
            return None
        assert self.hash_key is not None  # writers call require_key first
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return hmac.new(self.hash_key, text.encode(), hashlib.sha256).hexdigest()

    def payload(self, body: str) -> str:
        """A webhook body with the rules applied to the record it carries (`data.object`,
        whose endpoint its `type` or the event's type names); a body that isn't a JSON
        object is kept as it is (nothing of it can be read as a field)."""
        if not self.changes_records:
            return body
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        data = envelope.get("data") if isinstance(envelope, dict) else None
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            return body
        kind = obj.get("type") or str(envelope.get("type") or "").partition(".")[0]
        endpoint = _ENDPOINT_OF_OBJECT.get(str(kind))
        if endpoint is None:
            return body
        governed = self.record(endpoint, obj)
        if governed is obj:
            return body
        data["object"] = governed
        return orjson.dumps(envelope).decode()

    def fingerprint(self, ep: Endpoint) -> str:
        """What the warehouse remembers of an endpoint's rules, to notice when they change:
        the rules, and a hash of the hash key (never the key)."""
        rules = self.rules.get(ep.name, FieldRules())
        if not (rules.exclude or rules.hash):
            return ""
        key = ""
        if rules.hash and self.hash_key:
            key = hmac.new(self.hash_key, b"ogsync key check", hashlib.sha256).hexdigest()[:16]
        return orjson.dumps(
            {"exclude": sorted(rules.exclude), "hash": sorted(rules.hash), "key": key}
        ).decode()

    @staticmethod
    def rules_of(fingerprint: str) -> FieldRules:
        """The fields a fingerprint leaves out and hashes."""
        if not fingerprint:
            return FieldRules()
        rules = orjson.loads(fingerprint)
        return FieldRules(frozenset(rules["exclude"]), frozenset(rules["hash"]))

    @staticmethod
    def described(fingerprint: str) -> str:
        """A fingerprint in words, for messages."""
        if not fingerprint:
            return "no fields left out or hashed"
        rules = orjson.loads(fingerprint)
        parts = [f"{kind} {', '.join(rules[kind])}" for kind in ("exclude", "hash") if rules[kind]]
        return "; ".join(parts)


# A webhook's object type -> the endpoint whose records it carries.
_ENDPOINT_OF_OBJECT = {
    "order": "orders",
    "item": "items",
    "subscription": "subscriptions",
    "customer": "customers",
    "address": "addresses",
    "payment": "payments",
    "product": "products",
}


def history_endpoints(setting: str) -> frozenset[str]:
    """The `history` setting: `default`, `all`, `none`, or endpoint names with commas."""
    text = setting.strip().lower()
    if text in ("", "none"):
        return frozenset()
    if text == "default":
        return frozenset(DEFAULT_HISTORY)
    if text == "all":
        return frozenset(ep.name for ep in ENDPOINTS)
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - BY_NAME.keys())
    if unknown:
        raise GovernanceError(
            f"history: unknown endpoint(s) {', '.join(unknown)} (use default, all, none or names)"
        )
    return names


NONE = Governance()
