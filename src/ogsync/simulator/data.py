"""Realistic, deterministic Ordergroove records: the factories and the initial history.

Everything is drawn from one seeded `random.Random`, so a seed and a start time always give
the same merchant. Times are unix seconds inside; records carry the API's naive local strings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ogsync.apitime import format_api, from_epoch
from ogsync.endpoints import BY_NAME
from ogsync.simulator.store import SORT_TS, Store

DAY = 86_400
HOUR = 3_600

FIRST_NAMES = "Ada Ben Chloe Diego Elena Farid Grace Hiro Ines Jamal Kira Liam Maya Nora Omar Priya"
LAST_NAMES = (
    "Smith Garcia Chen Okafor Novak Rossi Silva Kim Müller Dubois Haddad Patel Cohen Ivanova"
)
CITIES = (
    ("Chicago", "IL", "606"),
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Boston", "MA", "021"),
    ("Seattle", "WA", "981"),
    ("Miami", "FL", "331"),
)
PRODUCT_WORDS = "Coffee Tea Vitamins Shampoo Razor Protein Filters Soap Treats Pods Serum Granola"
PRODUCT_KINDS = "Bag Box Pack Bottle Refill Bundle"
CANCEL_REASONS = (("1", "Too expensive"), ("4", "Overstocked"), ("7", "Moving"), ("9", "Other"))
# How a subscription came about, as the reference's Object Reference spells it.
RAW_SUBSCRIPTION_TYPES = ("replenishment", "IU replenishment", "CSA replenishment")
# What a prepaid subscription does after its last prepaid shipment.
RENEWAL_BEHAVIORS = ("autorenew", "cancel", "downgrade")
# Mostly placed successfully; the rest as the documented status codes spread them.
PAST_STATUSES = (5,) * 88 + (4,) * 4 + (3,) * 4 + (12, 15, 18, 19)
ODDITY_RATE = 1 / 150


def hex_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


@dataclass
class Catalog:
    """What new records reference: products with prices, offers, the merchant."""

    merchant: str
    products: list[str] = field(default_factory=list)  # external product ids
    prices: dict[str, int] = field(default_factory=dict)  # price in cents by product id
    offers: list[str] = field(default_factory=list)
    prepaid: set[str] = field(default_factory=set)  # products that may be sold prepaid


class Factory:
    """Builds one record of each kind, with the documented fields in the documented types."""

    def __init__(self, rng: random.Random, tz: ZoneInfo, catalog: Catalog) -> None:
        self.rng = rng
        self.tz = tz
        self.catalog = catalog
        self._next_customer = 10_000 + rng.randrange(10_000)

    # -- helpers -------------------------------------------------------------------------

    def ts(self, seconds: int | None) -> str | None:
        if seconds is None:
            return None
        return format_api(from_epoch(seconds), self.tz)

    def date(self, seconds: int) -> str:
        return datetime.fromtimestamp(seconds, self.tz).strftime("%Y-%m-%d")

    def odd(self) -> bool:
        return self.rng.random() < ODDITY_RATE

    def own_rng(self, kind: str, key: str) -> random.Random:
        """A generator of a record's own, seeded by its key: fields added to the simulator
        later draw from it, so that every record drawn before them stays what it was."""
        return random.Random(f"{self.catalog.merchant}:{kind}:{key}")

    def extra_data(self) -> str | None:
        roll = self.rng.random()
        if roll < 0.6:
            return None
        if roll < 0.62:
            return "null"
        return orjson.dumps(
            {
                "source": self.rng.choice(["web", "app", "csr"]),
                "tags": self.rng.sample(["gift", "vip", "promo", "b2b"], 2),
            }
        ).decode()

    def drift(self, created: int, now: int) -> int:
        """When a record was last touched: often when it was made, sometimes later."""
        if now <= created or self.rng.random() < 0.7:
            return created
        return self.rng.randint(created, now)

    def name(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES.split()), self.rng.choice(LAST_NAMES.split())

    # -- records -------------------------------------------------------------------------

    def customer(self, created: int, updated: int) -> dict[str, Any]:
        self._next_customer += self.rng.randint(1, 9)
        first, last = self.name()
        user_id = f"{self._next_customer:08d}"
        return {
            SORT_TS: updated,
            "merchant": self.catalog.merchant,
            "merchant_user_id": user_id,
            "session_id": f"{self.catalog.merchant}.{self.rng.randrange(10**6)}.{created}",
            "user_token_id": "",
            "first_name": first,
            "last_name": last,
            "email": f"{first.lower()}.{last.lower()}{user_id[-4:]}@example.com",
            "phone_number": f"+1312555{self.rng.randrange(10_000):04d}",
            "phone_type": self.rng.choice([0, 1, 2, 2, 3]),
            "live": True,
            "locale": 1,
            "price_code": self.rng.choice([None, None, "prom_customer"]),
            "extra_data": self.extra_data(),
            "experiences": self.experiences(user_id),
            "last_login": self.ts(updated) if self.rng.random() < 0.5 else None,
            "created": self.ts(created),
            "last_updated": self.ts(updated),
        }

    def experiences(self, user_id: str) -> str | None:
        """Most customers have no experience switched; some have reorder or subscription
        management set either way (JSON in a string, as the reference shows)."""
        rng = self.own_rng("customer", user_id)
        if rng.random() < 0.7:
            return None
        flags = {"reorder": rng.random() < 0.8, "subscription-management": rng.random() < 0.5}
        return orjson.dumps(flags).decode()

    def address(self, customer: str, created: int, updated: int) -> dict[str, Any]:
        first, last = self.name()
        city, state, zip3 = self.rng.choice(CITIES)
        return {
            SORT_TS: updated,
            "public_id": hex_id(self.rng),
            "customer": customer,
            "label": None,
            "first_name": first,
            "last_name": last,
            "company_name": None if self.rng.random() < 0.9 else f"{last} LLC",
            "address": f"{self.rng.randint(1, 9999)} {self.rng.choice(['Oak', 'Main', 'Lake'])} St",
            "address2": None if self.rng.random() < 0.8 else f"Apt {self.rng.randint(1, 40)}",
            "city": city,
            "state_province_code": state,
            "zip_postal_code": f"{zip3}{self.rng.randrange(100):02d}",
            "country_code": "US",
            "phone": f"312555{self.rng.randrange(10_000):04d}",
            "fax": None,
            "live": True,
            "token_id": None,
            "store_public_id": None,
            "created": self.ts(created),
            "updated": self.ts(updated),
        }

    def payment(self, customer: str, billing: str, created: int, updated: int) -> dict[str, Any]:
        first, last = self.name()
        method = self.rng.choice(["credit card"] * 8 + ["paypal", "applepay"])
        card = method == "credit card"
        return {
            SORT_TS: updated,
            "public_id": hex_id(self.rng),
            "customer": customer,
            "billing_address": billing,
            "label": None,
            "token_id": hex_id(self.rng).upper() if card else None,
            "cc_holder": f"{first} {last}" if card else None,
            "cc_type": self.rng.randint(1, 4),
            "cc_number_ending": f"{self.rng.randrange(10_000):04d}" if card else None,
            "cc_exp_date": f"{self.rng.randint(1, 12):02d}/{self.rng.randint(2026, 2031)}",
            "payment_method": method,
            "live": True,
            "created": self.ts(created),
            "last_updated": self.ts(updated),
        }

    def subscription(
        self,
        customer: dict[str, Any],
        address: str,
        payment: str,
        created: int,
        interval_days: int,
    ) -> dict[str, Any]:
        product = self.rng.choice(self.catalog.products)
        every, period = {
            14: (2, 2),
            28: (4, 2),
            30: (1, 3),
            45: (45, 1),
            60: (2, 3),
            90: (3, 3),
        }.get(interval_days, (interval_days, 1))
        bundle = self.rng.random() < 0.05
        public_id = hex_id(self.rng)
        own = self.own_rng("subscription", public_id)
        record = {
            SORT_TS: created,
            "public_id": public_id,
            "customer": customer["merchant_user_id"],
            "merchant": self.catalog.merchant,
            "product": product,
            "payment": payment,
            "shipping_address": address,
            "offer": self.rng.choice(self.catalog.offers),
            "subscription_type": "Replenish",
            "raw_subscription_type": own.choices(RAW_SUBSCRIPTION_TYPES, weights=(90, 6, 4))[0],
            "components": [
                {"public_id": hex_id(self.rng), "quantity": 1, "product": p}
                for p in self.rng.sample(self.catalog.products, 2)
            ]
            if bundle
            else [],
            "extra_data": self.extra_data(),
            "product_attribute": "null" if self.odd() else None,
            "quantity": self.rng.choice([1, 1, 1, 2, 3]),
            "price": None,
            "frequency_days": interval_days,
            "reminder_days": self.rng.choice([3, 5, 7]),
            "every": every,
            "every_period": period,
            # The documentation's own example of a date that does not exist.
            "start_date": "2017-02-29" if self.odd() else self.date(created),
            "cancelled": "null" if self.odd() else None,
            "cancel_reason": None,
            "cancel_reason_code": None,
            "currency_code": "USD",
            # Four fields the reference lists as no longer in use: always empty.
            "iteration": None,
            "sequence": None,
            "session_id": customer["session_id"],
            "merchant_order_id": str(self.rng.randint(100_000, 999_999)),
            "customer_rep": None,
            "club": None,
            "external_id": (
                f"gid://shopify/SubscriptionContract/{own.randrange(10**10, 10**11)}"
                if own.random() < 0.2
                else None
            ),
            "prepaid_subscription_context": None,
            "live": True,
            "created": self.ts(created),
            "updated": self.ts(created),
        }
        record["prepaid_subscription_context"] = self.prepaid_context(
            own, product, record["quantity"]
        )
        return record

    def prepaid_context(
        self, own: random.Random, product: str, quantity: int
    ) -> dict[str, Any] | None:
        """Some subscriptions to prepaid-eligible products are prepaid: paid for a number of
        shipments at once; the others carry no context."""
        if product not in self.catalog.prepaid or own.random() < 0.6:
            return None
        per_billing = own.choice([3, 3, 6, 12])
        behavior = own.choices(RENEWAL_BEHAVIORS, weights=(80, 10, 10))[0]
        # With none owed, a subscription that does not renew would no longer be prepaid.
        first = 0 if behavior == "autorenew" else 1
        return {
            "prepaid_orders_remaining": own.randrange(first, per_billing),
            "prepaid_orders_per_billing": per_billing,
            "renewal_behavior": behavior,
            # What the customer paid for the cycle: a prepaid discount on the shipments.
            "last_renewal_revenue": round(
                self.catalog.prices[product] * quantity * per_billing * 0.9 / 100, 2
            ),
            "prepaid_origin_merchant_order_id": f"#{own.randrange(1000, 99_999)}",
        }

    def order(
        self,
        customer: str,
        address: str,
        payment: str,
        status: int,
        created: int,
        updated: int,
        place: int,
    ) -> dict[str, Any]:
        return {
            SORT_TS: updated,
            "public_id": hex_id(self.rng),
            "merchant": self.catalog.merchant,
            "customer": customer,
            "payment": payment,
            "shipping_address": address,
            "status": status,
            "type": 1,
            "sub_total": "0.00",
            "tax_total": "0.00",
            "shipping_total": "0.00",
            "discount_total": "0.00",
            "total": "0.00",
            "currency_code": "USD",
            "order_merchant_id": str(self.rng.randint(10**6, 10**7)) if status == 5 else None,
            "rejected_message": '{"message": "Card declined", "code": "020"}'
            if status == 3
            else None,
            "extra_data": self.extra_data(),
            "locked": False,
            "oos_free_shipping": False,
            "tries": 1 if status != 1 else 0,
            "generic_error_count": 1 if 12 <= status <= 15 else 0,
            "place": self.ts(place),
            "cancelled": self.ts(updated) if status == 4 else None,
            # The documentation shows impossible creation dates; a few records carry one.
            "created": "2017-02-29 00:00:00" if self.odd() else self.ts(created),
            "updated": self.ts(updated),
        }

    def item(self, order: dict[str, Any], subscription: dict[str, Any]) -> dict[str, Any]:
        price = self.catalog.prices[subscription["product"]]
        quantity = subscription["quantity"]
        discount = self.rng.choice([0, 0, 5, 10])
        return {
            SORT_TS: order[SORT_TS],
            "order_status": order["status"],
            "public_id": hex_id(self.rng),
            "order": order["public_id"],
            "subscription": subscription["public_id"],
            "offer": subscription["offer"],
            "product": subscription["product"],
            "components": [{"product": c["product"]} for c in subscription["components"]],
            "subscription_component": None,
            "product_attribute": None,
            "quantity": quantity,
            "price": money(price),
            "extra_cost": "0.00",
            "total_price": money(price * quantity * (100 - discount) // 100),
            "one_time": False,
            "frozen": False,
            "first_placed": None,
            "order_updated": order["updated"],
        }

    def product(self, created: int, updated: int) -> dict[str, Any]:
        external = f"00{self.rng.randrange(10**8):08d}"
        price = self.rng.randint(399, 8999)
        name = f"{self.rng.choice(PRODUCT_WORDS.split())} {self.rng.choice(PRODUCT_KINDS.split())}"
        return {
            SORT_TS: updated,
            "external_product_id": external,
            "merchant": self.catalog.merchant,
            "name": name,
            "sku": f"SKU-{external[-6:]}",
            "price": money(price),
            "image_url": f"https://shop.example.com/img/{external}.jpg",
            "detail_url": f"https://shop.example.com/p/{external}",
            "product_type": "standard",
            "groups": [{"name": "subscription", "group_type": "eligibility"}],
            "autoship_enabled": self.rng.random() < 0.9,
            "autoship_by_default": self.rng.random() < 0.3,
            "prepaid_eligible": self.rng.random() < 0.2,
            "premier_enabled": 0,
            "live": True,
            "discontinued": self.rng.random() < 0.05,
            "every": None,
            "every_period": None,
            "offer_profile": None,
            "incentive_group": None,
            "extra_data": self.extra_data(),
            "created": self.ts(created),
            "last_update": self.ts(updated),
        }

    def offer_profile(self, offers: list[str], is_default: bool) -> dict[str, Any]:
        percent = self.rng.choice([5, 10, 15, 20])
        coupon = {
            "public_id": hex_id(self.rng),
            "name": f"{percent}% off subscriptions",
            "code": f"save{percent}",
            "discounts": [
                {
                    "public_id": hex_id(self.rng),
                    "name": f"{percent}% off",
                    "object": 1,
                    "field": 2,
                    "type": "Discount Percent",
                    "value": str(percent),
                    "threshold_field": None,
                    "threshold_value": None,
                }
            ],
        }
        return {
            SORT_TS: 0,  # offer profiles carry no timestamps
            "public_id": hex_id(self.rng),
            "merchant": self.catalog.merchant,
            "name": "Default Offer Profile" if is_default else f"Offer {percent}%",
            "live": True,
            "status": "available" if is_default or self.rng.random() < 0.8 else "archived",
            "weight": 100 if is_default else self.rng.choice([0, 50]),
            "offers": offers,
            "initial_coupon": None,
            "recurring_coupon": coupon,
        }

    def one_time_incentive(self, order: dict[str, Any], created: int) -> dict[str, Any]:
        value = self.rng.choice([5, 10, 15])
        return {
            SORT_TS: created,
            "public_id": hex_id(self.rng),
            "merchant": self.catalog.merchant,
            "customer": order["customer"],
            "order": order["public_id"],
            "item": None,
            "external_code": f"welcome{value}",
            "description": "One-time Incentive",
            "incentive": {
                "type": "Discount",
                "public_id": hex_id(self.rng),
                "discount_type": "Discount Percent",
                "target": "order",
                "field": "sub_total",
                "name": f"{value}% off",
                "value": f"{value}.00",
            },
            "applied_at": None,
            "created": self.ts(created),
            "last_updated": self.ts(created),
        }


def price_order(factory: Factory, order: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Recompute an order's money fields from its items, as Ordergroove does on any change."""
    sub_total = sum(_cents(i["total_price"]) for i in items)
    gross = sum(_cents(i["price"]) * i["quantity"] for i in items)
    shipping = 0 if sub_total >= 5000 else 599
    tax = sub_total * 7 // 100
    order["sub_total"] = money(sub_total)
    order["discount_total"] = money(gross - sub_total)
    order["shipping_total"] = money(shipping)
    order["tax_total"] = money(tax)
    # The documentation shows "undefined" where a total could not be computed.
    order["total"] = "undefined" if factory.odd() else money(sub_total + shipping + tax)


