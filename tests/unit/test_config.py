"""Settings: file, environment and flags merged in that order, merchants laid over, checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogsync.config import ConfigError, load_settings, merchant_names
from ogsync.endpoints import select
from ogsync.sync import SyncOptions

FILE = """
destination = "duckdb:///shared.duckdb"
schedule = "15 12 * * *"
schedule_timezone = "America/Denver"
api_key_env = "TOP_KEY"

[merchants.east]
api_key_env = "EAST_KEY"
schema = "east"
env = "staging"

[merchants.west]
api_key_env = "WEST_KEY"
destination = "postgresql://ogsync@db.example:5432/wh"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ogsync.toml"
    path.write_text(FILE)
    return path


def test_flags_beat_the_environment_which_beats_the_file(config):
    environ = {"TOP_KEY": "file-key", "OGSYNC_SCHEMA": "from_env"}
    settings = load_settings({"schema": None, "workers": 3}, environ=environ, config_path=config)
    assert (settings.api_key, settings.schema, settings.workers) == ("file-key", "from_env", 3)
    flagged = load_settings({"schema": "from_flag"}, environ=environ, config_path=config)
    assert flagged.schema == "from_flag"
    assert merchant_names(environ={}, config_path=config) == ["east", "west"]


def test_a_merchant_has_its_own_key_host_schema_and_destination(config):
    environ = {"TOP_KEY": "t", "EAST_KEY": "e", "WEST_KEY": "w", "OGSYNC_API_KEY": "ignored"}
    east = load_settings(environ=environ, config_path=config, merchant="east")
    assert (east.api_key, east.schema, east.base_url) == (
        "e", "east", "https://staging.restapi.ordergroove.com"
    )  # fmt: skip
    assert east.destination == "duckdb:///shared.duckdb"
    west = load_settings(environ=environ, config_path=config, merchant="west")
    assert (west.api_key, west.destination) == ("w", "postgresql://ogsync@db.example:5432/wh")
    assert (west.schedule, west.schedule_timezone) == ("15 12 * * *", "America/Denver")


def test_a_named_key_variable_that_is_not_set_is_an_error_unless_secrets_are_not_wanted(config):
    with pytest.raises(ConfigError, match="api_key_env names EAST_KEY, which is not set"):
        load_settings(environ={"TOP_KEY": "t"}, config_path=config, merchant="east")
    planned = load_settings(
        environ={"OGSYNC_API_KEY": "k", "OGSYNC_WEBHOOK_SECRET": "s"},
        config_path=config,
        merchant="east",
        secrets=False,
    )
    assert (planned.api_key, planned.webhook_secret, planned.schema) == (None, None, "east")
    key = "sk-live-9f3e2a"
    assert key not in repr(load_settings(environ={"OGSYNC_API_KEY": key}))


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('schedule = "every day"', "schedule: bad cron expression 'every day'"),
        ('schedule_timezone = "Mars/Olympus"', "schedule: "),
        ("workers = 0", "workers = 0: must be from 1 to 5"),
        ("wrokers = 2", "unknown setting(s) wrokers"),
        ('schema = "a-b"', "schema 'a-b'"),
    ],
)
def test_bad_settings_are_one_clear_line(tmp_path, line, needle):
    path = tmp_path / "ogsync.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, config_path=path)
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_a_run_holding_only_its_endpoints_cannot_reconcile():
    with pytest.raises(ValueError, match="reconcile needs the whole warehouse"):
        SyncOptions(select("orders"), reconcile=True, exclusive=False)
    assert SyncOptions(select("orders"), exclusive=False).exclusive is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("overlap_minutes", "nan"),
        ("overlap_minutes", "inf"),
        ("overlap_minutes", -1),
        ("overlap_minutes", 10**9),
        ("timeout_seconds", 0),
        ("timeout_seconds", "-inf"),
        ("max_attempts", 0),
        ("requests_per_minute", 10**8),
        ("workers", 6),
        ("workers", 0),
        ("batch_records", 10**9),
        ("clock_tolerance_minutes", -5),
        ("max_page_bytes", 10),
        ("max_pages", 0),
        ("on_clock_skew", "ignore"),
        ("allow_insecure_http", "maybe"),
    ],
)
def test_every_setting_has_bounds(name, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, environ={})
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_the_bounds_hold_in_the_file_too(tmp_path):
    path = tmp_path / "ogsync.toml"
    path.write_text("workers = 50\n")
    with pytest.raises(ConfigError, match="workers"):
        load_settings(environ={}, config_path=path)
    path.write_text("max_record_bytes = 2048\nmax_page_bytes = 1024\n")
    with pytest.raises(ConfigError, match="max_record_bytes"):
        load_settings(environ={}, config_path=path)


