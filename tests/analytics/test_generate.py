"""The dbt package's generated half: sources and staging models written from the data
dictionary, and committed as the dictionary gives them now."""

from __future__ import annotations

import shutil

import yaml

from ogsync.analytics import package_dir
from ogsync.analytics.generate import (
    MARKER,
    SOURCE_TABLES,
    _yaml_file,
    differences,
    package_files,
    source_tables,
    staging_model,
    write_package,
)
from ogsync.dictionary import CODES


def test_the_committed_package_is_what_the_dictionary_gives():
    stale = differences(package_dir())
    assert not stale, f"run `make dbt-package`: {stale}"


def test_the_sources_describe_every_column_as_the_dictionary_does():
    text = package_files()["models/ordergroove__sources.yml"]
    (source,) = yaml.safe_load(text)["sources"]
    assert source["schema"] == "{{ var('ordergroove_schema', 'ordergroove') }}"
    tables = source_tables()
    assert [t["name"] for t in source["tables"]] == list(SOURCE_TABLES)
    for entry in source["tables"]:
        doc = tables[entry["name"]]
        assert entry["description"] == doc.description
        assert [(c["name"], c["description"]) for c in entry["columns"]] == [
            (c.name, c.description) for c in doc.columns
        ]
        if any(c.name == "_synced_at" for c in doc.columns):
            assert entry["config"]["loaded_at_field"] == "_synced_at"
    orders = next(t for t in source["tables"] if t["name"] == "orders")
    status = next(c for c in orders["columns"] if c["name"] == "status")
    (test,) = status["data_tests"]
    documented = sorted(int(c.code) for c in CODES if (c.endpoint, c.field) == ("orders", "status"))
    assert sorted(test["accepted_values"]["arguments"]["values"]) == documented
    items = next(t for t in source["tables"] if t["name"] == "items")
    order = next(c for c in items["columns"] if c["name"] == "order_id")
    assert {"relationships": {"arguments": {"to": "source('ordergroove', 'orders')",
            "field": "public_id"}}} in order["data_tests"]  # fmt: skip


def test_staging_models_name_keys_and_references_for_what_they_hold():
    tables = source_tables()
    subscriptions = staging_model(tables["subscriptions"], live_only=True)
    names = [c.name for c in subscriptions.columns]
    assert subscriptions.key == ("subscription_id",)
    assert {"customer_id", "product_id", "created_at", "cancelled_at"} <= set(names)
    assert [d.name for d in subscriptions.decoded] == [
        "every_period_label",
        "raw_subscription_type_label",
    ]
    assert subscriptions.live_only
    history = staging_model(tables["subscriptions_history"], live_only=True)
    assert history.key == ("subscription_id", "version_hash")
    assert not history.live_only
    assert {"valid_from", "valid_to", "is_current", "closed_reason"} <= {
        c.name for c in history.columns
    }
    orders = staging_model(tables["orders"], live_only=False)
    assert orders.name == "int_ordergroove__orders_with_deleted"
    assert {"deleted_at", "deleted_reason"} <= {c.name for c in orders.columns}
    sql = package_files()["models/staging/stg_ordergroove__orders.sql"]
    assert "where _deleted_at is null" in sql
    assert "status_codes.label as status_label" in sql
    for table in tables.values():  # no two columns of a model share a name
        for live_only in (True, False):
            model = staging_model(table, live_only=live_only)
            names = [c.name for c in model.columns] + [d.name for d in model.decoded]
            assert len(names) == len(set(names)), table.name


def test_regenerating_replaces_generated_files_and_keeps_handwritten_ones(tmp_path):
    root = tmp_path / "package"
    shutil.copytree(package_dir(), root, ignore=shutil.ignore_patterns("target", "logs"))
    stale = root / "models" / "staging" / "stg_ordergroove__gone.sql"
    stale.write_text(f"-- {MARKER}: a table the dictionary no longer has\n")
    mine = root / "models" / "marts" / "my_model.sql"
    mine.write_text("select 1 as one\n")
    (root / "models" / "staging" / "stg_ordergroove__orders.sql").write_text("-- edited\n")
    changed = write_package(root)
    assert sorted(changed) == [
        "models/staging/stg_ordergroove__gone.sql",
        "models/staging/stg_ordergroove__orders.sql",
    ]
    assert not stale.exists() and mine.read_text() == "select 1 as one\n"
    assert differences(root) == []


def test_yaml_is_written_so_any_text_reads_back_as_it_was():
    tricky = {
        "version": 2,
        "models": [
            {
                "name": "x",
                "description": "a: b # no comment, 'quotes' \"too\", - dash, é, {{ doc('x') }}",
                "columns": [{"name": "yes", "data_tests": ["unique", "not_null"]}],
                "config": {"enabled": "{{ var('x', true) }}", "n": 2, "flag": False},
            }
        ],
    }
    assert yaml.safe_load(_yaml_file(tricky)) == tricky
