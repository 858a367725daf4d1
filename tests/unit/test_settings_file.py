"""`ogsync init`'s settings file, the code and the README agree: every setting the file shows is
one the code reads, at the default the code has, and every setting the code reads is shown."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest

from ogsync.config import (
    ENV_VARS,
    FILE_KEYS,
    MERCHANT_KEYS,
    ConfigError,
    Settings,
    load_settings,
)
from ogsync.settings_file import TEMPLATE
from ogsync.testing.cli import run_ogsync

SRC = Path(__file__).resolve().parents[2] / "src" / "ogsync"
# `# key = value` lines, each a setting shown at its default (or, for merchants, an example).
SHOWN = re.compile(r"^# ?([a-z_]+) = (.+?)(?:\s+#.*)?$")
HEADER = re.compile(r"^# ?\[(merchants|endpoints)\.[\w-]+\]$")
# What an `[endpoints.NAME]` table may set (ogsync.config reads these two).
ENDPOINT_KEYS = {"exclude", "hash"}


def shown_tables() -> dict[str, dict[str, object]]:
    """The settings the template shows: top-level ones under "", then one example table each
    of `[endpoints.NAME]` and `[merchants.NAME]`."""
    tables: dict[str, dict[str, object]] = {"": {}, "endpoints": {}, "merchants": {}}
    into = tables[""]
    for line in TEMPLATE.splitlines():
        header = HEADER.match(line)
        if header:
            into = tables[header.group(1)]
            continue
        match = SHOWN.match(line)
        if match:
            name, value = match.groups()
            assert name not in into, f"{name} shown twice"
            into[name] = tomllib.loads(f"v = {value}")["v"]
    return tables


def shown_settings() -> tuple[dict[str, object], dict[str, object]]:
    """(top-level settings, one merchant's settings) as the template shows them."""
    tables = shown_tables()
    return tables[""], tables["merchants"]


# Environment variables the code reads that are not settings of a sync: the simulator's own.
NOT_SETTINGS = {"OGSYNC_SIM_API_KEY"}


def env_vars_in_code() -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        if "testing" in path.parts:
            continue
        found |= set(re.findall(r"\bOGSYNC_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    return found - NOT_SETTINGS


def test_every_setting_the_file_shows_is_read_and_every_setting_read_is_shown():
    tables = shown_tables()
    assert set(tables[""]) | {"merchants", "endpoints"} == FILE_KEYS
    assert set(tables["merchants"]) == MERCHANT_KEYS
    assert set(tables["endpoints"]) == ENDPOINT_KEYS


def test_every_environment_variable_the_code_reads_is_in_the_file():
    variables = env_vars_in_code()
    assert set(ENV_VARS) <= variables  # the scan sees what the code reads
    missing = {v for v in variables if v not in TEMPLATE}
    assert not missing, f"not in ogsync init's file: {sorted(missing)}"


def test_the_defaults_shown_are_the_code_s_defaults():
    top, _ = shown_settings()
    defaults = {f.name: f.default for f in fields(Settings)}
    for name, value in top.items():
        if name in defaults:
            assert value == defaults[name], name
    assert top["env"] == "production"
    assert top["api_key_env"] == "OGSYNC_API_KEY"
    assert top["webhook_secret_env"] == "OGSYNC_WEBHOOK_SECRET"
    assert top["hash_key_env"] == "OGSYNC_HASH_KEY"  # an example: no key is read by default


def test_the_file_as_written_and_with_every_line_uncommented_gives_the_defaults(tmp_path):
    written = tmp_path / "ogsync.toml"
    written.write_text(TEMPLATE)
    environ = {"OGSYNC_API_KEY": "k", "OGSYNC_WEBHOOK_SECRET": "w"}
    as_written = load_settings(environ=environ, config_path=written)
    assert as_written == Settings(api_key="k", webhook_secret="w")

    top, merchant = shown_settings()
    uncommented = tmp_path / "uncommented.toml"
    lines = [f"{name} = {tomllib_value(value)}" for name, value in top.items()]
    lines += ["[merchants.brand-us]"]
    lines += [f"{name} = {tomllib_value(value)}" for name, value in merchant.items()]
    uncommented.write_text("\n".join(lines) + "\n")
    environ |= {"OG_KEY_US": "us", "OG_WEBHOOK_US": "wus", "OGSYNC_HASH_KEY": "h"}
    assert load_settings(environ=environ, config_path=uncommented) == replace(
        as_written, hash_key="h"
    )
    chosen = load_settings(environ=environ, config_path=uncommented, merchant="brand-us")
    assert (chosen.api_key, chosen.webhook_secret, chosen.schema) == ("us", "wus", "og_us")

    # The [endpoints.NAME] example is a table the code accepts.
    rules = shown_tables()["endpoints"]
    example = tmp_path / "endpoints.toml"
    example.write_text(
        'hash_key_env = "OGSYNC_HASH_KEY"\n[endpoints.customers]\n'
        + "".join(f"{name} = {tomllib_value(value)}\n" for name, value in rules.items())
    )
    customers = load_settings(environ=environ, config_path=example).endpoint_rules["customers"]
    assert (customers.exclude, customers.hash) == (
        frozenset(rules["exclude"]),
        frozenset(rules["hash"]),
    )


def tomllib_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(tomllib_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def test_init_writes_the_file_and_keeps_an_existing_one(tmp_path):
    result = run_ogsync("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ogsync.toml").read_text() == TEMPLATE
    assert "OGSYNC_API_KEY" in result.stdout  # says where the key goes
    (tmp_path / "ogsync.toml").write_text("workers = 2\n")
    again = run_ogsync("init", cwd=tmp_path)
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert (tmp_path / "ogsync.toml").read_text() == "workers = 2\n"
    assert run_ogsync("init", "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "ogsync.toml").read_text() == TEMPLATE


def test_settings_outside_an_ogsync_table_are_named_not_ignored(tmp_path):
    path = tmp_path / "ogsync.toml"
    path.write_text('[ogsync]\nschema = "shop"\n\n[merchants.us]\napi_key_env = "K"\n')
    with pytest.raises(ConfigError, match="merchants outside the \\[ogsync\\] table"):
        load_settings(environ={}, config_path=path)
    path.write_text('[ogsync]\nschema = "shop"\n\n[ogsync.merchants.us]\napi_key_env = "K"\n')
    assert load_settings(environ={"K": "key"}, config_path=path, merchant="us").api_key == "key"
    path.write_text('[ogsync]\nschema = "shop"\n\n[tool.other]\nx = 1\n')  # another tool's
    assert load_settings(environ={}, config_path=path).schema == "shop"
