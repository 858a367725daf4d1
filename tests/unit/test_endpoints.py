"""The endpoint table: names, keys, update fields, filters, defaults and selection."""

from __future__ import annotations

import pytest

from ogsync.endpoints import BY_NAME, ENDPOINTS, Field, FieldType, get, select

ALL_NINE = (
    "customers",
    "subscriptions",
    "orders",
    "items",
    "addresses",
    "payments",
    "products",
    "offer_profiles",
    "one_time_incentives",
)
DEFAULT_SEVEN = tuple(n for n in ALL_NINE if n not in ("payments", "products"))


def test_nine_endpoints_with_unique_names_in_table_order():
    names = [e.name for e in ENDPOINTS]
    assert tuple(names) == ALL_NINE
    assert len(set(names)) == 9
    assert tuple(BY_NAME) == ALL_NINE


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_key_is_one_of_its_fields(ep):
    assert ep.key in ep.field_names
    assert ep.field_named(ep.key).type == FieldType.TEXT


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_update_field_is_a_timestamp_field_or_none(ep):
    if ep.update_field is not None:
        assert ep.update_field in ep.field_names
        assert ep.field_named(ep.update_field).type == FieldType.TIMESTAMP


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_path_is_name_between_slashes(ep):
    assert ep.path == f"/{ep.name}/"


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_field_names_unique(ep):
    assert len(set(ep.field_names)) == len(ep.field_names)
    assert len({f.column for f in ep.fields}) == len(ep.fields)


def test_keys_and_update_fields_as_documented():
    keys = {e.name: e.key for e in ENDPOINTS}
    assert keys == {n: "public_id" for n in ALL_NINE} | {
        "customers": "merchant_user_id",
        "products": "external_product_id",
    }
    updates = {e.name: e.update_field for e in ENDPOINTS}
    assert updates == {
        "customers": "last_updated",
        "subscriptions": "updated",
        "orders": "updated",
        "items": "order_updated",
        "addresses": "updated",
        "payments": "last_updated",
        "products": "last_update",
        "offer_profiles": None,
        "one_time_incentives": "last_updated",
    }


def test_incremental_endpoints_and_their_range_params():
    incremental = {e.name: (e.start_param, e.end_param) for e in ENDPOINTS if e.incremental}
    assert incremental == {
        "customers": ("updated_start", "updated_end"),
        "subscriptions": ("updated_start", "updated_end"),
        "orders": ("updated_start", "updated_end"),
        "items": ("order_updated_start", "order_updated_end"),
        "addresses": ("updated_start", "updated_end"),
    }
    # The guide says full refresh for one-time incentives, even though a filter exists.
    assert not BY_NAME["one_time_incentives"].incremental
    for name in ("payments", "products", "offer_profiles"):
        assert BY_NAME[name].range_filter is None
        assert BY_NAME[name].start_param is None and BY_NAME[name].end_param is None


def test_list_params_ask_for_every_record():
    assert dict(BY_NAME["products"].list_params) == {
        "autoship_enabled": "all",
        "allow_discontinued": "true",
    }
    assert dict(BY_NAME["offer_profiles"].list_params) == {"status": "all"}
    for ep in ENDPOINTS:
        if ep.name not in ("products", "offer_profiles"):
            assert dict(ep.list_params) == {}


def test_table_is_read_only():
    with pytest.raises(TypeError):
        BY_NAME["orders"] = BY_NAME["items"]  # type: ignore[index]
    with pytest.raises(TypeError):
        BY_NAME["products"].list_params["status"] = "x"  # type: ignore[index]


def test_default_set_is_the_seven():
    assert tuple(e.name for e in select(None)) == DEFAULT_SEVEN
    assert tuple(e.name for e in ENDPOINTS if e.default) == DEFAULT_SEVEN


def test_select_all():
    assert select("all") == ENDPOINTS
    assert select(["all"]) == ENDPOINTS


def test_select_names_in_table_order():
    assert [e.name for e in select("orders,items")] == ["orders", "items"]
    assert [e.name for e in select("items, orders")] == ["orders", "items"]
    assert [e.name for e in select(["items", "customers", "items"])] == ["customers", "items"]
    assert [e.name for e in select("payments,")] == ["payments"]


def test_select_unknown_name_names_the_choices():
    with pytest.raises(ValueError) as info:
        select("bogus")
    message = str(info.value)
    assert "bogus" in message
    for name in ALL_NINE:
        assert name in message
    with pytest.raises(ValueError, match="bogus"):
        select("orders,bogus")
    with pytest.raises(ValueError, match="bogus"):
        get("bogus")


def test_get_known():
    assert get("items") is BY_NAME["items"]


def test_field_column_renames_order_only():
    assert Field("order", FieldType.TEXT).column == "order_id"
    assert Field("orders", FieldType.TEXT).column == "orders"
    assert Field("public_id", FieldType.TEXT).column == "public_id"
    assert BY_NAME["items"].field_named("order").column == "order_id"
    assert BY_NAME["one_time_incentives"].field_named("order").column == "order_id"


def test_field_named_unknown_raises_key_error():
    with pytest.raises(KeyError):
        BY_NAME["orders"].field_named("nope")
