"""The dbt package built on a simulator-synced DuckDB warehouse (the checks every backend shares
are in dbt_checks.py), and what only needs one backend: the docs, freshness, and a warehouse
missing a column."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ogsync import dictionary
from ogsync.analytics import build
from ogsync.analytics.generate import HISTORY_TABLES, SOURCE_TABLES, source_tables, staging_model
from ogsync.analytics.scaffold import init_project
from ogsync.apitime import format_api
from ogsync.config import Settings
from ogsync.destinations.duckdb import file_url

from .conftest import DBT_TIMEOUT, BuiltWarehouse
from .dbt_checks import *  # noqa: F403 (the shared checks, run here against DuckDB)
from .dbt_checks import MEASURES, same_measures
from .reference import Reference, differences

BACKEND = "duckdb"


def test_dbt_docs_describe_every_column_as_the_dictionary_does(built: BuiltWarehouse) -> None:
    result = built.dbt("docs", "generate")
    assert result.returncode == 0, result.stdout[-3000:]
    manifest = json.loads((built.project / "target" / "manifest.json").read_text())
    catalog = json.loads((built.project / "target" / "catalog.json").read_text())
    tables = source_tables()
    for name in SOURCE_TABLES:
        source = manifest["sources"][f"source.ordergroove.ordergroove.{name}"]
        assert source["description"] == tables[name].description
        described = {c: v["description"] for c, v in source["columns"].items()}
        assert described == {c.name: c.description for c in tables[name].columns}, name
        model = staging_model(tables[name], live_only=True)
        node = manifest["nodes"][f"model.ordergroove.{model.name}"]
        for column in model.columns:  # staged under its new name, with the same description
            assert node["columns"][column.name]["description"] == column.description
        # and the warehouse has each column the docs describe
        in_warehouse = catalog["sources"][f"source.ordergroove.ordergroove.{name}"]["columns"]
        assert {c.lower() for c in in_warehouse} == set(described), name
    assert dictionary.tables  # the docs come from the dictionary, whichever provides it


def test_source_freshness_passes_right_after_a_sync(built: BuiltWarehouse) -> None:
    result = built.dbt("source", "freshness")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "PASS" in result.stdout


def _copy(built: BuiltWarehouse, tmp_path: Path, **settings: Any) -> tuple[Path, Path]:
    """A copy of the built warehouse, and a project for it (`settings` as ogsync's)."""
    copy = tmp_path / "copy.duckdb"
    shutil.copy(built.url.removeprefix("duckdb:///"), copy)
    project = tmp_path / "project"
    schema = built.merchant.settings.schema
    init_project(project, Settings(destination=file_url(copy), schema=schema, **settings))
    result = build.run_dbt(project, ["deps"], timeout=DBT_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:]
    return copy, project


@pytest.mark.slow  # a second merchant synced and built
def test_a_warehouse_synced_with_less_still_builds(built: BuiltWarehouse, tmp_path: Path) -> None:
    """The default endpoints (no payments, no products), history for subscriptions only, and a
    field the settings exclude (no column): the package builds, with what it can know."""
    copy, project = _copy(built, tmp_path, history="subscriptions")
    with duckdb.connect(str(copy)) as conn:
        conn.execute("ALTER TABLE ordergroove.customers DROP COLUMN email")
        for table in ("payments", "products", *HISTORY_TABLES[1:]):
            conn.execute(f"DROP TABLE ordergroove.{table}")
    variables = "{ordergroove_using_products: false, ordergroove_using_payments: false}"
    result = build.run_dbt(project, ["build", "--vars", variables], timeout=DBT_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(copy), read_only=True) as conn:
        emails = conn.execute(
            "SELECT count(*), count(email) FROM ordergroove_staging.stg_ordergroove__customers"
        ).fetchone()
        (active, priced) = conn.execute(
            "SELECT count(*), count(unit_price) "
            "FROM ordergroove_analytics.ordergroove__subscription_overview WHERE is_active"
        ).fetchone()
    assert emails is not None and emails[0] > 0 and emails[1] == 0  # the column, empty
    assert active > 0 and priced == 0  # no subscription has its own price in the simulator


def _rows(path: Path, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        cursor = conn.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _mrr(path: Path) -> dict[tuple[date, str], dict[str, float]]:
    rows = _rows(path, "SELECT * FROM ordergroove_analytics.ordergroove__monthly_recurring_revenue")
    return {(r["month_start"], r["product_id"]): {m: float(r[m]) for m in MEASURES} for r in rows}


@pytest.mark.slow  # a copy of the warehouse, changed and built again
def test_reactivation_a_product_switch_and_a_chosen_end(
    built: BuiltWarehouse, tmp_path: Path
) -> None:
    """The simulator never reactivates a subscription nor moves one to another product: write
    both into a copy's history, as a sync would have, and check MRR's movements; with the marts
    ending at a moment chosen (`ordergroove_as_of`) before the data does."""
    merchant = built.merchant
    tz = merchant.settings.tz
    versions = merchant.seen_versions()
    reference = built.reference()
    april = datetime(2025, 4, 15, 17, 0, tzinfo=UTC)
    may = datetime(2025, 5, 2, 17, 0, tzinfo=UTC)
    assert reference.as_of > may.astimezone(tz).replace(tzinfo=None)
    # one cancelled before March after a month's end active; one active since before April
    month_end = datetime(2025, 2, 1)
    cancelled = next(
        key
        for key, periods in reference.periods.items()
        if not periods[-1].active
        and periods[-1].start < datetime(2025, 3, 1)
        and any(p.active and p.holds(month_end) for p in periods)
    )
    active = next(
        key
        for key, periods in reference.periods.items()
        if periods[-1].active and periods[-1].start < datetime(2025, 4, 1)
    )
    products = sorted(p["external_product_id"] for p in merchant.truth["products"])
    old_product = versions[active][-1]["product"]
    new_product = next(p for p in products if p != old_product)
    changes = {
        cancelled: (
            may,
            {"live": True, "cancelled": None, "cancel_reason": None, "cancel_reason_code": None},
        ),
        active: (april, {"product": new_product}),
    }
    copy, project = _copy(built, tmp_path)
    with duckdb.connect(str(copy)) as conn:
        for key, (moment, fields) in changes.items():
            record = {**versions[key][-1], **fields, "updated": format_api(moment, tz)}
            versions[key].append(record)
            replaced = ", ".join(f"? AS {name}" for name in fields)
            values = list(fields.values())
            conn.execute(
                "UPDATE ordergroove.subscriptions_history SET _valid_to = ?, _is_current = false "
                "WHERE public_id = ? AND _is_current",
                [moment, key],
            )
            conn.execute(
                "INSERT INTO ordergroove.subscriptions_history SELECT * REPLACE ("
                f"{replaced}, ? AS updated, ? AS _valid_from, NULL AS _valid_to, "
                "true AS _is_current, 'handmade' AS _version_hash) "
                "FROM ordergroove.subscriptions_history WHERE public_id = ? AND _valid_to = ?",
                [*values, moment, moment, key, moment],
            )
            sets = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(
                f"UPDATE ordergroove.subscriptions SET {sets}, updated = ? WHERE public_id = ?",
                [*values, moment, key],
            )
    result = build.run_dbt(
        project, ["build", "--select", "+ordergroove__monthly_recurring_revenue"],
        timeout=DBT_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    expected = Reference(versions, merchant.truth, tz, tz).mrr()
    with duckdb.connect(str(copy), read_only=True) as conn:
        cursor = conn.execute(
            "SELECT * FROM ordergroove_analytics.ordergroove__monthly_recurring_revenue"
        )
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    actual = {(r["month_start"], r["product_id"]): {m: float(r[m]) for m in MEASURES} for r in rows}
    assert not differences(expected, actual, same_measures)[:10]
    april_start, may_start = date(2025, 4, 1), date(2025, 5, 1)
    reactivated = actual[(may_start, versions[cancelled][-1]["product"])]
    assert reactivated["reactivated_subscriptions"] >= 1 and reactivated["reactivated_mrr"] > 0
    assert actual[(april_start, old_product)]["churned_subscriptions"] >= 1
    assert actual[(april_start, new_product)]["new_subscriptions"] >= 1


def readme_queries() -> list[str]:
    """The SQL of the README's analytics section (indented blocks starting with SELECT)."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("### Analytics: the dbt package", 1)[1].split("\n## ", 1)[0]
    queries, current = [], []
    for line in section.splitlines():
        if line.startswith("    SELECT") or (current and line.startswith("    ")):
            current.append(line.strip())
            if line.rstrip().endswith(";"):
                queries.append(" ".join(current))
                current = []
    return queries


def test_the_readme_answers_its_three_questions_with_the_marts(built: BuiltWarehouse) -> None:
    queries = readme_queries()
    assert len(queries) == 3  # recurring revenue, churn, retention
    for sql in queries:
        rows = built.rows(sql.replace("ordergroove_analytics.", "{marts}."))
        assert rows, sql
