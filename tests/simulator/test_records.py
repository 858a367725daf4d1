"""The simulator's records: documented fields and types, the documented oddities, relations."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime

import orjson
import pytest

from ogsync.endpoints import ENDPOINTS, Endpoint, FieldType

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
DATE = re.compile(r"\d{4}-\d\d-\d\d")
DECIMAL = re.compile(r"-?\d+\.\d\d")
HEX32 = re.compile(r"[0-9a-f]{32}")
IMPOSSIBLE_DAY = "2017-02-29"

ALL_PARAMS = {
    "products": {"autoship_enabled": "all", "allow_discontinued": "true"},
    "offer_profiles": {"status": "all"},
}


def check_value(ep: Endpoint, name: str, value, oddities: Counter) -> None:
    """Assert one field's value has its documented type; count the documented oddities."""
    kind = ep.field_named(name).type
    where = f"{ep.name}.{name}={value!r}"
    if value is None:
        return
    if kind == FieldType.TIMESTAMP:
        assert isinstance(value, str), where
        if value == "null":
            oddities["null string"] += 1
            return
        assert TIMESTAMP.fullmatch(value), where
        if value.startswith(IMPOSSIBLE_DAY):
            oddities["impossible date"] += 1
            return
        datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    elif kind == FieldType.DATE:
        assert isinstance(value, str) and DATE.fullmatch(value), where
        if value == IMPOSSIBLE_DAY:
            oddities["impossible date"] += 1
        else:
            datetime.strptime(value, "%Y-%m-%d")
    elif kind == FieldType.DECIMAL:
        assert isinstance(value, str), where
        if value == "undefined":
            assert name == "total", where
            oddities["undefined total"] += 1
        else:
            assert DECIMAL.fullmatch(value), where
    elif kind == FieldType.INTEGER:
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind == FieldType.BOOLEAN:
        assert isinstance(value, bool), where
    elif kind == FieldType.JSON:
        assert isinstance(value, list | dict), where
    elif kind == FieldType.JSON_TEXT:
        assert isinstance(value, str), where
        if value == "null":
            oddities["null extra_data"] += 1
        else:
            assert isinstance(orjson.loads(value), dict), where
            oddities["json extra_data"] += 1
    else:
        assert isinstance(value, str), where
        if value == "null":
            oddities["null string"] += 1


@pytest.fixture(scope="module")
def truth(api) -> dict[str, list[dict]]:
    return {ep.name: api.truth(ep.name) for ep in ENDPOINTS}


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_records_have_exactly_the_documented_fields_and_types(api, truth, ep):
    records = truth[ep.name]
    assert records, f"{ep.name} is empty"
    oddities: Counter[str] = Counter()
    for record in records:
        assert tuple(record) == ep.field_names
        for name, value in record.items():
            check_value(ep, name, value, oddities)
    keys = api.ids(ep, records)
    assert len(set(keys)) == len(keys), "keys repeat"
    if ep.name == "customers":
        assert all(re.fullmatch(r"\d{8}", k) for k in keys)
    elif ep.name == "products":
        assert all(re.fullmatch(r"\d{10}", k) for k in keys)
    else:
        assert all(HEX32.fullmatch(k) for k in keys)
    # A listing serves the same bodies as the truth.
    listed = api.walk(ep.name, ALL_PARAMS.get(ep.name))
    assert sorted(listed, key=lambda r: r[ep.key]) == sorted(records, key=lambda r: r[ep.key])


def test_every_documented_oddity_appears(truth):
    oddities: Counter[str] = Counter()
    for ep in ENDPOINTS:
        for record in truth[ep.name]:
            for name, value in record.items():
                check_value(ep, name, value, oddities)
    for kind in ("impossible date", "null string", "undefined total", "null extra_data"):
        assert oddities[kind] >= 1, f"no {kind} in {dict(oddities)}"
    assert oddities["json extra_data"] >= 50
    orders = truth["orders"]
    assert any(o["created"] == "2017-02-29 00:00:00" for o in orders)
    assert any(o["total"] == "undefined" for o in orders)
    subs = truth["subscriptions"]
    assert any(s["start_date"] == IMPOSSIBLE_DAY for s in subs)
    assert any(s["cancelled"] == "null" for s in subs)
    # Oddities stay a small share.
    assert sum(o["total"] == "undefined" for o in orders) < len(orders) * 0.05


