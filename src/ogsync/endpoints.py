"""The one table of Ordergroove's nine list endpoints.

Everything else (the client, the planner, the warehouse schema, the simulator) reads names,
paths, keys, update fields and filters from here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class FieldType(StrEnum):
    TEXT = "text"
    TIMESTAMP = "timestamp"  # naive "YYYY-MM-DD HH:MM:SS" in the API's zone
    DATE = "date"  # "YYYY-MM-DD"
    DECIMAL = "decimal"  # money, sent as a decimal string
    INTEGER = "integer"
    BOOLEAN = "boolean"
    JSON = "json"  # nested objects or arrays
    JSON_TEXT = "json_text"  # JSON serialised inside a string (extra_data)


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType

    @property
    def column(self) -> str:
        """The warehouse column: the API's name, except the SQL reserved word `order`."""
        return "order_id" if self.name == "order" else self.name


def _fields(spec: str) -> tuple[Field, ...]:
    """Parse "name:type name:type ..." (type defaults to text) into fields."""
    out = []
    for token in spec.split():
        name, _, kind = token.partition(":")
        out.append(Field(name, FieldType(kind or "text")))
    return tuple(out)


@dataclass(frozen=True)
class Endpoint:
    name: str
    key: str
    fields: tuple[Field, ...]
    # The record field that moves on every change; None when the records carry none.
    update_field: str | None
    # Prefix of the API's inclusive range filter (`<prefix>_start`, `<prefix>_end`), if any.
    range_filter: str | None
    # Whether ogsync fetches incrementally with that filter (the guide says full refresh for
    # one-time incentives even though the reference lists a filter for them).
    incremental: bool
    # In the default set the guide recommends (payments and products are opt-in).
    default: bool
    # Exact-match query filters the API accepts, each naming the record field it matches.
    equality_filters: Mapping[str, str] = field(default_factory=dict)
    # Parameters a sync always sends so that the API returns every record, not a default subset.
    list_params: Mapping[str, str] = field(default_factory=dict)
    # Set by the settings (ogsync.governance): every version is kept in `<name>_history`;
    # `rules` says which fields are left out or hashed, for the warehouse to remember.
    history: bool = False
    rules: str = ""

    @property
    def path(self) -> str:
        return f"/{self.name}/"

    @property
    def column_key(self) -> str:
        """The primary key as a warehouse column."""
        return self.field_named(self.key).column

    @property
    def start_param(self) -> str | None:
        return f"{self.range_filter}_start" if self.range_filter else None

    @property
    def end_param(self) -> str | None:
        return f"{self.range_filter}_end" if self.range_filter else None

    def field_named(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        name="customers",
        key="merchant_user_id",
        fields=_fields(
            "merchant merchant_user_id session_id user_token_id first_name last_name email "
            "phone_number phone_type:integer live:boolean locale:integer price_code "
            "extra_data:json_text last_login:timestamp created:timestamp last_updated:timestamp"
        ),
        update_field="last_updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"email": "email", "live": "live"}),
    ),
    Endpoint(
        name="subscriptions",
        key="public_id",
        fields=_fields(
            "public_id customer merchant product payment shipping_address offer "
            "subscription_type components:json extra_data:json_text product_attribute "
            "quantity:integer price:decimal frequency_days:integer reminder_days:integer "
            "every:integer every_period:integer start_date:date cancelled:timestamp "
            "cancel_reason cancel_reason_code currency_code session_id merchant_order_id "
            "live:boolean created:timestamp updated:timestamp"
        ),
        update_field="updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"customer": "customer", "live": "live", "product": "product"}),
    ),
    Endpoint(
        name="orders",
        key="public_id",
        fields=_fields(
            "public_id merchant customer payment shipping_address status:integer type:integer "
            "sub_total:decimal tax_total:decimal shipping_total:decimal discount_total:decimal "
            "total:decimal currency_code order_merchant_id rejected_message "
            "extra_data:json_text locked:boolean oos_free_shipping:boolean tries:integer "
            "generic_error_count:integer place:timestamp cancelled:timestamp "
            "created:timestamp updated:timestamp"
        ),
        update_field="updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"customer": "customer", "status": "status"}),
    ),
    Endpoint(
        name="items",
        key="public_id",
        fields=_fields(
            "public_id order subscription offer product components:json "
            "subscription_component product_attribute quantity:integer price:decimal "
            "extra_cost:decimal total_price:decimal one_time:boolean frozen:boolean "
            "first_placed:timestamp order_updated:timestamp"
        ),
        update_field="order_updated",
        range_filter="order_updated",
        incremental=True,
        default=True,
        # `status` filters on the status of the item's order.
        equality_filters=_frozen(
            {"order": "order", "subscription": "subscription", "status": "order_status"}
        ),
    ),
    Endpoint(
        name="addresses",
        key="public_id",
        fields=_fields(
            "public_id customer label first_name last_name company_name address address2 "
            "city state_province_code zip_postal_code country_code phone fax live:boolean "
            "token_id store_public_id created:timestamp updated:timestamp"
        ),
        update_field="updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"customer": "customer", "live": "live"}),
    ),
    Endpoint(
        name="payments",
        key="public_id",
        fields=_fields(
            "public_id customer billing_address label token_id cc_holder cc_type:integer "
            "cc_number_ending cc_exp_date payment_method live:boolean created:timestamp "
            "last_updated:timestamp"
        ),
        update_field="last_updated",
        range_filter=None,
        incremental=False,
        default=False,
        equality_filters=_frozen({"customer": "customer"}),
    ),
    Endpoint(
        name="products",
        key="external_product_id",
        fields=_fields(
            "external_product_id merchant name sku price:decimal image_url detail_url "
            "product_type groups:json autoship_enabled:boolean autoship_by_default:boolean "
            "prepaid_eligible:boolean premier_enabled:integer live:boolean discontinued:boolean "
            "every:integer every_period:integer offer_profile incentive_group "
            "extra_data:json_text created:timestamp last_update:timestamp"
        ),
        update_field="last_update",
        range_filter=None,
        incremental=False,
        default=False,
        equality_filters=_frozen({"live": "live"}),
        list_params=_frozen({"autoship_enabled": "all", "allow_discontinued": "true"}),
    ),
    Endpoint(
        name="offer_profiles",
        key="public_id",
        fields=_fields(
            "public_id merchant name live:boolean status weight:integer offers:json "
            "initial_coupon:json recurring_coupon:json"
        ),
        update_field=None,
        range_filter=None,
        incremental=False,
        default=True,
        list_params=_frozen({"status": "all"}),
    ),
    Endpoint(
        name="one_time_incentives",
        key="public_id",
        fields=_fields(
            "public_id merchant customer order item external_code description incentive:json "
            "applied_at:timestamp created:timestamp last_updated:timestamp"
        ),
        update_field="last_updated",
        range_filter="last_updated",
        incremental=False,
        default=True,
        equality_filters=_frozen({"customer": "customer", "order": "order"}),
    ),
)

BY_NAME: Mapping[str, Endpoint] = MappingProxyType({e.name: e for e in ENDPOINTS})


def get(name: str) -> Endpoint:
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(BY_NAME)
        raise ValueError(f"unknown endpoint {name!r}: choose from {known}") from None


def select(names: Iterable[str] | str | None) -> tuple[Endpoint, ...]:
    """Endpoints by name, in table order; None is the default set, "all" is all nine."""
    if names is None:
        return tuple(e for e in ENDPOINTS if e.default)
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    wanted = list(names)
    if not wanted:
        raise ValueError("no endpoints named: give a comma-separated list, or all")
    if wanted == ["all"]:
        return ENDPOINTS
    chosen = {get(n).name for n in wanted}
    return tuple(e for e in ENDPOINTS if e.name in chosen)
