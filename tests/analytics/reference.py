"""The marts' numbers computed again in plain Python, from what the simulator knows: each
subscription's versions (those a sync saw), the final truth, and the deletions.

It follows the definitions the package documents (dbt/models/marts/_ordergroove__marts.yml),
not its SQL: a subscription is active while its version says `live`, and before the first
version a sync saw, from `created` until `cancelled`; its MRR is quantity x unit price (its
own, else the product's) x 30.4375 / days between orders; a day or month is judged at its end.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from ogsync.apitime import parse_api

DAYS_PER_MONTH = 30.4375
PERIOD_DAYS = {1: 1.0, 2: 7.0, 3: DAYS_PER_MONTH}
PLACED = 5  # order status: placed
UNSENT = 1


@dataclass(frozen=True)
class Period:
    subscription: str
    customer: str
    product: str | None
    start: datetime  # local wall-clock time, as the marts count
    end: datetime | None  # None: still open
    active: bool
    mrr: float | None  # None: an active subscription whose price or frequency is unknown
    reason_code: str | None
    reason: str | None

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or self.end > moment)


class Reference:
    def __init__(
        self,
        versions: dict[str, list[dict[str, Any]]],
        truth: dict[str, list[dict[str, Any]]],
        api_zone: ZoneInfo,
        zone: ZoneInfo,
    ) -> None:
        self.api_zone = api_zone
        self.zone = zone
        self.prices = {p["external_product_id"]: _money(p["price"]) for p in truth["products"]}
        self.truth = truth
        self.periods: dict[str, list[Period]] = {
            key: self._periods(key, records) for key, records in versions.items() if records
        }
        moments = [
            self.local(r[field])
            for name, field in (
                ("subscriptions", "updated"),
                ("orders", "updated"),
                ("customers", "last_updated"),
            )
            for r in truth[name]
        ]
        self.as_of = max(m for m in moments if m is not None)

    # -- time ------------------------------------------------------------------------------

    def local(self, value: Any) -> datetime | None:
        instant = parse_api(value, self.api_zone)
        if instant is None:
            return None
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def day_end(self, day: date) -> datetime:
        return min(datetime.combine(day + timedelta(days=1), datetime.min.time()), self.as_of)

    def month_end(self, month: date) -> datetime:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        return min(datetime.combine(following, datetime.min.time()), self.as_of)

    def months(self) -> list[date]:
        first = min(p[0].start for p in self.periods.values())
        month, out = date(first.year, first.month, 1), []
        while datetime.combine(month, datetime.min.time()) <= self.as_of:
            out.append(month)
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        return out

    # -- one subscription's timeline -------------------------------------------------------

    def _mrr(self, record: dict[str, Any], active: bool) -> float | None:
        if not active:
            return 0.0
        price = _money(record["price"])
        if price is None:
            price = self.prices.get(record["product"])
        every, period = record["every"], record["every_period"]
        days = every * PERIOD_DAYS[period] if every and period in PERIOD_DAYS else None
        days = days or (float(record["frequency_days"]) if record["frequency_days"] else None)
        if price is None or not days or record["quantity"] is None:
            return None
        return record["quantity"] * float(price) * DAYS_PER_MONTH / days

    def _period(
        self, r: dict[str, Any], start: datetime, end: datetime | None, active: bool
    ) -> Period:
        return Period(
            r["public_id"],
            r["customer"],
            r["product"],
            start,
            end,
            active,
            self._mrr(r, active),
            r["cancel_reason_code"],
            r["cancel_reason"],
        )

    def _periods(self, key: str, records: list[dict[str, Any]]) -> list[Period]:
        froms = [self.local(r["updated"]) for r in records]
        periods = []
        first, first_from = records[0], froms[0]
        created, cancelled = self.local(first["created"]), self.local(first["cancelled"])
        if created is not None and first_from is not None and created < first_from:
            # before the first version seen: its own dates say when it was active
            if first["live"]:
                until = first_from
            elif cancelled is not None and cancelled > created:
                until = min(cancelled, first_from)
            else:
                until = created
            if until > created:
                periods.append(self._period(first, created, until, True))
            if first_from > until:
                periods.append(self._period(first, until, first_from, False))
        for n, record in enumerate(records):
            start = froms[n]
            end = froms[n + 1] if n + 1 < len(records) else None
            if end is None or end > start:
                periods.append(self._period(record, start, end, bool(record["live"])))
        return periods

    def state_at(self, key: str, moment: datetime) -> Period | None:
        for period in self.periods[key]:
            if period.holds(moment):
                return period
        return None

    # -- the marts -------------------------------------------------------------------------

    def daily_counts(self) -> dict[date, tuple[int, int]]:
        """Per day: (subscriptions that existed at its end, of which active)."""
        first = min(p[0].start for p in self.periods.values()).date()
        out = {}
        day = first
        while day <= self.as_of.date():
            end = self.day_end(day)
            states = [self.state_at(key, end) for key in self.periods]
            existing = [s for s in states if s is not None]
            out[day] = (len(existing), sum(1 for s in existing if s.active))
            day += timedelta(days=1)
        return out

    def month_states(self) -> dict[str, dict[date, Period | None]]:
        """Each subscription's state at each month's end, from its first month on."""
        months = self.months()
        out = {}
        for key, periods in self.periods.items():
            first = date(periods[0].start.year, periods[0].start.month, 1)
            out[key] = {m: self.state_at(key, self.month_end(m)) for m in months if m >= first}
        return out

    def mrr(self) -> dict[tuple[date, str], dict[str, float]]:
        """Per month and product, the MRR mart's measures."""
        rows: dict[tuple[date, str], Counter[str]] = defaultdict(Counter)
        for states in self.month_states().values():
            previous: Period | None = None
            active_before: set[str] = set()  # products it was active on at an earlier month end
            for month, state in states.items():
                was = previous is not None and previous.active
                product = state.product if state is not None else None
                active = state is not None and state.active
                now = (state.mrr or 0.0) if active else 0.0
                before = (previous.mrr or 0.0) if was and previous is not None else 0.0
                continues = was and previous is not None and previous.product == product
                if product is not None:
                    row = rows[(month, product)]
                    row["active_subscriptions"] += active
                    row["mrr"] += now
                    if continues:
                        row["previous_mrr"] += before
                        if active and now > before:
                            row["expansion_mrr"] += now - before
                        if active and now < before:
                            row["contraction_mrr"] += before - now
                        if not active:
                            row["churned_mrr"] += before
                            row["churned_subscriptions"] += 1
                    elif active and product in active_before:
                        row["reactivated_mrr"] += now
                        row["reactivated_subscriptions"] += 1
                    elif active:
                        row["new_mrr"] += now
                        row["new_subscriptions"] += 1
                if was and previous is not None and previous.product != product:
                    row = rows[(month, previous.product)]  # type: ignore[index]
                    row["previous_mrr"] += before
                    row["churned_mrr"] += before
                    row["churned_subscriptions"] += 1
                if active and product is not None:
                    active_before.add(product)
                previous = state
        kept = {}
        for key, row in rows.items():
            moving = row["new_subscriptions"] + row["churned_subscriptions"]
            moving += row["reactivated_subscriptions"]
            if row["active_subscriptions"] > 0 or row["previous_mrr"] != 0 or moving > 0:
                kept[key] = {name: float(value) for name, value in row.items()}
        return kept

    def cancellations(self) -> dict[tuple[date, str | None, str], tuple[int, float]]:
        """Per month and reason (code, text): how many cancelled, and the MRR they had."""
        out: dict[tuple[date, str | None, str], list[float]] = defaultdict(lambda: [0, 0.0])
        for periods in self.periods.values():
            for before, after in itertools.pairwise(periods):
                if before.active and not after.active and before.end == after.start:
                    reason = after.reason
                    text = reason.partition("|")[2] if reason and "|" in reason else reason
                    key = (date(after.start.year, after.start.month, 1), after.reason_code)
                    row = out[(*key, text or "(no reason given)")]
                    row[0] += 1
                    row[1] += before.mrr or 0.0
        return {key: (int(n), mrr) for key, (n, mrr) in out.items()}

    def active_at_month_start(self) -> dict[date, int]:
        counts: Counter[date] = Counter()
        for states in self.month_states().values():
            for month, state in states.items():
                following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
                counts[following] += bool(state is not None and state.active)
        return dict(counts)

    def cohorts(self) -> dict[tuple[date, date], tuple[int, int]]:
        """Per cohort month (of the customer's first active moment) and month: (customers in
        the cohort, of which with an active subscription at that month's end)."""
        first_active: dict[str, datetime] = {}
        for periods in self.periods.values():
            for p in periods:
                earliest = first_active.get(p.customer)
                if p.active and (earliest is None or p.start < earliest):
                    first_active[p.customer] = p.start
        cohort = {c: date(t.year, t.month, 1) for c, t in first_active.items()}
        sizes = Counter(cohort.values())
        active: dict[tuple[str, date], bool] = defaultdict(bool)
        for states in self.month_states().values():
            for month, state in states.items():
                if state is not None:
                    key = (state.customer, month)
                    active[key] = active[key] or state.active
        customer_months: dict[str, set[date]] = defaultdict(set)
        for key, states in self.month_states().items():
            customer = self.periods[key][0].customer
            customer_months[customer].update(states)
        out: dict[tuple[date, date], list[int]] = {}
        for customer, start in cohort.items():
            for month in customer_months[customer]:
                if month < start:
                    continue
                row = out.setdefault((start, month), [sizes[start], 0])
                row[1] += active[(customer, month)]
        return {key: (size, n) for key, (size, n) in out.items()}

    # -- orders ----------------------------------------------------------------------------

    def placed_by_subscription(self) -> dict[str, tuple[int, Decimal]]:
        """Per subscription: placed orders with an item of it, and those items' revenue."""
        status = {o["public_id"]: o["status"] for o in self.truth["orders"]}
        orders: dict[str, set[str]] = defaultdict(set)
        revenue: dict[str, Decimal] = defaultdict(Decimal)
        for item in self.truth["items"]:
            if status.get(item["order"]) == PLACED:
                orders[item["subscription"]].add(item["order"])
                revenue[item["subscription"]] += _money(item["total_price"]) or Decimal(0)
        return {key: (len(ids), revenue[key]) for key, ids in orders.items()}

    def placed_by_customer(self) -> dict[str, tuple[int, Decimal]]:
        out: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
        for order in self.truth["orders"]:
            if order["status"] != PLACED:
                continue
            total = _money(order["total"])
            if total is None:
                parts = (_money(order[f]) for f in ("sub_total", "tax_total", "shipping_total"))
                total = sum((p or Decimal(0) for p in parts), Decimal(0))
            row = out[order["customer"]]
            row[0] += 1
            row[1] += total
        return {key: (n, total) for key, (n, total) in out.items()}


def _money(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def close(a: float | None, b: float | None, tolerance: float = 0.01) -> bool:
    return abs((a or 0.0) - (b or 0.0)) <= tolerance


def differences(expected: dict[Any, Any], actual: dict[Any, Any], equal: Any = None) -> list[str]:
    """What differs between two mappings (missing, extra, or unequal values), for messages."""
    equal = equal or (lambda a, b: a == b)
    out = [f"missing {k}: {expected[k]}" for k in expected.keys() - actual.keys()]
    out += [f"extra {k}: {actual[k]}" for k in actual.keys() - expected.keys()]
    out += [
        f"{k}: expected {expected[k]}, got {actual[k]}"
        for k in expected.keys() & actual.keys()
        if not equal(expected[k], actual[k])
    ]
    return sorted(out)


def by_key(rows: Iterable[dict[str, Any]], *names: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[n] for n in names) if len(names) > 1 else r[names[0]]: r for r in rows}