def test_same_seed_same_truth_and_another_seed_differs(make_api, truth):
    with make_api(seed=7, records=5000) as same, make_api(seed=8, records=5000) as other:
        for ep in ENDPOINTS:
            assert same.truth(ep.name) == truth[ep.name], ep.name
        assert other.truth("orders") != truth["orders"]
        assert other.truth("customers") != truth["customers"]


def test_record_counts_fit_the_requested_size(truth):
    total = sum(len(records) for records in truth.values())
    assert 5000 <= total <= 5200
    assert len(truth["items"]) >= len(truth["orders"]) >= len(truth["customers"])


def test_items_reference_existing_orders_subscriptions_and_products(truth):
    orders = {o["public_id"]: o for o in truth["orders"]}
    subs = {s["public_id"]: s for s in truth["subscriptions"]}
    products = {p["external_product_id"] for p in truth["products"]}
    customers = {c["merchant_user_id"] for c in truth["customers"]}
    for item in truth["items"]:
        order = orders[item["order"]]
        sub = subs[item["subscription"]]
        assert item["order_updated"] == order["updated"]
        assert item["product"] == sub["product"] and item["product"] in products
        assert sub["customer"] == order["customer"]
    for ep in ("subscriptions", "orders", "addresses", "payments"):
        assert {r["customer"] for r in truth[ep]} <= customers, ep
    for sub in truth["subscriptions"]:
        assert sub["product"] in products
    for incentive in truth["one_time_incentives"]:
        assert incentive["order"] is None or incentive["order"] in orders


def unsent_items_by_subscription(truth) -> dict[str, list[dict]]:
    unsent = {o["public_id"] for o in truth["orders"] if o["status"] == 1}
    by_sub: dict[str, list[dict]] = defaultdict(list)
    for item in truth["items"]:
        if item["order"] in unsent:
            by_sub[item["subscription"]].append(item)
    return by_sub


def test_every_live_subscription_has_exactly_one_unsent_item(truth):
    by_sub = unsent_items_by_subscription(truth)
    live = {s["public_id"] for s in truth["subscriptions"] if s["live"]}
    assert live
    assert {s: len(items) for s, items in by_sub.items()} == dict.fromkeys(live, 1)
    # Cancelled subscriptions carry their cancellation; live ones do not.
    for sub in truth["subscriptions"]:
        if not sub["live"]:
            assert TIMESTAMP.fullmatch(sub["cancelled"]) and sub["cancel_reason_code"]
    # One upcoming order per customer at most.
    unsent = Counter(o["customer"] for o in truth["orders"] if o["status"] == 1)
    assert max(unsent.values()) == 1


def test_statuses_and_money_are_consistent(truth):
    statuses = Counter(o["status"] for o in truth["orders"])
    assert statuses[5] > statuses[1] > 0
    assert set(statuses) <= {1, 3, 4, 5, 12, 15, 18, 19}
    items_by_order: dict[str, list[dict]] = defaultdict(list)
    for item in truth["items"]:
        items_by_order[item["order"]].append(item)
    for order in truth["orders"]:
        cents = sum(
            int(i["total_price"].replace(".", "")) for i in items_by_order[order["public_id"]]
        )
        assert int(order["sub_total"].replace(".", "")) == cents


def test_relations_hold_after_many_changes(make_api):
    with make_api(seed=3, records=2000) as api:
        for _ in range(5):
            api.advance(minutes=30, changes=200)
        truth = {ep: api.truth(ep) for ep in ("orders", "items", "subscriptions")}
        orders = {o["public_id"]: o for o in truth["orders"]}
        subs = {s["public_id"] for s in truth["subscriptions"]}
        for item in truth["items"]:
            assert item["order"] in orders
            assert item["subscription"] in subs
            assert item["order_updated"] == orders[item["order"]]["updated"]
        by_sub = unsent_items_by_subscription(truth)
        live = {s["public_id"] for s in truth["subscriptions"] if s["live"]}
        assert {s: len(items) for s, items in by_sub.items()} == dict.fromkeys(live, 1)


