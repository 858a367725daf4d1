"""Filters: inclusive range bounds read in the simulator's zone, equality filters, defaults,
malformed values; and the x-api-key checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ogsync.endpoints import BY_NAME

RANGED = ["customers", "subscriptions", "orders", "items", "addresses", "one_time_incentives"]


def plus(stamp: str, seconds: int) -> str:
    """A rendered "YYYY-MM-DD HH:MM:SS" moved by some seconds, in the filter's T form."""
    moved = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") + timedelta(seconds=seconds)
    return moved.strftime("%Y-%m-%dT%H:%M:%S")


def recent(records: list[dict], field: str, since: str = "2025-02-01") -> list[dict]:
    """Records stamped after the last repeated wall-clock hour (Nov 2024), so that string order
    is time order."""
    return sorted((r for r in records if r[field] >= since), key=lambda r: r[field])


@pytest.mark.parametrize("ep_name", RANGED)
def test_range_bounds_are_inclusive_to_the_second(api, ep_name):
    ep = BY_NAME[ep_name]
    field = ep.update_field
    truth = recent(api.truth(ep_name), field)
    assert len(truth) >= 3
    record = truth[len(truth) // 2]
    stamp = record[field]
    same = {r[ep.key] for r in truth if r[field] == stamp}
    for value in (plus(stamp, 0), stamp):  # the T form and the API's own space form
        exact = api.walk(ep_name, {ep.start_param: value, ep.end_param: value})
        assert set(api.ids(ep, exact)) == same
    after = api.walk(ep_name, {ep.start_param: plus(stamp, 1)})
    assert record[ep.key] not in api.ids(ep, after)
    before = api.walk(ep_name, {ep.end_param: plus(stamp, -1)})
    assert record[ep.key] not in api.ids(ep, before)
    # Start and end alone split the records at the stamp, both sides keeping it.
    start_only = set(api.ids(ep, api.walk(ep_name, {ep.start_param: plus(stamp, 0)})))
    assert start_only == {r[ep.key] for r in truth if r[field] >= stamp}


@pytest.mark.parametrize("ep_name", ["orders", "items"])
def test_date_only_bounds_cover_whole_days(api, ep_name):
    ep = BY_NAME[ep_name]
    field = ep.update_field
    truth = recent(api.truth(ep_name), field)
    day = truth[len(truth) // 2][field][:10]
    expected = {r[ep.key] for r in truth if r[field][:10] == day}
    assert expected
    walked = api.walk(ep_name, {ep.start_param: day, ep.end_param: day})
    assert set(api.ids(ep, walked)) == expected
    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    later = api.walk(ep_name, {ep.start_param: next_day, ep.end_param: next_day})
    assert not expected & set(api.ids(ep, later))


def test_items_filter_on_their_orders_update_time(api):
    orders = recent(api.truth("orders"), "updated")
    order = orders[-5]
    stamp = plus(order["updated"], 0)
    items = api.walk("items", {"order_updated_start": stamp, "order_updated_end": stamp})
    assert order["public_id"] in {i["order"] for i in items}
    assert all(i["order_updated"] == order["updated"] for i in items)
    # `updated_start` is not the items' filter: it is ignored as an unknown parameter.
    assert len(api.walk("items", {"updated_start": stamp})) == len(api.truth("items"))


def test_one_time_incentives_last_updated_filter(api):
    truth = sorted(api.truth("one_time_incentives"), key=lambda r: r["last_updated"])
    middle = truth[len(truth) // 2]["last_updated"]
    walked = api.walk("one_time_incentives", {"last_updated_start": plus(middle, 0)})
    assert {r["public_id"] for r in walked} == {
        r["public_id"] for r in truth if r["last_updated"] >= middle
    }
    assert 0 < len(walked) < len(truth)


def test_orders_customer_and_status_filters(api):
    orders = api.truth("orders")
    customer = orders[0]["customer"]
    mine = api.walk("orders", {"customer": customer})
    assert mine and {o["customer"] for o in mine} == {customer}
    assert len(mine) == sum(o["customer"] == customer for o in orders)
    for status in (1, 5):
        walked = api.walk("orders", {"status": status})
        assert len(walked) == sum(o["status"] == status for o in orders) > 0
        assert {o["status"] for o in walked} == {status}
    both = api.walk("orders", {"customer": customer, "status": 5})
    assert {o["public_id"] for o in both} == {o["public_id"] for o in mine if o["status"] == 5}


def test_subscriptions_live_filter(api):
    subs = api.truth("subscriptions")
    for value, live in (("true", True), ("false", False), ("1", True), ("False", False)):
        walked = api.walk("subscriptions", {"live": value})
        assert len(walked) == sum(s["live"] is live for s in subs) > 0
        assert {s["live"] for s in walked} == {live}


def test_items_status_filter_is_the_orders_status(api):
    unsent = {o["public_id"] for o in api.truth("orders") if o["status"] == 1}
    walked = api.walk("items", {"status": 1})
    assert walked and {i["order"] for i in walked} <= unsent
    assert len(walked) == sum(i["order"] in unsent for i in api.truth("items"))


def test_products_default_excludes_non_autoship_and_discontinued(api):
    truth = api.truth("products")
    default = api.walk("products")
    assert {p["external_product_id"] for p in default} == {
        p["external_product_id"] for p in truth if p["autoship_enabled"] and not p["discontinued"]
    }
    assert len(default) < len(truth)
    everything = api.walk("products", {"autoship_enabled": "all", "allow_discontinued": "true"})
    assert len(everything) == len(truth)
    not_autoship = api.walk("products", {"autoship_enabled": "false", "allow_discontinued": "true"})
    assert not_autoship and not any(p["autoship_enabled"] for p in not_autoship)


def test_offer_profiles_default_available_and_status_all(api):
    truth = api.truth("offer_profiles")
    default = api.walk("offer_profiles")
    assert default and {p["status"] for p in default} == {"available"}
    assert len(default) == sum(p["status"] == "available" for p in truth)
    assert len(api.walk("offer_profiles", {"status": "all"})) == len(truth)
    archived = api.walk("offer_profiles", {"status": "archived"})
    assert len(archived) == len(truth) - len(default)


@pytest.mark.parametrize(
    ("ep_name", "param", "value"),
    [
        ("orders", "updated_start", "yesterday"),
        ("orders", "updated_end", "2025-13-01"),
        ("customers", "updated_start", "2025-02-30"),
        ("items", "order_updated_start", "2025-01-01 25:00:00"),
        ("one_time_incentives", "last_updated_end", "soon"),
        ("orders", "status", "abc"),
        ("subscriptions", "live", "maybe"),
        ("products", "autoship_enabled", "bogus"),
        ("products", "allow_discontinued", "perhaps"),
        ("offer_profiles", "status", "gone"),
    ],
)
def test_malformed_filter_values_are_400_naming_the_parameter(api, ep_name, param, value):
    for cursor in (True, False):
        if cursor:
            response = api.list(ep_name, {param: value})
        else:
            response = api.get(BY_NAME[ep_name].path, params={param: value})
        assert response.status_code == 400
        body = response.json()
        assert list(body) == [param]
        assert isinstance(body[param], list) and body[param]


def test_range_filters_are_read_in_the_simulators_zone(make_api, api):
    with make_api(seed=7, records=5000, frozen_clock=True, timezone="America/New_York") as ny:
        chicago = {o["public_id"]: o for o in api.truth("orders")}
        orders = recent(ny.truth("orders"), "updated", "2025-02-02")
        record = orders[len(orders) // 2]
        # The same instant renders an hour later in New York than in Chicago.
        assert record["updated"] == plus(chicago[record["public_id"]]["updated"], 3600).replace(
            "T", " "
        )
        stamp = plus(record["updated"], 0)
        exact = ny.walk("orders", {"updated_start": stamp, "updated_end": stamp})
        assert record["public_id"] in {o["public_id"] for o in exact}
        later = ny.walk("orders", {"updated_start": plus(record["updated"], 1)})
        assert record["public_id"] not in {o["public_id"] for o in later}
        # Read as Chicago time, the value would be an hour late and miss the record.
        chicago_value = plus(chicago[record["public_id"]]["updated"], 0)
        late = ny.walk("orders", {"updated_end": chicago_value})
        assert record["public_id"] not in {o["public_id"] for o in late}


def test_start_bound_in_a_repeated_hour_includes_both_occurrences(make_api):
    """At the end of daylight saving 01:00-02:00 happens twice; a start at a wall time there
    still includes every record rendered with that wall time."""
    start = datetime(2024, 11, 3, 7, 10, 0, tzinfo=UTC)  # 01:10 CST, the second 01:10
    with make_api(seed=2, records=300, frozen_clock=True, start=start) as api:
        api.advance(minutes=5, changes=30)
        orders = [o for o in api.truth("orders") if o["updated"].startswith("2024-11-03 01:1")]
        assert orders
        record = orders[0]
        walked = api.walk("orders", {"updated_start": plus(record["updated"], 0)})
        assert record["public_id"] in {o["public_id"] for o in walked}


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
def test_missing_or_wrong_key_is_401(api, key):
    headers = {"X-OG-API-VERSION": "2"}
    if key is not None:
        headers["x-api-key"] = key
    for path in ("/orders/", "/customers/"):
        response = httpx.get(f"{api.url}{path}", headers=headers)
        assert response.status_code == 401
        assert "detail" in response.json()


def test_key_header_name_is_case_insensitive(api):
    response = httpx.get(
        f"{api.url}/orders/", headers={"X-API-KEY": api.api_key, "x-og-api-version": "2"}
    )
    assert response.status_code == 200


def test_limited_key_needs_a_customer(make_api):
    with make_api(seed=4, records=1000, limited_key="lim") as api:
        limited = httpx.Client(
            base_url=api.url, headers={"x-api-key": "lim", "X-OG-API-VERSION": "2"}
        )
        with limited:
            refused = limited.get("/orders/")
            assert refused.status_code == 403
            assert list(refused.json()) == ["detail"]
            assert limited.get("/products/").status_code == 403
            customer = api.truth("orders")[0]["customer"]
            scoped = limited.get("/orders/", params={"customer": customer, "page_size": 100})
            assert scoped.status_code == 200
            results = scoped.json()["results"]
            assert results and {o["customer"] for o in results} == {customer}
            expected = sum(o["customer"] == customer for o in api.truth("orders"))
            assert len(results) == expected
        # The bulk key still lists everything.
        assert api.page("orders")["results"]
