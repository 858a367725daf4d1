"""The dbt package built on a simulator-synced DuckDB warehouse (the checks every backend shares
are in dbt_checks.py), and what only needs one backend: the docs, freshness, and a warehouse
missing a column."""

from __future__ import annotations

import json
import shutil

import duckdb

from ogsync import dictionary
from ogsync.analytics import build
from ogsync.analytics.generate import SOURCE_TABLES, source_tables, staging_model
from ogsync.analytics.scaffold import init_project
from ogsync.destinations.duckdb import file_url

from .conftest import DBT_TIMEOUT, BuiltWarehouse
from .dbt_checks import *  # noqa: F403 (the shared checks, run here against DuckDB)

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


def test_a_column_the_settings_exclude_is_staged_empty(built: BuiltWarehouse, tmp_path) -> None:
    """A merchant who excludes a field (ogsync's `[endpoints.*] exclude`) has no such column:
    the staging model still builds, with the column empty."""
    copy = tmp_path / "excluded.duckdb"
    shutil.copy(built.url.removeprefix("duckdb:///"), copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute("ALTER TABLE ordergroove.customers DROP COLUMN email")
    project = tmp_path / "project"
    settings = built.merchant.settings
    init_project(project, type(settings)(destination=file_url(copy), schema=settings.schema))
    result = build.run_dbt(project, ["deps"], timeout=DBT_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:]
    result = build.run_dbt(
        project, ["run", "--select", "stg_ordergroove__customers"], timeout=DBT_TIMEOUT
    )
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(copy), read_only=True) as conn:
        emails = conn.execute(
            "SELECT count(*), count(email) FROM ordergroove_staging.stg_ordergroove__customers"
        ).fetchone()
    assert emails is not None and emails[0] > 0 and emails[1] == 0