def _cents(text: str) -> int:
    whole, _, frac = text.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 100 + int((frac + "00")[:2]))


Sink = Callable[[str, dict[str, Any]], None]


class Batcher:
    """Buffers new records per endpoint and writes them to the store in large batches."""

    def __init__(self, store: Store, size: int = 5000) -> None:
        self.store = store
        self.size = size
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.written = 0

    def __call__(self, endpoint: str, record: dict[str, Any]) -> None:
        batch = self.pending.setdefault(endpoint, [])
        batch.append(record)
        if len(batch) >= self.size:
            self.flush(endpoint)

    def flush(self, endpoint: str | None = None) -> None:
        for name in [endpoint] if endpoint else list(self.pending):
            batch = self.pending.pop(name, [])
            if batch:
                self.store.put(BY_NAME[name], batch)
                self.written += len(batch)


def new_customer_household(
    factory: Factory, emit: Sink, now: int, *, past_cycles: int, interval_days: int
) -> int:
    """A customer with addresses, payments, subscriptions and their orders; returns records made.

    The customer's past orders are boxes placed every `interval_days`, each holding one item
    per subscription active then; live subscriptions share one upcoming unsent order.
    """
    rng = factory.rng
    interval = interval_days * DAY
    last_placed = now - int(rng.random() * interval) - HOUR
    if past_cycles:
        first_place = last_placed - (past_cycles - 1) * interval
        created = max(first_place - rng.randint(HOUR, 30 * DAY), 0)
    else:  # signing up right now: everything is stamped with this moment
        first_place = created = now

    def soon_after(moment: int, seconds: int) -> int:
        return min(moment + seconds, now)

    made = 0

    customer = factory.customer(created, factory.drift(created, now))
    emit("customers", customer)
    user = customer["merchant_user_id"]
    address_made = soon_after(created, 60)
    addresses = [factory.address(user, address_made, 0) for _ in range(rng.choice([1, 1, 1, 2]))]
    for a in addresses:
        a[SORT_TS] = factory.drift(address_made, now)
        a["updated"] = factory.ts(a[SORT_TS])
        emit("addresses", a)
    payments = []
    for a in addresses[: rng.choice([1, 1, 2])]:
        p = factory.payment(user, a["public_id"], soon_after(created, 90), 0)
        p[SORT_TS] = factory.drift(soon_after(created, 90), now)
        p["last_updated"] = factory.ts(p[SORT_TS])
        payments.append(p)
        emit("payments", p)
    made += 1 + len(addresses) + len(payments)

    # Subscriptions: the first starts with the first box, others join later; some end.
    subs: list[tuple[dict[str, Any], int, int]] = []  # (record, first cycle, cycle cancelled)
    for n in range(rng.choices([1, 2, 3, 4], weights=[40, 32, 18, 10])[0]):
        start_cycle = 0 if n == 0 else rng.randint(0, past_cycles)
        end_cycle = past_cycles + 1
        if rng.random() < 0.25 and start_cycle < past_cycles:
            end_cycle = rng.randint(start_cycle + 1, past_cycles)
        if start_cycle < past_cycles:  # in time for that cycle's box
            sub_created = first_place + start_cycle * interval - rng.randint(60, HOUR)
        else:  # joined since the last box shipped, for the next one
            sub_created = rng.randint(min(first_place + (past_cycles - 1) * interval, now), now)
        sub_created = min(max(sub_created, created + 120), now)
        address = rng.choice(addresses)["public_id"]
        sub = factory.subscription(
            customer, address, rng.choice(payments)["public_id"], sub_created, interval_days
        )
        if end_cycle <= past_cycles:
            after_box = first_place + (end_cycle - 1) * interval
            latest = min(after_box + interval // 2, now)
            cancel_at = rng.randint(min(after_box + 60, latest), latest)
            reason = rng.choice(CANCEL_REASONS)
            sub.update(
                live=False,
                cancelled=factory.ts(cancel_at),
                cancel_reason=f"{reason[0]}|{reason[1]}",
                cancel_reason_code=reason[0],
            )
            sub[SORT_TS] = cancel_at
        else:
            sub[SORT_TS] = factory.drift(sub_created, now)
        sub["updated"] = factory.ts(sub[SORT_TS])
        subs.append((sub, start_cycle, end_cycle))
        emit("subscriptions", sub)
    made += len(subs)

    shipping = subs[0][0]["shipping_address"]
    payment = subs[0][0]["payment"]
    previous = soon_after(created, 300)
    for cycle in range(past_cycles + 1):
        active = [s for s, start, end in subs if start <= cycle < end]
        if not active:
            continue
        upcoming = cycle == past_cycles
        place = first_place + cycle * interval
        order_created = previous
        if upcoming:
            status, updated = 1, factory.drift(order_created, now)
            place = max(place, now + rng.randint(HOUR, interval))
        else:
            status, updated = rng.choice(PAST_STATUSES), place + rng.randint(60, 3 * HOUR)
            updated = min(updated, now)
        order = factory.order(user, shipping, payment, status, order_created, updated, place)
        items = [factory.item(order, s) for s in active]
        price_order(factory, order, items)
        emit("orders", order)
        for item in items:
            emit("items", item)
        made += 1 + len(items)
        if upcoming and rng.random() < 0.1:
            emit("one_time_incentives", factory.one_time_incentive(order, updated))
            made += 1
        previous = min(place + rng.randint(60, 600), now)
    return made


def generate(store: Store, factory: Factory, records: int, now: int) -> int:
    """Fill the store with about `records` records across all nine endpoints."""
    with store.transaction():
        written = _generate(store, factory, records, now)
    store.create_indexes()
    return written


def _generate(store: Store, factory: Factory, records: int, now: int) -> int:
    rng = factory.rng
    emit = Batcher(store)
    catalog = factory.catalog

    n_profiles = max(3, min(40, records // 25_000))
    for n in range(n_profiles):
        offers = [hex_id(rng) for _ in range(rng.randint(1, 3))]
        catalog.offers.extend(offers)
        emit("offer_profiles", factory.offer_profile(offers, is_default=n == 0))
    for _ in range(max(12, records // 80)):
        created = now - rng.randint(30 * DAY, 1000 * DAY)
        product = factory.product(created, factory.drift(created, now))
        catalog.products.append(product["external_product_id"])
        catalog.prices[product["external_product_id"]] = _cents(product["price"])
        if product["prepaid_eligible"]:
            catalog.prepaid.add(product["external_product_id"])
        emit("products", product)
    made = n_profiles + len(catalog.products)

    while made < records:
        cycles = rng.choices(range(8), weights=[8, 14, 16, 16, 14, 12, 10, 10])[0]
        interval_days = rng.choice([14, 28, 30, 30, 30, 45, 60, 90])
        # Customers with no box shipped yet signed up at some point of their first interval.
        signed_up = now if cycles else now - rng.randint(HOUR, interval_days * DAY)
        made += new_customer_household(
            factory, emit, signed_up, past_cycles=cycles, interval_days=interval_days
        )
    emit.flush()
    return emit.written
