"""`ogsync schema`, run as a user runs it: the dictionary as a table, Markdown or JSON, for one
table or all, following the settings' history and field rules."""

from __future__ import annotations

import json
from pathlib import Path

from ogsync import dictionary
from ogsync.governance import DEFAULT_HISTORY, Governance
from ogsync.testing.cli import one_line_error, run_ogsync

DEFAULT_SETTINGS = Governance(history=frozenset(DEFAULT_HISTORY))  # history = "default"


def schema(*args: str, cwd: Path) -> str:
    result = run_ogsync("schema", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_json_lists_every_table_the_default_settings_write(tmp_path):
    shown = json.loads(schema("--format", "json", cwd=tmp_path))
    assert [t["name"] for t in shown] == [d.name for d in dictionary.tables(DEFAULT_SETTINGS)]
    for table, doc in zip(shown, dictionary.tables(DEFAULT_SETTINGS), strict=True):
        assert table["description"] == doc.description
        assert table["key"] == list(doc.key)
        assert [(c["name"], c["type"], c["description"]) for c in table["columns"]] == [
            (c.name, c.type, c.description) for c in doc.columns
        ]


def test_json_for_one_table_carries_the_codes(tmp_path):
    table = json.loads(schema("subscriptions", "--format", "json", cwd=tmp_path))
    assert table["name"] == "subscriptions" and table["key"] == ["public_id"]
    columns = {c["name"]: c for c in table["columns"]}
    assert columns["prepaid_subscription_context"]["type"] == "json"
    assert columns["every_period"]["codes"] == {"1": "days", "2": "weeks", "3": "months"}
    assert "codes" not in columns["quantity"]
    history = json.loads(schema("subscriptions_history", "--format", "json", cwd=tmp_path))
    assert {c["name"]: c for c in history["columns"]}["every_period"]["codes"]


def test_markdown(tmp_path):
    text = schema("--format", "markdown", cwd=tmp_path)
    assert text.startswith("# ogsync data dictionary\n")
    for doc in dictionary.tables(DEFAULT_SETTINGS):
        assert f"## `{doc.name}`\n" in text
    assert "| `status` | integer | Where the order stands, as a code. Codes (table codes): " in text
    one = schema("orders", "--format", "markdown", cwd=tmp_path)
    assert one.startswith("## `orders`\n") and "Key: `public_id`." in one
    assert "## `items`" not in one
    # Every column is a row of its table.
    assert one.count("\n| `") == len(dictionary.table("orders").columns)


def test_a_table_by_default(tmp_path):
    text = schema("orders", cwd=tmp_path)
    assert text.startswith("orders: An order")
    assert "public_id (key)" in text and "_deleted_reason" in text
    assert "codes_history" not in schema(cwd=tmp_path)


def test_the_settings_rules_and_history_shape_the_dictionary(tmp_path):
    (tmp_path / "ogsync.toml").write_text(
        'history = "orders"\nhash_key_env = "SCHEMA_TEST_KEY"\n'
        '[endpoints.customers]\nexclude = ["phone_number"]\nhash = ["email"]\n'
    )
    names = [t["name"] for t in json.loads(schema("--format", "json", cwd=tmp_path))]
    assert [n for n in names if n.endswith("_history")] == ["orders_history"]
    customers = json.loads(schema("customers", "--format", "json", cwd=tmp_path))
    columns = {c["name"]: c for c in customers["columns"]}
    assert "phone_number" not in columns
    assert "HMAC-SHA-256" in columns["email"]["description"]
    # --config names another file.
    other = tmp_path / "other.toml"
    other.write_text('history = "none"\n')
    names = [t["name"] for t in json.loads(schema("--config", str(other), "--format", "json",
                                                  cwd=tmp_path))]  # fmt: skip
    assert not [n for n in names if n.endswith("_history")]


def test_tables_only_some_warehouses_write_are_listed_where_a_merchant_has_one(tmp_path):
    # Only the names of the keys' variables: `schema` reads no secret.
    (tmp_path / "ogsync.toml").write_text(
        '[merchants.us]\napi_key_env = "UNSET_US_KEY"\n'
        'destination = "postgresql://etl@db/analytics"\n'
        '[merchants.eu]\napi_key_env = "UNSET_EU_KEY"\n'
        '[merchants.uk]\napi_key_env = "UNSET_UK_KEY"\n'
        'destination = "snowflake://ETL@acme-uk/ANALYTICS?warehouse=W&role=R"\n'
    )
    names = [t["name"] for t in json.loads(schema("--format", "json", cwd=tmp_path))]
    assert names[-2:] == ["_ogsync_inbox", "_ogsync_leases"]  # PostgreSQL's, Snowflake's
    names = [t["name"] for t in json.loads(schema("--merchant", "eu", "--format", "json",
                                                  cwd=tmp_path))]  # fmt: skip
    assert "_ogsync_inbox" not in names and "_ogsync_leases" not in names
    leases = json.loads(schema("_ogsync_leases", "--format", "json", cwd=tmp_path))
    assert leases["name"] == "_ogsync_leases"


def test_an_unknown_table_is_one_line_naming_the_tables(tmp_path):
    result = run_ogsync("schema", "nope", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "no table 'nope'" in line and "subscriptions_history" in line
    result = run_ogsync("schema", "--format", "yaml", cwd=tmp_path)
    assert result.returncode == 2
