"""Settings from flags, the environment and `ogsync.toml`, validated once.

Flags override the environment, which overrides the file. The API key is read from the
environment (or from the variable the file names), never from the file itself.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from math import isfinite
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from ogsync.apitime import DEFAULT_API_TIMEZONE, zone
from ogsync.destinations.registry import DEFAULT_URL
from ogsync.governance import FieldRules, Governance, GovernanceError, history_endpoints
from ogsync.plain_http import insecure_reason
from ogsync.schedule import DEFAULT_CRON, DEFAULT_ZONE, validate_cron

ENVIRONMENTS = {
    "production": "https://restapi.ordergroove.com",
    "staging": "https://staging.restapi.ordergroove.com",
}
DEFAULT_DESTINATION = DEFAULT_URL
DEFAULT_SCHEMA = "ordergroove"
CONFIG_FILE = "ogsync.toml"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message is one line, for the user."""


@dataclass(frozen=True)
class Settings:
    api_key: str | None = None
    base_url: str = ENVIRONMENTS["production"]
    destination: str = DEFAULT_DESTINATION
    schema: str = DEFAULT_SCHEMA
    webhook_secret: str | None = None
    api_timezone: str = DEFAULT_API_TIMEZONE
    overlap_minutes: float = 60.0
    timeout_seconds: float = 60.0
    max_attempts: int = 8
    requests_per_minute: int = 5000
    workers: int = 5
    batch_records: int = 5000
    # DuckDB's own memory (its cache and primary-key indexes). When the key indexes of a
    # large merchant outgrow it, the destination raises it rather than fail (see duckdb.py).
    duckdb_memory_limit: str | None = "80MB"
    # When `ogsync schedule` and the Airflow DAGs run: a cron expression read in a zone.
    schedule: str = DEFAULT_CRON
    schedule_timezone: str = DEFAULT_ZONE
    # Plain http sends the key in clear; allowed only to a loopback host unless this is set.
    allow_insecure_http: bool = False
    # How far the API's `Date` may be from the local clock before the run distrusts it, and
    # what it then does: "fail" (exit 1) or "local" (use the local clock instead).
    clock_tolerance_minutes: float = 5.0
    on_clock_skew: str = "fail"
    # Bounds against a broken or hostile API: a page's decompressed body, one record, and
    # the pages of one listing window (a cursor that never ends).
    max_page_bytes: int = 64 * 2**20
    max_record_bytes: int = 4 * 2**20
    max_pages: int = 1_000_000
    # Endpoints whose every version is kept in `<table>_history`: default, all, none, or names.
    history: str = "default"
    # The key of hashed fields (HMAC-SHA-256), from the variable `hash_key_env` names.
    hash_key: str | None = None
    # `[endpoints.<name>]` exclude/hash lists, by endpoint (ogsync.governance).
    endpoint_rules: Mapping[str, FieldRules] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.api_timezone)

    @property
    def overlap(self) -> timedelta:
        return timedelta(minutes=self.overlap_minutes)

    @property
    def governance(self) -> Governance:
        """What is kept of each endpoint, checked for writing (a field to hash has its key)."""
        try:
            return self._rules().require_key()
        except GovernanceError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def rules(self) -> Governance:
        """What is kept of each endpoint, without the hash key: enough to describe the
        warehouse (`ogsync schema`), not to write it."""
        try:
            return self._rules()
        except GovernanceError as exc:
            raise ConfigError(str(exc)) from None

    def _rules(self) -> Governance:
        key = self.hash_key.encode() if self.hash_key else None
        return Governance(history_endpoints(self.history), self.endpoint_rules, key)

    @property
    def webhook_secrets(self) -> list[str]:
        """The verification keys: one, or two separated by a comma while they rotate."""
        return [k.strip() for k in (self.webhook_secret or "").split(",") if k.strip()]

    def require_api_key(self) -> str:
        if not self.api_key:
            raise ConfigError("no API key: set OGSYNC_API_KEY (a key with Bulk Operations)")
        return self.api_key

    def __repr__(self) -> str:  # keep secrets out of any accidental print
        shown = {
            f.name: (
                "***" if f.name in SECRETS and getattr(self, f.name) else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return f"Settings({shown})"


# Settings the environment may set, by variable name.
ENV_VARS = {
    "OGSYNC_API_KEY": "api_key",
    "OGSYNC_BASE_URL": "base_url",
    "OGSYNC_ENV": "env",
    "OGSYNC_DESTINATION": "destination",
    "OGSYNC_SCHEMA": "schema",
    "OGSYNC_WEBHOOK_SECRET": "webhook_secret",
    "OGSYNC_API_TIMEZONE": "api_timezone",
    "OGSYNC_ALLOW_INSECURE_HTTP": "allow_insecure_http",
    "OGSYNC_CLOCK_TOLERANCE_MINUTES": "clock_tolerance_minutes",
    "OGSYNC_ON_CLOCK_SKEW": "on_clock_skew",
    "OGSYNC_HISTORY": "history",
}
SECRETS = {"api_key", "webhook_secret", "hash_key"}
FILE_KEYS = {f.name for f in fields(Settings)} - SECRETS - {"endpoint_rules"} | {
    "env",
    "api_key_env",
    "webhook_secret_env",
    "hash_key_env",
    "merchants",
    "endpoints",
}
# What a `[merchants.NAME]` table may set: who the merchant is and where its data goes.
MERCHANT_KEYS = {
    "api_key_env",
    "webhook_secret_env",
    "base_url",
    "env",
    "schema",
    "destination",
    "api_timezone",
}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    section = data.get("ogsync", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [ogsync] must be a table")
    if section is not data:
        # With an [ogsync] table, settings outside it would be ignored without a word (a
        # [merchants.NAME] table after [ogsync] is outside it): name them instead.
        outside = sorted(set(data) & FILE_KEYS)
        if outside:
            raise ConfigError(
                f"{path}: {', '.join(outside)} outside the [ogsync] table: with one, every "
                "setting goes in it (merchants as [ogsync.merchants.NAME])"
            )
    unknown = set(section) - FILE_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    merchants = section.get("merchants", {})
    if not isinstance(merchants, dict) or not all(isinstance(m, dict) for m in merchants.values()):
        raise ConfigError(f"{path}: merchants must be tables, e.g. [merchants.my-store]")
    for name, merchant in merchants.items():
        unknown = set(merchant) - MERCHANT_KEYS
        if unknown:
            raise ConfigError(
                f"{path}: unknown setting(s) for merchant {name}: {', '.join(sorted(unknown))}"
            )
        if "api_key_env" not in merchant:
            raise ConfigError(f"{path}: merchant {name} needs api_key_env (a variable's name)")
    section = dict(section)
    if "endpoints" in section:
        section["endpoint_rules"] = _endpoint_rules(path, section.pop("endpoints"))
    return section


def _endpoint_rules(path: Path, tables: Any) -> dict[str, FieldRules]:
    """`[endpoints.<name>]` tables: `exclude` and `hash`, lists of field names."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"{path}: endpoints must be tables, e.g. [endpoints.customers]")
    rules = {}
    for name, table in tables.items():
        unknown = set(table) - {"exclude", "hash"}
        if unknown:
            raise ConfigError(
                f"{path}: [endpoints.{name}] knows exclude and hash, "
                f"not {', '.join(sorted(unknown))}"
            )
        lists = {}
        for kind in ("exclude", "hash"):
            value = table.get(kind, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: [endpoints.{name}] {kind} must be a list of names")
            lists[kind] = frozenset(value)
        rules[name] = FieldRules(lists["exclude"], lists["hash"])
    return rules


def _config_path(config_path: Path | None, environ: Mapping[str, str]) -> Path | None:
    path = config_path or (Path(environ["OGSYNC_CONFIG"]) if "OGSYNC_CONFIG" in environ else None)
    if path is None and Path(CONFIG_FILE).is_file():
        path = Path(CONFIG_FILE)
    return path


def merchant_names(
    *, environ: Mapping[str, str] | None = None, config_path: Path | None = None
) -> list[str]:
    """The merchants the settings file lists, in its order (none: a single merchant)."""
    environ = os.environ if environ is None else environ
    path = _config_path(config_path, environ)
    return list(_read_file(path).get("merchants", {})) if path else []


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    merchant: str | None = None,
    secrets: bool = True,
) -> Settings:
    """Merge file, environment and flags (None means not given) and validate the result.

    With `merchant`, that merchant's table of the file is laid over the rest (its key, host
    and schema are its own, whatever the environment says); flags still come last. Without
    `secrets`, the key and webhook secret are left unset: for planning where they are not at
    hand, as in an Airflow DAG processor.
    """
    environ = os.environ if environ is None else environ
    path = _config_path(config_path, environ)
    merged: dict[str, Any] = _read_file(path) if path else {}
    merchants = merged.pop("merchants", {})
    own: dict[str, Any] = {}
    if merchant is not None:
        if merchant not in merchants:
            listed = ", ".join(merchants) or "none"
            raise ConfigError(f"unknown merchant {merchant!r}: the settings file lists {listed}")
        own = dict(merchants[merchant])
    for source in (merged, own):
        for var in ("api_key_env", "webhook_secret_env", "hash_key_env"):
            name = source.pop(var, None)
            if name is not None and secrets:
                if name not in environ:
                    raise ConfigError(f"{path}: {var} names {name}, which is not set")
                source[var.removesuffix("_env")] = environ[name]
    for var, name in ENV_VARS.items():
        if environ.get(var) and (secrets or name not in SECRETS):
            merged[name] = environ[var]
    if "env" in own and "base_url" not in own:
        merged.pop("base_url", None)
    merged.update(own)
    merged.update({k: v for k, v in (flags or {}).items() if v is not None})
    env = merged.pop("env", None)
    if env is not None:
        if env not in ENVIRONMENTS:
            raise ConfigError(f"unknown environment {env!r}: use production or staging")
        if "base_url" not in (flags or {}) or (flags or {}).get("base_url") is None:
            merged["base_url"] = ENVIRONMENTS[env]
    return _validated(merged)


# Each number's sane range: five workers at most (the guide's limit), what a run can use, room
# for the simulator (no 6,000-a-minute limit there) and for tests that move its clock by months.
BOUNDS: dict[str, tuple[float, float]] = {
    "overlap_minutes": (0, 7 * 24 * 60),
    "timeout_seconds": (0.1, 24 * 3600),
    "max_attempts": (1, 100),
    "requests_per_minute": (1, 10_000_000),
    "workers": (1, 5),
    "batch_records": (1, 1_000_000),
    "clock_tolerance_minutes": (0, 10 * 366 * 24 * 60),
    "max_page_bytes": (1024, 2**30),
    "max_record_bytes": (1024, 2**30),
    "max_pages": (1, 100_000_000),
}


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)


def _validated(values: dict[str, Any]) -> Settings:
    kinds = {f.name: f.type for f in fields(Settings)}
    typed: dict[str, Any] = {}
    for name, value in values.items():
        kind = kinds[name]
        if name == "endpoint_rules":
            typed[name] = value
            continue
        try:
            if kind == "int":
                typed[name] = int(value)
            elif kind == "float":
                typed[name] = float(value)
            elif kind == "bool":
                typed[name] = _boolean(value)
            else:
                typed[name] = value if value is None else str(value)
        except (TypeError, ValueError):
            what = "true or false" if kind == "bool" else "a number"
            raise ConfigError(f"{name} must be {what}, not {value!r}") from None
    settings = Settings(**typed)
    url = urlsplit(settings.base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(f"base URL {settings.base_url!r} is not an http(s) URL")
    insecure = insecure_reason(settings.base_url)
    if insecure and not settings.allow_insecure_http:
        raise ConfigError(insecure)
    try:
        zone(settings.api_timezone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for name, (low, high) in BOUNDS.items():
        value = getattr(settings, name)
        if not (isfinite(value) and low <= value <= high):  # NaN fails every comparison
            raise ConfigError(f"{name} = {value!r}: must be from {low:,} to {high:,}")
    if settings.max_record_bytes > settings.max_page_bytes:
        raise ConfigError("max_record_bytes must not be above max_page_bytes")
    if settings.on_clock_skew not in ("fail", "local"):
        raise ConfigError(f"on_clock_skew = {settings.on_clock_skew!r}: use fail or local")
    try:
        validate_cron(settings.schedule)
        zone(settings.schedule_timezone)
    except ValueError as exc:
        raise ConfigError(f"schedule: {exc}") from None
    try:
        settings._rules()  # names and fields; the hash key is checked where it is needed
    except GovernanceError as exc:
        raise ConfigError(str(exc)) from None
    if not settings.schema.replace("_", "").isalnum():
        raise ConfigError(f"schema {settings.schema!r}: use letters, digits and underscores")
    return settings