# Fields the simulated merchant leaves empty, each for a reason; every other field carries a
# value in some record, so that a sync types and stores every documented field for real.
EMPTY_BY_DESIGN = {
    # The reference lists these as no longer used or internal to Ordergroove.
    "subscriptions": {"iteration", "sequence", "customer_rep", "club"}
    # No subscription has a locked price: the product's price applies.
    | {"price"},
    "items": {"product_attribute", "first_placed", "subscription_component"},
    "addresses": {"token_id", "label", "fax", "store_public_id"},
    "products": {"every", "every_period", "offer_profile", "incentive_group"},
    # Features the simulated merchant does not use.
    "customers": {"user_token_id"},
    "payments": {"label"},
    "offer_profiles": {"initial_coupon"},
    # Set only by changes after the merchant is generated (an item-level incentive: never).
    "one_time_incentives": {"item", "applied_at"},
}


def _empty(value) -> bool:
    return value in (None, "", [], {})


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_every_field_carries_a_value_somewhere(truth, ep):
    empty = {n for n in ep.field_names if all(_empty(r[n]) for r in truth[ep.name])}
    assert empty == EMPTY_BY_DESIGN.get(ep.name, set())


def test_prepaid_subscriptions_carry_their_context(truth):
    products = {p["external_product_id"]: p for p in truth["products"]}
    prepaid = [s for s in truth["subscriptions"] if s["prepaid_subscription_context"]]
    assert len(prepaid) >= 10
    for sub in prepaid:
        context = sub["prepaid_subscription_context"]
        assert set(context) == {
            "prepaid_orders_remaining",
            "prepaid_orders_per_billing",
            "renewal_behavior",
            "last_renewal_revenue",
            "prepaid_origin_merchant_order_id",
        }
        assert products[sub["product"]]["prepaid_eligible"]
        assert 0 <= context["prepaid_orders_remaining"] < context["prepaid_orders_per_billing"]
        assert context["renewal_behavior"] in ("autorenew", "cancel", "downgrade")
        assert isinstance(context["last_renewal_revenue"], float)
    kinds = Counter(s["raw_subscription_type"] for s in truth["subscriptions"])
    assert set(kinds) == {"replenishment", "IU replenishment", "CSA replenishment"}
    assert any(s["external_id"] for s in truth["subscriptions"])
    experiences = [orjson.loads(c["experiences"]) for c in truth["customers"] if c["experiences"]]
    assert experiences and all(
        set(e) == {"reorder", "subscription-management"} for e in experiences
    )


def test_placed_orders_count_down_prepaid_shipments(make_api):
    with make_api(seed=5, records=3000) as api:
        before = {
            s["public_id"]: s["prepaid_subscription_context"]
            for s in api.truth("subscriptions")
            if s["prepaid_subscription_context"]
        }
        for _ in range(4):
            api.advance(minutes=60 * 24, changes=400)
        after = api.truth_by_key("subscriptions")
        moved = [
            k
            for k, context in before.items()
            if after[k]["prepaid_subscription_context"] != context
        ]
        assert moved
        for key in moved:
            old, sub = before[key], after[key]
            new = sub["prepaid_subscription_context"]
            if new is None:  # a downgrade after its last prepaid shipment
                assert old["renewal_behavior"] == "downgrade" and sub["live"]
                continue
            # Several orders may have been placed since: the count may have gone round.
            assert new["prepaid_orders_per_billing"] == old["prepaid_orders_per_billing"]
            assert 0 <= new["prepaid_orders_remaining"] < new["prepaid_orders_per_billing"]
            if new["renewal_behavior"] == "cancel" and new["prepaid_orders_remaining"] == 0:
                assert not sub["live"]  # its last prepaid shipment ended it
        counted_down = [
            k
            for k in moved
            if after[k]["prepaid_subscription_context"]
            and after[k]["prepaid_subscription_context"]["prepaid_orders_remaining"]
            < before[k]["prepaid_orders_remaining"]
        ]
        assert counted_down
