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


# Every field Ordergroove's API reference documents on each object, as its Response Body
# Definitions list them (List and Retrieve, and for subscriptions Update's `external_id`;
# `experiences` from Customers > Create; `raw_subscription_type` from the subscription object
# in Events and Payloads' snapshot example), with the types the reference gives.
DOCUMENTED = {
    "customers": "merchant merchant_user_id session_id user_token_id first_name last_name email "
    "phone_number phone_type:integer live:boolean created:timestamp last_updated:timestamp "
    "last_login:timestamp extra_data:json_text locale:integer experiences:json_text price_code",
    "subscriptions": "customer merchant product payment shipping_address offer "
    "subscription_type raw_subscription_type components:json extra_data:json_text public_id "
    "product_attribute quantity:integer price:decimal frequency_days:integer "
    "reminder_days:integer every:integer every_period:integer start_date:date "
    "cancelled:timestamp cancel_reason cancel_reason_code currency_code iteration sequence "
    "session_id merchant_order_id customer_rep club created:timestamp updated:timestamp "
    "live:boolean external_id prepaid_subscription_context:json",
    "orders": "merchant customer payment shipping_address public_id currency_code "
    "sub_total:decimal tax_total:decimal shipping_total:decimal discount_total:decimal "
    "total:decimal created:timestamp updated:timestamp place:timestamp cancelled:timestamp "
    "tries:integer generic_error_count:integer status:integer type:integer order_merchant_id "
    "rejected_message extra_data:json_text locked:boolean oos_free_shipping:boolean",
    "items": "offer order subscription product components:json subscription_component "
    "quantity:integer public_id product_attribute price:decimal extra_cost:decimal "
    "total_price:decimal one_time:boolean order_updated:timestamp frozen:boolean "
    "first_placed:timestamp",
    "addresses": "customer public_id label first_name last_name company_name address address2 "
    "city state_province_code zip_postal_code phone fax country_code live:boolean "
    "created:timestamp updated:timestamp token_id store_public_id",
    "payments": "customer billing_address cc_number_ending public_id label token_id cc_holder "
    "cc_type:integer cc_exp_date payment_method live:boolean created:timestamp "
    "last_updated:timestamp",
    "products": "merchant groups:json name price:decimal image_url detail_url "
    "external_product_id sku autoship_enabled:boolean prepaid_eligible:boolean "
    "premier_enabled:integer created:timestamp last_update:timestamp live:boolean "
    "discontinued:boolean extra_data:json_text product_type autoship_by_default:boolean "
    "every:integer every_period:integer offer_profile incentive_group",
    "offer_profiles": "public_id name merchant live:boolean weight:integer offers:json "
    "recurring_coupon:json initial_coupon:json",
    "one_time_incentives": "public_id external_code description merchant customer order "
    "created:timestamp last_updated:timestamp incentive:json",
}


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_every_documented_field_is_a_typed_field(ep):
    types = {f.name: f.type for f in ep.fields}
    for token in DOCUMENTED[ep.name].split():
        name, _, kind = token.partition(":")
        assert name in types, f"{ep.name}.{name} is documented but has no column"
        assert types[name] == FieldType(kind or "text"), f"{ep.name}.{name}"


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_every_field_is_described(ep):
    for f in ep.fields:
        assert len(f.description) >= 10, f"{ep.name}.{f.name}"
        # Descriptions become SQL literals, where `?` would read as a placeholder.
        assert "?" not in f.description and "\n" not in f.description