def test_windows_and_endpoint_lists_are_checked():
    import datetime as dt

    from ogsync.sync import Backfill

    day = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="after --until"):
        SyncOptions(endpoints=select(None), since=day, until=day - dt.timedelta(seconds=1))
    with pytest.raises(ValueError, match="before --start"):
        Backfill(start=day, end=day - dt.timedelta(days=1))
    for empty in ("", ",", " , "):
        with pytest.raises(ValueError, match="no endpoints"):
            select(empty)


GOVERNED = """hash_key_env = "SHOP_HASH_KEY"
history = "orders,customers"
[endpoints.customers]
exclude = ["phone_number"]
hash = ["email"]
"""


def test_field_rules_and_history_come_from_the_file_and_the_key_from_the_environment(tmp_path):
    path = tmp_path / "ogsync.toml"
    path.write_text(GOVERNED)
    settings = load_settings(environ={"SHOP_HASH_KEY": "s3cr3t-hash-key"}, config_path=path)
    governance = settings.governance
    assert governance.history == {"orders", "customers"}
    customers = governance.endpoint(select("customers")[0])
    assert "phone_number" not in customers.field_names and customers.history
    record = {"merchant_user_id": "u1", "email": "a@b.c", "phone_number": "555", "first_name": None}
    governed = governance.record("customers", record)
    assert governed["merchant_user_id"] == "u1" and "phone_number" not in governed
    assert governed["email"] == governance.hashed("a@b.c") != "a@b.c"
    assert len(governed["email"]) == 64 and governed["first_name"] is None
    assert "s3cr3t-hash-key" not in repr(settings)  # the key is a secret
    with pytest.raises(ConfigError, match="SHOP_HASH_KEY, which is not set"):
        load_settings(environ={}, config_path=path)
    planning = load_settings(environ={}, config_path=path, secrets=False)  # status, Airflow
    with pytest.raises(ConfigError, match="no hash key is set"):
        planning.governance  # noqa: B018 (a writer asks for it)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('[endpoints.customers]\nhash = ["email"]\n', "no hash key is set"),
        ('[endpoints.clients]\nexclude = ["email"]\n', "[endpoints.clients]: unknown endpoint"),
        ('[endpoints.customers]\nexclude = ["emial"]\n', "customers has no field 'emial'"),
        ('[endpoints.orders]\nexclude = ["updated"]\n', "the record's key or update time"),
        ('[endpoints.customers]\nhash = "email"\n', "must be a list of names"),
        ('[endpoints.customers]\nmask = ["email"]\n', "knows exclude and hash"),
        ('history = "orders,invoices"\n', "unknown endpoint(s) invoices"),
    ],
)
def test_bad_field_rules_are_one_clear_line(tmp_path, table, needle):
    path = tmp_path / "ogsync.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, config_path=path).governance  # noqa: B018
    assert needle in str(raised.value) and "\n" not in str(raised.value)


def test_history_setting_words():
    from ogsync.governance import DEFAULT_HISTORY, history_endpoints

    assert history_endpoints("default") == set(DEFAULT_HISTORY)
    assert history_endpoints("none") == set() and len(history_endpoints("all")) == 9
