"""What every backend's build must show: `dbt build` passes, and the marts agree with what the
simulator knows (its versions, truth and deletions), recomputed in Python (reference.py).

Imported by test_dbt_duckdb.py and test_dbt_postgres.py, each with its own `built` warehouse.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from ogsync.dictionary import labels

from .conftest import BuiltWarehouse
from .reference import by_key, close, differences

MEASURES = (
    "active_subscriptions",
    "mrr",
    "previous_mrr",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivated_mrr",
    "new_subscriptions",
    "churned_subscriptions",
    "reactivated_subscriptions",
)
MARTS = (
    "ordergroove__subscription_overview",
    "ordergroove__subscription_daily_status",
    "ordergroove__monthly_recurring_revenue",
    "ordergroove__churn_analysis",
    "ordergroove__cohort_retention",
    "ordergroove__customer_overview",
    "ordergroove__order_lines",
)


def same_measures(expected: dict[str, float], actual: dict[str, float]) -> bool:
    return all(close(expected.get(m, 0.0), actual[m]) for m in MEASURES)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def test_dbt_build_passes_on_the_synced_warehouse(built: BuiltWarehouse) -> None:
    assert built.build.returncode == 0, _tail(built.build.stdout)
    results = built.run_results()
    by_status = Counter(r["status"] for r in results)
    # A warning only from the codes test: the simulator sends order statuses the dictionary
    # may not list (their labels stay empty), which warns rather than stop a merchant's build.
    warned = [r["unique_id"] for r in results if r["status"] == "warn"]
    assert all("accepted_values" in name for name in warned), warned
    assert set(by_status) <= {"success", "pass", "warn"}, by_status
    models = {
        r["unique_id"].rsplit(".", 1)[1] for r in results if r["unique_id"].startswith("model.")
    }
    assert set(MARTS) <= models
    assert by_status["pass"] >= 40  # the sources', staging models' and marts' tests ran


def test_staging_models_hold_the_live_rows_with_codes_decoded(built: BuiltWarehouse) -> None:
    truth = built.merchant.truth
    for table in ("orders", "items", "customers", "subscriptions"):
        (row,) = built.rows(f"SELECT count(*) AS n FROM {{staging}}.stg_ordergroove__{table}")
        assert row["n"] == len(truth[table]), table
    statuses = labels("orders", "status")
    for row in built.rows("SELECT status, status_label FROM {staging}.stg_ordergroove__orders"):
        assert row["status_label"] == statuses.get(str(row["status"])), row
    periods = labels("subscriptions", "every_period")
    subs = built.rows(
        "SELECT every_period, every_period_label FROM {staging}.stg_ordergroove__subscriptions"
    )
    assert {r["every_period_label"] for r in subs} <= set(periods.values())
    for row in subs:
        assert row["every_period_label"] == periods.get(str(row["every_period"])), row


def test_the_marts_end_where_the_data_ends(built: BuiltWarehouse) -> None:
    (row,) = built.rows("SELECT as_of FROM {staging}.int_ordergroove__as_of")
    assert row["as_of"] == built.reference().as_of


def test_monthly_recurring_revenue_matches_the_simulator(built: BuiltWarehouse) -> None:
    reference = built.reference()
    expected = reference.mrr()
    rows = built.rows("SELECT * FROM {marts}.ordergroove__monthly_recurring_revenue")
    actual = {(r["month_start"], r["product_id"]): {m: float(r[m]) for m in MEASURES} for r in rows}
    assert not differences(expected, actual, same_measures)[:10]
    totals = Counter[str]()
    for row in actual.values():
        totals.update(row)
    # The simulator's changes move MRR every way but back (it never reactivates).
    for measure in ("new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr"):
        assert totals[measure] > 0, measure
    # The last month ends now: its MRR is that of every subscription live now.
    last_month = max(month for month, _ in actual)
    live = sum(periods[-1].mrr or 0.0 for periods in reference.periods.values())
    month_mrr = sum(r["mrr"] for (month, _), r in actual.items() if month == last_month)
    assert close(live, month_mrr)


def test_daily_status_counts_match_the_simulator(built: BuiltWarehouse) -> None:
    expected = {
        day: counts for day, counts in built.reference().daily_counts().items() if counts[0]
    }
    rows = built.rows(
        "SELECT date_day, count(*) AS existing, "
        "sum(CASE WHEN is_active THEN 1 ELSE 0 END) AS active "
        "FROM {marts}.ordergroove__subscription_daily_status GROUP BY date_day"
    )
    actual = {r["date_day"]: (int(r["existing"]), int(r["active"])) for r in rows}
    assert not differences(expected, actual)[:10]
    assert len(actual) > 300  # the merchant's history spans years


def test_churn_analysis_matches_the_simulator(built: BuiltWarehouse) -> None:
    reference = built.reference()
    expected = reference.cancellations()
    rows = built.rows("SELECT * FROM {marts}.ordergroove__churn_analysis")
    actual = {
        (r["month_start"], r["cancel_reason_code"], r["cancel_reason"]): (
            int(r["cancellations"]),
            float(r["churned_mrr"]),
        )
        for r in rows
    }

    def same(e: tuple[int, float], a: tuple[int, float]) -> bool:
        return e[0] == a[0] and close(e[1], a[1])

    assert not differences(expected, actual, same)[:10]
    assert len({reason for _, _, reason in actual}) >= 3  # the simulator's reasons, decoded
    starts = reference.active_at_month_start()
    for row in rows:
        assert row["active_at_start"] == starts.get(row["month_start"], 0), row


def test_cohort_retention_matches_the_simulator(built: BuiltWarehouse) -> None:
    expected = built.reference().cohorts()
    rows = built.rows("SELECT * FROM {marts}.ordergroove__cohort_retention")
    actual = {
        (r["cohort_month"], r["month_start"]): (
            int(r["cohort_customers"]),
            int(r["active_customers"]),
        )
        for r in rows
    }
    assert not differences(expected, actual)[:10]
    for row in rows:
        assert float(row["retention_rate"]) == row["active_customers"] / row["cohort_customers"]


def test_subscription_and_customer_overviews_match_the_simulator(built: BuiltWarehouse) -> None:
    reference = built.reference()
    truth = built.merchant.truth
    placed = reference.placed_by_subscription()
    subscriptions = by_key(
        built.rows("SELECT * FROM {marts}.ordergroove__subscription_overview"), "subscription_id"
    )
    assert set(subscriptions) == {s["public_id"] for s in truth["subscriptions"]}
    for sub in truth["subscriptions"]:
        row = subscriptions[sub["public_id"]]
        assert row["status"] == ("active" if sub["live"] else "cancelled")
        assert row["customer_id"] == sub["customer"]
        now = reference.periods[sub["public_id"]][-1]
        assert close(float(row["mrr"] or 0), now.mrr or 0.0), row
        orders, revenue = placed.get(sub["public_id"], (0, Decimal(0)))
        found = (row["orders_placed"], Decimal(row["revenue_to_date"]))
        assert found == (orders, revenue), (sub["public_id"], found, orders, revenue)
    by_customer = reference.placed_by_customer()
    customers = by_key(
        built.rows("SELECT * FROM {marts}.ordergroove__customer_overview"), "customer_id"
    )
    assert set(customers) == {c["merchant_user_id"] for c in truth["customers"]}
    counts = Counter(s["customer"] for s in truth["subscriptions"])
    active = Counter(s["customer"] for s in truth["subscriptions"] if s["live"])
    for key, row in customers.items():
        assert row["subscriptions"] == counts[key]
        assert row["active_subscriptions"] == active[key]
        orders, revenue = by_customer.get(key, (0, Decimal(0)))
        assert (row["orders_placed"], Decimal(row["lifetime_revenue"])) == (orders, revenue)


def test_order_lines_flag_what_the_webhooks_deleted(built: BuiltWarehouse) -> None:
    deleted = built.merchant.deleted
    rows = built.rows("SELECT * FROM {marts}.ordergroove__order_lines")
    flagged = [r for r in rows if r["is_order_deleted"]]
    assert flagged, "the simulator's changes delete orders"
    for row in rows:
        assert row["is_order_deleted"] == (row["order_id"] in deleted["orders"]), row
        assert row["is_deleted"] == (row["item_id"] in deleted["items"]), row
        if row["is_order_deleted"]:
            assert row["order_deletion_reason"] == "webhook:order.delete"
            assert row["is_deleted"]  # an order's deletion takes its items
        elif row["is_deleted"]:
            assert row["deletion_reason"] == "webhook:item.remove"
    live = [r for r in rows if not r["is_deleted"]]
    assert len(live) == len(built.merchant.truth["items"])
