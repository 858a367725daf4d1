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
