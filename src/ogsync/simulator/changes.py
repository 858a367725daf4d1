"""Change over time: what customers and Ordergroove's background jobs do to the records.

Each change stamps the records it touches with its moment, keeps the links between records
true (an item's `order_updated` mirrors its order's `updated`), and returns the webhook
events it causes. Cancelling, skipping and delaying hard-delete future unsent orders and
items, which is what the `order.delete` and `item.remove` events announce.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ogsync.apitime import parse_api
from ogsync.endpoints import BY_NAME
from ogsync.simulator.data import (
    CANCEL_REASONS,
    DAY,
    Factory,
    hex_id,
    new_customer_household,
    price_order,
)
from ogsync.simulator.store import SORT_TS, Store

CUSTOMERS = BY_NAME["customers"]
SUBSCRIPTIONS = BY_NAME["subscriptions"]
ORDERS = BY_NAME["orders"]
ITEMS = BY_NAME["items"]
ADDRESSES = BY_NAME["addresses"]
PAYMENTS = BY_NAME["payments"]
PRODUCTS = BY_NAME["products"]
OFFER_PROFILES = BY_NAME["offer_profiles"]
INCENTIVES = BY_NAME["one_time_incentives"]

ORDER_STATUS_DISPLAY = {1: "Unsent", 3: "Rejected", 4: "Cancelled", 5: "Success"}

Record = dict[str, Any]


class Changer:
    def __init__(self, store: Store, factory: Factory) -> None:
        self.store = store
        self.factory = factory
        self.rng = factory.rng
        self.events: list[Record] = []
        self.counts: Counter[str] = Counter()
        self.kinds: list[tuple[Callable[[int], bool], int]] = [
            (self.new_customer, 8),
            (self.new_subscription, 8),
            (self.update_customer, 10),
            (self.update_address, 5),
            (self.update_payment, 4),
            (self.remove_payment, 1),
            (self.change_quantity, 12),
            (self.place_order, 20),
            (self.cancel_subscription, 10),
            (self.skip_order, 10),
            (self.update_product, 3),
            (self.change_offer_profile, 1),
            (self.one_time_incentive, 4),
        ]

    def apply(self, start: int, end: int, count: int) -> list[Record]:
        """Make `count` changes at moments spread over (start, end]; return their events."""
        self.events = []
        if count <= 0:
            return []
        # With no time to spread over, every change lands on the clock's current second.
        low = start + 1 if end > start else end
        moments = sorted(self.rng.randint(low, end) for _ in range(count))
        funcs, weights = zip(*self.kinds, strict=True)
        with self.store.transaction():
            for moment in moments:
                for change in self.rng.choices(funcs, weights=weights, k=8):
                    if change(moment):  # a change that finds nothing to act on tries another
                        self.counts[change.__name__] += 1
                        break
        return self.events

    # -- helpers -------------------------------------------------------------------------

    def ts(self, moment: int) -> str:
        return self.factory.ts(moment) or ""

    def pick(self, ep, where: str = "1") -> Record | None:
        return self.store.pick(ep, self.rng.random(), where)

    def event(self, kind: str, moment: int, obj: Record) -> None:
        self.events.append(
            {
                "id": hex_id(self.rng),
                "type": kind,
                "created": moment,
                "data": {"object": obj},
                "context": None,
                "snapshot": {},
            }
        )

    def webhook_object(self, kind: str, record: Record) -> Record:
        """A record as webhooks carry it: unix-integer times, extra_data as an object."""
        obj: Record = {}
        for name, value in record.items():
            if name.startswith("_") or name == "order_status":
                continue
            field = name in ("created", "updated", "cancelled", "last_updated")
            obj[name] = self.unix(value) if field else value
        obj["type"] = kind  # the object's kind, as webhooks name it (orders also have a `type`)
        if kind == "order":
            obj["status_display"] = ORDER_STATUS_DISPLAY.get(record["status"], "Other")
            obj["place"] = (record.get("place") or "")[:10] or None
            obj["extra_data"] = {}
        return obj

    def unix(self, value: Any) -> int | None:
        instant = parse_api(value, self.factory.tz)
        return None if instant is None else int(instant.timestamp())

    def order_items(self, order_id: str) -> list[Record]:
        return self.store.find(ITEMS, order=order_id)

    def save_order(self, order: Record, moment: int, items: list[Record]) -> None:
        """Recalculate and stamp an order and mirror its state onto every item it holds."""
        price_order(self.factory, order, items)
        order[SORT_TS] = moment
        order["updated"] = self.ts(moment)
        for item in items:
            item[SORT_TS] = moment
            item["order_updated"] = order["updated"]
            item["order_status"] = order["status"]
        self.store.put(ORDERS, [order])
        self.store.put(ITEMS, items)

    def delete_order(self, order: Record, moment: int) -> None:
        """Hard-delete an unsent order and its items; the webhook names the order only."""
        items = self.order_items(order["public_id"])
        self.store.delete(ITEMS, [i["public_id"] for i in items], moment)
        self.store.delete(ORDERS, [order["public_id"]], moment)
        self.event("order.delete", moment, self.webhook_object("order", order))
        for incentive in self.store.find(INCENTIVES, order=order["public_id"]):
            incentive.update({SORT_TS: moment, "order": None, "last_updated": self.ts(moment)})
            self.store.put(INCENTIVES, [incentive])

    def remove_item(self, item: Record, moment: int) -> None:
        self.store.delete(ITEMS, [item["public_id"]], moment)
        obj = self.webhook_object("item", item)
        obj["customer"] = None
        self.event("item.remove", moment, obj)

    def touch(self, ep, record: Record, moment: int, **changes: Any) -> None:
        record.update(changes)
        record[SORT_TS] = moment
        if ep.update_field:
            record[ep.update_field] = self.ts(moment)
        self.store.put(ep, [record])

    def upcoming_order(self, customer: str) -> Record | None:
        found = self.store.find(ORDERS, customer=customer, status=1)
        return found[0] if found else None

    def next_order(self, template: Record, subs: list[Record], moment: int) -> None:
        """The next unsent order for `subs`, created just as the current one is processed."""
        interval = max(subs[0]["frequency_days"] or 30, 1) * DAY
        order = self.factory.order(
            template["customer"],
            template["shipping_address"],
            template["payment"],
            1,
            moment,
            moment,
            moment + interval,
        )
        items = [self.factory.item(order, s) for s in subs]
        self.save_order(order, moment, items)
        self.event("order.create", moment, self.webhook_object("order", order))

    # -- the changes ---------------------------------------------------------------------

    def new_customer(self, moment: int) -> bool:
        def emit(endpoint: str, record: Record) -> None:
            self.store.put(BY_NAME[endpoint], [record])

        new_customer_household(
            self.factory, emit, moment, past_cycles=0, interval_days=self.rng.choice([30, 60])
        )
        return True

    def new_subscription(self, moment: int) -> bool:
        customer = self.pick(CUSTOMERS)
        if customer is None:
            return False
        user = customer["merchant_user_id"]
        addresses = self.store.find(ADDRESSES, customer=user)
        payments = self.store.find(PAYMENTS, customer=user)
        if not addresses or not payments:
            return False
        sub = self.factory.subscription(
            customer, addresses[0]["public_id"], payments[0]["public_id"], moment, 30
        )
        self.store.put(SUBSCRIPTIONS, [sub])
        self.event("subscription.create", moment, self.webhook_object("subscription", sub))
        order = self.upcoming_order(user)
        if order is None:
            self.next_order(sub, [sub], moment)
        else:  # added to the box that ships next
            items = [*self.order_items(order["public_id"]), self.factory.item(order, sub)]
            self.save_order(order, moment, items)
        return True

    def update_customer(self, moment: int) -> bool:
        customer = self.pick(CUSTOMERS)
        if customer is None:
            return False
        phone = f"+1773555{self.rng.randrange(10_000):04d}"
        self.touch(CUSTOMERS, customer, moment, phone_number=phone)
        return True

    def update_address(self, moment: int) -> bool:
        address = self.pick(ADDRESSES)
        if address is None:
            return False
        self.touch(ADDRESSES, address, moment, address2=f"Unit {self.rng.randint(1, 99)}")
        return True

    def update_payment(self, moment: int) -> bool:
        payment = self.pick(PAYMENTS)
        if payment is None:
            return False
        expiry = f"{self.rng.randint(1, 12):02d}/{self.rng.randint(2027, 2032)}"
        self.touch(PAYMENTS, payment, moment, cc_exp_date=expiry)
        return True

    def remove_payment(self, moment: int) -> bool:
        """A customer deletes a spare card: payments are hard-deleted with no webhook."""
        payment = self.pick(PAYMENTS)
        if payment is None:
            return False
        in_use = self.store.count(
            SUBSCRIPTIONS, "json_extract(body, '$.payment') = ?", (payment["public_id"],)
        ) + self.store.count(ORDERS, "json_extract(body, '$.payment') = ?", (payment["public_id"],))
        if in_use:
            return False
        self.store.delete(PAYMENTS, [payment["public_id"]], moment)
        return True

    def change_quantity(self, moment: int) -> bool:
        sub = self.pick(SUBSCRIPTIONS, "f_live = 1")
        if sub is None:
            return False
        self.touch(SUBSCRIPTIONS, sub, moment, quantity=self.rng.randint(1, 4))
        for item in self.store.find(ITEMS, subscription=sub["public_id"], status=1):
            order = self.store.get(ORDERS, item["order"])
            if order is None:
                continue
            items = self.order_items(order["public_id"])
            for other in items:
                if other["public_id"] == item["public_id"]:
                    other["quantity"] = sub["quantity"]
            self.save_order(order, moment, items)
        return True

    def place_order(self, moment: int) -> bool:
        """The nightly placement: an unsent order is sent, and the next one is made."""
        order = self.pick(ORDERS, "f_status = 1")
        if order is None:
            return False
        items = self.order_items(order["public_id"])
        order["status"] = self.rng.choice([5] * 18 + [3, 18])
        order["place"] = self.ts(moment)
        order["tries"] = 1
        if order["status"] == 5:
            order["order_merchant_id"] = str(self.rng.randint(10**6, 10**7))
        self.save_order(order, moment, items)
        kind = {5: "order.success", 3: "order.reject"}.get(order["status"], "order.generic_error")
        self.event(kind, moment, self.webhook_object("order", order))
        subs = [self.store.get(SUBSCRIPTIONS, i["subscription"]) for i in items]
        if order["status"] == 5:
            for sub in subs:
                if sub is not None and sub["prepaid_subscription_context"]:
                    self.prepaid_shipped(sub, order, moment)
        live = [s for s in subs if s is not None and s["live"]]
        if live:
            self.next_order(order, live, moment)
        return True

    def prepaid_shipped(self, sub: Record, order: Record, moment: int) -> None:
        """A prepaid subscription's order was placed. With shipments still owed, one fewer is;
        with none owed, this order starts the next cycle (autorenew: paid for again). The
        cycle's last shipment ends a `cancel` subscription and makes a `downgrade` one a
        normal subscription, as the reference's prepaid renewal behaviours say."""
        context = dict(sub["prepaid_subscription_context"])
        behavior = context["renewal_behavior"]
        remaining = context["prepaid_orders_remaining"]
        per_billing = context["prepaid_orders_per_billing"]
        if remaining == 0:  # none owed: only an autorenew subscription is still prepaid then
            items = self.order_items(order["public_id"])
            item = next(i for i in items if i["subscription"] == sub["public_id"])
            context.update(
                prepaid_orders_remaining=per_billing - 1,
                last_renewal_revenue=round(float(item["total_price"]) * per_billing, 2),
                prepaid_origin_merchant_order_id=f"#{order['order_merchant_id']}",
            )
        else:
            context["prepaid_orders_remaining"] = remaining - 1
        last = context["prepaid_orders_remaining"] == 0
        if last and behavior == "cancel":
            self.touch(
                SUBSCRIPTIONS, sub, moment, live=False, cancelled=self.ts(moment),
                prepaid_subscription_context=context,
            )  # fmt: skip
            self.event("subscription.cancel", moment, self.webhook_object("subscription", sub))
        else:
            done = last and behavior == "downgrade"
            self.touch(
                SUBSCRIPTIONS, sub, moment, prepaid_subscription_context=None if done else context
            )

    def cancel_subscription(self, moment: int) -> bool:
        sub = self.pick(SUBSCRIPTIONS, "f_live = 1")
        if sub is None:
            return False
        code, text = self.rng.choice(CANCEL_REASONS)
        self.touch(
            SUBSCRIPTIONS,
            sub,
            moment,
            live=False,
            cancelled=self.ts(moment),
            cancel_reason=f"{code}|{text}",
            cancel_reason_code=code,
        )
        self.event("subscription.cancel", moment, self.webhook_object("subscription", sub))
        for item in self.store.find(ITEMS, subscription=sub["public_id"], status=1):
            order = self.store.get(ORDERS, item["order"])
            if order is None:
                continue
            rest = [
                i
                for i in self.order_items(order["public_id"])
                if i["public_id"] != item["public_id"]
            ]
            if rest:
                self.remove_item(item, moment)
                self.save_order(order, moment, rest)
            else:
                self.delete_order(order, moment)
        return True

    def skip_order(self, moment: int) -> bool:
        """Skip or delay: the unsent order is deleted and a later one takes its place."""
        order = self.pick(ORDERS, "f_status = 1")
        if order is None:
            return False
        subs = [
            self.store.get(SUBSCRIPTIONS, i["subscription"])
            for i in self.order_items(order["public_id"])
        ]
        live = [s for s in subs if s is not None]
        self.delete_order(order, moment)
        if live:
            for sub in live:
                self.touch(SUBSCRIPTIONS, sub, moment)
            self.event("order.skip_order", moment, self.webhook_object("order", order))
            self.next_order(order, live, moment)
        return True

    def update_product(self, moment: int) -> bool:
        product = self.pick(PRODUCTS)
        if product is None:
            return False
        cents = self.rng.randint(399, 8999)
        changes: Record = {"price": f"{cents // 100}.{cents % 100:02d}"}
        if self.rng.random() < 0.2:
            changes["discontinued"] = not product["discontinued"]
        self.touch(PRODUCTS, product, moment, **changes)
        return True

    def change_offer_profile(self, moment: int) -> bool:
        profile = self.pick(OFFER_PROFILES, "1")
        if profile is None or profile["weight"] == 100:
            return False
        status = "archived" if profile["status"] == "available" else "available"
        self.touch(OFFER_PROFILES, profile, 0, status=status)
        return True

    def one_time_incentive(self, moment: int) -> bool:
        order = self.pick(ORDERS, "f_status = 1")
        if order is None:
            return False
        existing = self.store.find(INCENTIVES, order=order["public_id"])
        if existing:
            self.touch(INCENTIVES, existing[0], moment, applied_at=self.ts(moment))
        else:
            self.store.put(INCENTIVES, [self.factory.one_time_incentive(order, moment)])
        return True
