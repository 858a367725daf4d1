"""`ogsync dbt init DIR`: a dbt project on the warehouse ogsync syncs, using ogsync's package.

The profile points at the settings' destination and schema. No secret is ever written: the
profile reads each one from an environment variable (dbt's `env_var`), the ones ogsync's own
warehouse connections read where they have one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from ogsync.analytics import package_dir
from ogsync.config import ConfigError, Settings
from ogsync.destinations.errors import DestinationError
from ogsync.destinations.registry import kind_of
from ogsync.extras import is_missing_dependency, missing_extra_message
from ogsync.governance import DEFAULT_HISTORY, history_endpoints

PROFILE_NAME = "ogsync"
TARGET_NAME = "warehouse"
PROJECT_NAME = "ogsync_analytics"
# libpq's own variable: ogsync's PostgreSQL connections read it too when the URL has no
# password, so one `export` serves both.
POSTGRES_PASSWORD_ENV = "PGPASSWORD"
# Each warehouse kind's dbt adapter: the `dbt` extra installs the first two.
ADAPTERS = {"DuckDB": "dbt-duckdb", "PostgreSQL": "dbt-postgres", "Snowflake": "dbt-snowflake"}


class ProjectExists(ConfigError):
    """The folder already holds a dbt project (init never overwrites one unasked)."""


@dataclass(frozen=True)
class Scaffold:
    directory: Path
    files: tuple[Path, ...]
    adapter: str  # the dbt adapter the profile needs
    # Variables the profile reads, with what each must hold: export them before running dbt.
    environment: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _env(name: str, default: str | None = None) -> str:
    """A profile value read from the environment when dbt runs."""
    if default is None:
        return "{{ env_var('" + name + "') }}"
    return "{{ env_var('" + name + "', '" + default + "') }}"


def _duckdb_target(url: str, schema: str) -> dict[str, object]:
    from ogsync.destinations.duckdb import path_from_url

    path = path_from_url(url)
    if path == ":memory:":
        raise ConfigError("a DuckDB warehouse in memory can't be reached by dbt: name a file")
    # dbt runs in the project's folder: a relative path means the one ogsync meant, from here.
    return {
        "type": "duckdb",
        "path": str(Path(path).expanduser().resolve()),
        "schema": schema,
        "threads": 4,
    }


def _postgres_target(url: str, schema: str) -> tuple[dict[str, object], dict[str, str]]:
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    host = parts.hostname or options.get("host") or "localhost"
    target: dict[str, object] = {
        "type": "postgres",
        "host": unquote(host),
        "port": parts.port or int(options.get("port", 5432)),
        "user": unquote(parts.username or options.get("user") or os.environ.get("USER", "")),
        "password": _env(POSTGRES_PASSWORD_ENV, ""),
        "dbname": unquote(parts.path.lstrip("/")) or options.get("dbname") or "postgres",
        "schema": schema,
        "threads": 4,
    }
    if "sslmode" in options:
        target["sslmode"] = options["sslmode"]
    environment = {}
    if parts.password is not None or "password" in options:
        environment[POSTGRES_PASSWORD_ENV] = "the password in the destination URL"
    return target, environment


def _snowflake_target(url: str, schema: str) -> tuple[dict[str, object], dict[str, str]]:
    """The profile reads the secret from the variables ogsync's Snowflake destination reads
    (its URL parser and names, so the two never drift apart)."""
    try:
        from ogsync.destinations import snowflake_connect as sf
    except ModuleNotFoundError as exc:  # its driver, the snowflake extra, is not installed
        if not is_missing_dependency(exc):
            raise
        raise ConfigError(missing_extra_message("a Snowflake warehouse", "snowflake")) from None
    try:
        where = sf.parse_url(url)
    except DestinationError as exc:
        raise ConfigError(str(exc)) from None
    target: dict[str, object] = {
        "type": "snowflake",
        "account": where.account,
        "user": where.user,
        "database": where.database,
        "schema": schema,
        "threads": 4,
    }
    for name in ("warehouse", "role", "host", "port", "protocol"):
        if getattr(where, name) is not None:
            target[name] = getattr(where, name)
    # The same secret as ogsync's: a key file when one is set, else a password.
    if os.environ.get(sf.KEY_FILE_ENV):
        target["private_key_path"] = _env(sf.KEY_FILE_ENV)
        target["private_key_passphrase"] = _env(sf.PASSPHRASE_ENV, "")
        environment = {
            sf.KEY_FILE_ENV: "the PEM file of the user's private key",
            sf.PASSPHRASE_ENV: "its passphrase, if it is encrypted",
        }
    else:
        target["password"] = _env(sf.PASSWORD_ENV)
        environment = {sf.PASSWORD_ENV: "the Snowflake user's password"}
    return target, environment


def profile_target(settings: Settings) -> tuple[str, dict[str, object], dict[str, str]]:
    """(adapter, the profile's target, variables it reads) for the settings' warehouse."""
    url, schema = settings.destination, settings.schema
    scheme = url.split(":", 1)[0].lower()
    if scheme == "snowflake":
        return ADAPTERS["Snowflake"], *_snowflake_target(url, schema)
    try:
        kind = kind_of(url).name
    except DestinationError as exc:
        raise ConfigError(str(exc)) from None
    if kind == "DuckDB":
        return ADAPTERS[kind], _duckdb_target(url, schema), {}
    if kind == "PostgreSQL":
        return ADAPTERS[kind], *_postgres_target(url, schema)
    raise ConfigError(f"ogsync dbt init does not know the dbt adapter for {kind} warehouses")


def _yaml(value: object, indent: int = 0) -> list[str]:
    """Mappings of mappings, lists and scalars; strings JSON-quoted (valid YAML)."""
    pad = " " * indent
    lines = []
    assert isinstance(value, dict)
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines += _yaml(item, indent + 2)
        else:
            lines.append(f"{pad}{key}: {json.dumps(item)}")
    return lines


def project_files(
    settings: Settings, package: Path | None = None
) -> tuple[dict[str, str], str, dict[str, str], list[str]]:
    """The project's files (name -> text), the adapter, the environment it reads, warnings."""
    adapter, target, environment = profile_target(settings)
    package = package or package_dir()
    history = history_endpoints(settings.history)
    kept = [name for name in DEFAULT_HISTORY if name in history]
    warnings = []
    if "subscriptions" not in history:
        warnings.append(
            "the history setting leaves out subscriptions: the package's subscription marts "
            'need subscriptions_history (history = "default" keeps it)'
        )
    variables = {
        "ordergroove_schema": settings.schema,
        "ordergroove_timezone": settings.api_timezone,
        "ordergroove_history": kept,
    }
    project = "\n".join(
        [
            "# A dbt project on the warehouse ogsync keeps in step with Ordergroove, written by",
            "# `ogsync dbt init`. The models come from ogsync's package (packages.yml): build",
            "# them with `dbt deps && dbt build`; add your own under models/.",
            f"name: {PROJECT_NAME}",
            'version: "1.0.0"',
            "config-version: 2",
            f"profile: {PROFILE_NAME}",
            'model-paths: ["models"]',
            'clean-targets: ["target", "dbt_packages"]',
            "",
            "vars:",
            "  # Where ogsync writes (its schema setting), and the zone days and months are",
            "  # counted in (the API's, by default the merchant's own).",
            *_yaml({k: v for k, v in variables.items() if k != "ordergroove_history"}, 2),
            "  # The tables the warehouse has: history tables as the `history` setting names",
            "  # them; payments and products only when ogsync syncs them (`--endpoints all`).",
            f"  ordergroove_history: {json.dumps(kept)}",
            "  ordergroove_using_payments: true",
            "  ordergroove_using_products: true",
            "",
        ]
    )
    packages = "\n".join(
        [
            "packages:",
            "  # ogsync's dbt package, from this installation of ogsync. Or from git:",
            '  #   - git: "https://github.com/ogsync/ogsync.git"',
            '  #     subdirectory: "dbt"',
            '  #     revision: "main"',
            f"  - local: {json.dumps(str(package))}",
            "",
        ]
    )
    secrets = (
        "\n".join(f"#   {name}: {why}" for name, why in environment.items())
        if environment
        else "#   (none: the warehouse is a local file)"
    )
    profile_doc = {PROFILE_NAME: {"target": TARGET_NAME, "outputs": {TARGET_NAME: target}}}
    profiles = "\n".join(
        [
            f"# The warehouse ogsync syncs ({settings.schema} in {_masked(settings)}), for dbt.",
            f"# Needs the {adapter} adapter. Secrets are never written here: dbt reads them",
            "# from the environment when it runs:",
            secrets,
            *_yaml(profile_doc),
            "",
        ]
    )
    readme = "\n".join(
        [
            f"# {PROJECT_NAME}",
            "",
            "The analytics models of ogsync's dbt package, on the warehouse ogsync syncs",
            f"(schema `{settings.schema}`). From this folder:",
            "",
            *(f"    export {name}=...    # {why}" for name, why in environment.items()),
            "    dbt deps                  # links ogsync's package (no download)",
            "    dbt build                 # the models and their tests",
            "    dbt docs generate && dbt docs serve",
            "",
            f"The staging models land in `{settings.schema}_staging`, the marts in",
            f"`{settings.schema}_analytics`. Run dbt from this folder (its profiles.yml is",
            "here), or point DBT_PROFILES_DIR at it.",
            "",
        ]
    )
    files = {
        "dbt_project.yml": project,
        "packages.yml": packages,
        "profiles.yml": profiles,
        "README.md": readme,
        ".gitignore": "target/\ndbt_packages/\nlogs/\n",
        "models/.gitkeep": "",
    }
    return files, adapter, environment, warnings


def _masked(settings: Settings) -> str:
    from ogsync.destinations.registry import masked

    return masked(settings.destination)


def init_project(
    directory: Path, settings: Settings, *, package: Path | None = None, force: bool = False
) -> Scaffold:
    """Write a dbt project into `directory` (created if need be). Refuses to overwrite an
    existing dbt project's files unless `force`."""
    files, adapter, environment, warnings = project_files(settings, package)
    existing = [name for name in files if (directory / name).exists() and name != "models/.gitkeep"]
    if existing and not force:
        raise ProjectExists(
            f"{directory} already has {', '.join(existing)}: choose another folder, or "
            "--force to overwrite them"
        )
    written = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return Scaffold(directory, tuple(written), adapter, environment, tuple(warnings))
