"""The one table of Ordergroove's nine list endpoints.

Everything else (the client, the planner, the warehouse schema, the simulator) reads names,
paths, keys, update fields and filters from here and nowhere else.
"""

from __future__ import annotations

import textwrap
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
    # What the field means, in our words from Ordergroove's API reference: the data
    # dictionary, the warehouses' column comments and the dbt docs are all made from it.
    description: str = ""

    @property
    def column(self) -> str:
        """The warehouse column: the API's name, except the SQL reserved word `order`."""
        return "order_id" if self.name == "order" else self.name


def _fields(spec: str) -> tuple[Field, ...]:
    """Parse a field a line, "name[:type] description" (type defaults to text); an indented
    line goes on with the description above it."""
    out: list[tuple[str, list[str]]] = []
    for line in textwrap.dedent(spec).strip("\n").splitlines():
        if line[:1].isspace():
            out[-1][1].append(line.strip())
            continue
        token, _, description = line.partition(" ")
        out.append((token, [description.strip()]))
    fields = []
    for token, words in out:
        name, _, kind = token.partition(":")
        fields.append(Field(name, FieldType(kind or "text"), " ".join(w for w in words if w)))
    return tuple(fields)


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
    # What one record is, in a line (the data dictionary's description of its table).
    description: str = ""
    # How large the endpoint tends to be beside the others (higher is larger), for the order
    # of a run with no earlier counts: an order holds one item or more, and a subscription
    # has an order each cycle. Largest first is what keeps the run shortest.
    size_rank: int = 0

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
        description="A customer of the merchant's subscription program.",
        key="merchant_user_id",
        fields=_fields(
            """
            merchant                    The merchant's id at Ordergroove.
            merchant_user_id            The customer's id in the merchant's own store; every other
                                        object's `customer` holds it.
            session_id                  Ordergroove session id (the `og_session_id` cookie) of the
                                        visit that made the customer.
            user_token_id               Ordergroove's user token for the customer.
            first_name                  The customer's first name.
            last_name                   The customer's last name.
            email                       The customer's email address.
            phone_number                The customer's phone number.
            phone_type:integer          What kind of line `phone_number` is, as a code.
            live:boolean                True while the customer's account is active.
            locale:integer              The customer's locale, as a number. The reference also shows
                                        text such as en-us here (in its update call); text does not
                                        fit this column and is kept in `_raw`.
            price_code                  A price code the merchant gave the customer, for special
                                        pricing.
            extra_data:json_text        Free-form key/value data the merchant keeps on the customer
                                        (sent as JSON inside a string).
            experiences:json_text       Which Ordergroove experiences are on or off for the
                                        customer, as true/false flags such as reorder and
                                        subscription-management (sent as JSON inside a string).
            last_login:timestamp        When the customer last logged in.
            created:timestamp           When the customer was created at Ordergroove.
            last_updated:timestamp      When the customer last changed: the customers' update time.
            """
        ),
        update_field="last_updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"email": "email", "live": "live"}),
    ),
    Endpoint(
        name="subscriptions",
        description="A subscription: a product a customer receives again and again, at a cadence.",
        key="public_id",
        fields=_fields(
            """
            public_id                   The subscription's id.
            customer                    The subscriber: `customers.merchant_user_id`.
            merchant                    The merchant's id at Ordergroove.
            product                     The product subscribed to: `products.external_product_id`.
            payment                     The payment method its orders are charged to:
                                        `payments.public_id`.
            shipping_address            Where its orders ship: `addresses.public_id`.
            offer                       The Ordergroove offer the subscription was made through.
            subscription_type           The kind of subscription (replenishment for most), a coarser
                                        form of `raw_subscription_type`.
            raw_subscription_type       How the subscription came about: at checkout, through
                                        Instant Upsell, or by customer service.
            components:json             The products of a bundle: for new bundles a list of objects
                                        with public_id, quantity and product; legacy bundles list
                                        product ids. Empty for other subscriptions.
            extra_data:json_text        Free-form key/value data the merchant keeps on the
                                        subscription.
            product_attribute           No longer used by Ordergroove.
            quantity:integer            Units of the product in each order.
            price:decimal               The subscription's own unit price, set only when its price
                                        is locked; otherwise empty and the product's price applies.
            frequency_days:integer      Days between orders.
            reminder_days:integer       How many days before an order is placed the reminder email
                                        goes out.
            every:integer               How many periods lie between orders; with `every_period`
                                        this is the cadence (every 4, period weeks: every four
                                        weeks).
            every_period:integer        The unit of `every`, as a code.
            start_date:date             The day the subscription started.
            cancelled:timestamp         When the subscription was cancelled; empty while it is not.
            cancel_reason               Why it was cancelled: the reason's code, a pipe and the
                                        reason's text (4|Overstocked).
            cancel_reason_code          The cancellation reason's code; each merchant defines its
                                        own reasons.
            currency_code               Three-letter ISO currency code.
            iteration                   No longer used by Ordergroove.
            sequence                    No longer used by Ordergroove.
            session_id                  Session id (the `og_session_id` cookie) of the checkout that
                                        made the subscription.
            merchant_order_id           The id, in the merchant's store, of the order that made the
                                        subscription.
            customer_rep                No longer used by Ordergroove.
            club                        No longer used by Ordergroove.
            external_id                 The subscription's id on an external platform, such as a
                                        Shopify subscription contract.
            prepaid_subscription_context:json
                                        Prepaid state, for prepaid subscriptions only:
                                        prepaid_orders_remaining (shipments still owed before it
                                        renews), prepaid_orders_per_billing (shipments paid for at
                                        each billing), renewal_behavior (after the last prepaid
                                        shipment: autorenew, cancel, or downgrade to a normal
                                        subscription), last_renewal_revenue (what the last renewal
                                        charged) and prepaid_origin_merchant_order_id (the store
                                        order that took that payment).
            live:boolean                True while the subscription is active; false once cancelled.
            created:timestamp           When the subscription was created.
            updated:timestamp           When the subscription last changed: the subscriptions'
                                        update time.
            """
        ),
        update_field="updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"customer": "customer", "live": "live", "product": "product"}),
        size_rank=1,
    ),
    Endpoint(
        name="orders",
        description="An order: one shipment to a customer, with items of their subscriptions.",
        key="public_id",
        fields=_fields(
            """
            public_id                   The order's id. An order is one shipment: items of one
                                        customer's subscriptions, to one address, paid with one
                                        payment method.
            merchant                    The merchant's id at Ordergroove.
            customer                    The customer: `customers.merchant_user_id`.
            payment                     The payment method charged: `payments.public_id`.
            shipping_address            Where the order ships: `addresses.public_id`.
            status:integer              Where the order stands, as a code.
            type:integer                The kind of order, as a code.
            sub_total:decimal           The items' total after their discounts, before tax and
                                        shipping.
            tax_total:decimal           Tax on the order (Ordergroove usually computes none).
            shipping_total:decimal      Shipping cost of the order.
            discount_total:decimal      All discounts on the order.
            total:decimal               What the order costs: items, tax and shipping, after
                                        discounts.
            currency_code               Three-letter ISO currency code.
            order_merchant_id           The id of the order the merchant's store made from it, set
                                        once it is placed.
            rejected_message            Why placing the order failed, as the store answered.
            extra_data:json_text        Free-form key/value data kept on the order; a merged order
                                        names the order it went into (merged_order_id).
            locked:boolean              True once the order is locked and can no longer be edited.
            oos_free_shipping:boolean   Internal to Ordergroove.
            tries:integer               How many times Ordergroove tried to place the order.
            generic_error_count:integer
                                        How many placement attempts failed with an unknown error.
            place:timestamp             When the order is to be placed in the merchant's store (or
                                        was).
            cancelled:timestamp         When the order was cancelled; empty if it was not.
            created:timestamp           When Ordergroove created the order.
            updated:timestamp           When the order last changed: the orders' update time (any
                                        change to its items moves it too).
            """
        ),
        update_field="updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"customer": "customer", "status": "status"}),
        size_rank=2,
    ),
    Endpoint(
        name="items",
        description="An order item: one product line of an order, usually for one subscription.",
        key="public_id",
        fields=_fields(
            """
            public_id                   The item's id: one product line of an order.
            order                       The order holding the item: `orders.public_id` (the API
                                        calls it `order`, a reserved word in SQL).
            subscription                The subscription the item ships for:
                                        `subscriptions.public_id`; may be empty for an item added by
                                        Instant Upsell.
            offer                       The offer tied to the item; set for items added by Instant
                                        Upsell.
            product                     The product: `products.external_product_id`.
            components:json             Legacy bundles: the products making up the line.
            subscription_component      New bundles: the subscription component the item stands for.
            product_attribute           No longer used by Ordergroove.
            quantity:integer            Units of the product in the order.
            price:decimal               Unit price of the product.
            extra_cost:decimal          An extra cost on the item (documented as no longer used).
            total_price:decimal         What the line costs after its discounts.
            one_time:boolean            True for a one-time item added by Instant Upsell; false for
                                        a subscription's item.
            frozen:boolean              Internal to Ordergroove.
            first_placed:timestamp      Internal to Ordergroove.
            order_updated:timestamp     When the item's order last changed. Items have no update
                                        time of their own: this is theirs.
            """
        ),
        update_field="order_updated",
        range_filter="order_updated",
        incremental=True,
        default=True,
        # `status` filters on the status of the item's order.
        equality_filters=_frozen(
            {"order": "order", "subscription": "subscription", "status": "order_status"}
        ),
        size_rank=3,
    ),
    Endpoint(
        name="addresses",
        description="A customer's shipping or billing address.",
        key="public_id",
        fields=_fields(
            """
            public_id                   The address's id.
            customer                    The customer: `customers.merchant_user_id`.
            label                       A label the customer gave the address, such as home.
            first_name                  First name of the person the shipment is for.
            last_name                   Last name of the person the shipment is for.
            company_name                Company at the address.
            address                     First line: street and number.
            address2                    Second line: apartment, floor, building.
            city                        The city of the address.
            state_province_code         State, province or region.
            zip_postal_code             ZIP or postal code.
            country_code                Two-letter country code.
            phone                       Phone number for the address.
            fax                         Fax number for the address.
            live:boolean                True while the address is in use by an upcoming order or a
                                        subscription.
            token_id                    No longer used by Ordergroove.
            store_public_id             The physical store tied to the address, if any.
            created:timestamp           When the address was created.
            updated:timestamp           When the address last changed: the addresses' update time.
            """
        ),
        update_field="updated",
        range_filter="updated",
        incremental=True,
        default=True,
        equality_filters=_frozen({"customer": "customer", "live": "live"}),
    ),
    Endpoint(
        name="payments",
        description="A customer's payment method (a card or PayPal).",
        key="public_id",
        fields=_fields(
            """
            public_id                   The payment method's id.
            customer                    The customer: `customers.merchant_user_id`.
            billing_address             The billing address: `addresses.public_id`.
            label                       A label for the payment method.
            token_id                    The payment token kept by the merchant's store or gateway.
            cc_holder                   The card holder's name.
            cc_type:integer             The card's brand, as a code.
            cc_number_ending            Last four digits of the card number.
            cc_exp_date                 When the card expires (MM/YYYY).
            payment_method              How the customer pays.
            live:boolean                True while the payment method is used by an upcoming order
                                        or a subscription.
            created:timestamp           When the payment method was added.
            last_updated:timestamp      When the payment method last changed: the payments' update
                                        time.
            """
        ),
        update_field="last_updated",
        range_filter=None,
        incremental=False,
        default=False,
        equality_filters=_frozen({"customer": "customer"}),
    ),
    Endpoint(
        name="products",
        description="A product of the merchant's catalogue.",
        key="external_product_id",
        fields=_fields(
            """
            external_product_id         The product's id in the merchant's store: the key, and what
                                        subscriptions and items name in `product`.
            merchant                    The merchant's id at Ordergroove.
            name                        The product's name.
            sku                         The product's SKU.
            price:decimal               The product's base price in the merchant's store.
            image_url                   URL of the product's image.
            detail_url                  URL of the product's page.
            product_type                The kind of product, such as standard or a bundle.
            groups:json                 Groups the product belongs to (eligibility, SKU swap and
                                        others): a list of objects with group_type and name.
            autoship_enabled:boolean    True when customers may subscribe to the product.
            autoship_by_default:boolean
                                        True when subscribing is preselected on the product's page.
            prepaid_eligible:boolean    True when the product may be sold as a prepaid subscription.
            premier_enabled:integer     No longer used by Ordergroove.
            live:boolean                True while the product is in stock in the merchant's store.
            discontinued:boolean        True once the product is discontinued.
            every:integer               The product's default number of periods between orders
                                        (documented as no longer used).
            every_period:integer        The unit of `every`, as a code (documented as no longer
                                        used).
            offer_profile               The offer profile tied to the product (documented as no
                                        longer used).
            incentive_group             A custom incentive group the product belongs to.
            extra_data:json_text        Free-form data kept on the product, often its name, image
                                        and URL in other languages.
            created:timestamp           When the product was created at Ordergroove.
            last_update:timestamp       When the product last changed: the products' update time.
            """
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
        description="An offer profile: a set of subscription offers and the coupons they give.",
        key="public_id",
        fields=_fields(
            """
            public_id                   The offer profile's id.
            merchant                    The merchant's id at Ordergroove.
            name                        The profile's name.
            live:boolean                True while the profile is active.
            status                      Whether the profile is available or archived (a sync asks
                                        for both).
            weight:integer              The profile's weight (100 for the default profile in the
                                        reference's example).
            offers:json                 Ids of the offers in the profile.
            initial_coupon:json         The coupon on a subscription's first order: public_id, name,
                                        code and its discounts.
            recurring_coupon:json       The coupon on recurring orders: public_id, name, code and
                                        its discounts.
            """
        ),
        update_field=None,
        range_filter=None,
        incremental=False,
        default=True,
        list_params=_frozen({"status": "all"}),
    ),
    Endpoint(
        name="one_time_incentives",
        description="A one-time incentive: a discount on one order, one item, or shipping.",
        key="public_id",
        fields=_fields(
            """
            public_id                   The one-time incentive's id.
            merchant                    The merchant's id at Ordergroove.
            customer                    The customer: `customers.merchant_user_id`.
            order                       The order it discounts: `orders.public_id` (the API calls it
                                        `order`, a reserved word in SQL).
            item                        The item it discounts, for a discount on one item:
                                        `items.public_id`.
            external_code               The merchant's code for the discount.
            description                 What the incentive is, in words.
            incentive:json              The discount itself: its kind, value and target (an item,
                                        the order, or its shipping).
            applied_at:timestamp        When the incentive was applied (served by the API, though
                                        not in the reference's field list).
            created:timestamp           When the incentive was created.
            last_updated:timestamp      When the incentive last changed: its update time.
            """
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
