"""Fields left out or hashed before anything is written: on every warehouse of the contract
suite, no table holds their plain values; changed rules are refused until a rewrite."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from ogsync.destinations.sql_rules import RulesChanged
from ogsync.endpoints import ENDPOINTS
from ogsync.governance import FieldRules, Governance
from ogsync.testing.sim_control import SimControl

from .history_support import advance, merchant, run

KEY = b"a-merchant's-hash-key"
RULES = Governance(
    history=frozenset({"customers", "orders", "addresses"}),
    rules={
        "customers": FieldRules(exclude=frozenset({"phone_number"}), hash=frozenset({"email"})),
        "addresses": FieldRules(hash=frozenset({"phone", "address"})),
        "orders": FieldRules(exclude=frozenset({"discount_total"})),
    },
    hash_key=KEY,
)
START = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)


def every_value(wh: Any) -> str:
    """Every table of the warehouse as one text: all that a reader could find there."""
    chunks = []
    for table in wh.relations():
        for row in wh.rows(f"SELECT * FROM {{s}}.{table}"):
            chunks.append(orjson.dumps(row, default=str).decode())
    return "\n".join(chunks)


def test_excluded_and_hashed_fields_appear_nowhere_in_plain_text(wh, tmp_path):
    with merchant(tmp_path, START) as (sim, inbox):
        with SimControl(sim.url) as control:
            truth = {ep.name: control.truth(ep) for ep in ENDPOINTS}
        run(sim, wh.open_dest(), inbox, RULES)
        advance(sim, minutes=60, changes=300)  # order.delete webhooks carry orders
        with SimControl(sim.url) as control:
            later = {ep.name: control.truth(ep) for ep in ENDPOINTS}
        run(sim, wh.open_dest(), inbox, RULES)

        plain: set[str] = set()
        for records in (truth, later):
            plain |= {c["email"] for c in records["customers"] if c.get("email")}
            plain |= {c["phone_number"] for c in records["customers"] if c.get("phone_number")}
            plain |= {a["phone"] for a in records["addresses"] if a.get("phone")}
            plain |= {a["address"] for a in records["addresses"] if a.get("address")}
        assert len(plain) > 100
        text = every_value(wh)
        found = re.findall(
            "|".join(re.escape(v) for v in sorted(plain, key=len, reverse=True)), text
        )
        assert not found, f"plain values in the warehouse: {found[:5]}"

        # Hashed: HMAC-SHA-256 of the value, the same across runs, so joins still work.
        emails = {c["merchant_user_id"]: c["email"] for c in later["customers"] if c.get("email")}
        rows = wh.table("customers")
        some = next(iter(emails))
        expected = hmac.new(KEY, emails[some].encode(), hashlib.sha256).hexdigest()
        assert rows[some]["email"] == expected
        assert "phone_number" not in rows[some] and "phone_number" not in orjson.loads(
            rows[some]["_raw"]
        )
        history = wh.rows("SELECT email FROM {s}.customers_history WHERE merchant_user_id = ?",
                          [some])  # fmt: skip
        assert {r["email"] for r in history} <= {
            hmac.new(KEY, e.encode(), hashlib.sha256).hexdigest()
            for e in {c.get("email") for c in truth["customers"] + later["customers"]
                      if c["merchant_user_id"] == some} if e
        }  # fmt: skip
        events = wh.rows("SELECT payload FROM {s}.events WHERE type = 'order.delete'")
        assert events, "no order.delete webhooks arrived"
        for event in events:
            order = orjson.loads(event["payload"])["data"]["object"]
            assert "discount_total" not in order and "status" in order


def test_changed_rules_are_refused_until_a_rewrite(wh, tmp_path):
    with merchant(tmp_path, START) as (sim, inbox):
        run(sim, wh.open_dest(), inbox, Governance(history=frozenset({"customers"})))
        with SimControl(sim.url) as control:
            customers = control.truth_by_key("customers")
        with pytest.raises(RulesChanged, match="ogsync rewrite"):
            run(sim, wh.open_dest(), inbox, RULES)
        assert wh.table("customers")[next(iter(customers))]["email"] is not None  # untouched

        done = wh.open_dest().rewrite(RULES)
        assert any(line.startswith("customers:") for line in done)
        rows = wh.table("customers")
        for key, row in rows.items():
            email = customers[key].get("email")
            if email:
                assert row["email"] == hmac.new(KEY, email.encode(), hashlib.sha256).hexdigest()
            assert "phone_number" not in row
            assert "phone_number" not in orjson.loads(row["_raw"])
        history = wh.rows("SELECT email, _raw FROM {s}.customers_history")
        assert history and all("phone_number" not in orjson.loads(h["_raw"]) for h in history)
        assert not {c.get("email") for c in customers.values()} & {h["email"] for h in history}
        run(sim, wh.open_dest(), inbox, RULES)  # the rules are the warehouse's now

        unhash = Governance(
            history=RULES.history,
            rules={**RULES.rules, "addresses": FieldRules(hash=frozenset({"phone"}))},
            hash_key=KEY,
        )
        with pytest.raises(RulesChanged, match="can't be un-hashed"):
            wh.open_dest().rewrite(unhash)
