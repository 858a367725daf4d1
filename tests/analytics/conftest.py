"""The dbt package built for real: one simulated merchant synced per backend (DuckDB,
PostgreSQL, and Snowflake's emulator), a project scaffolded by `ogsync dbt init`, `dbt build`
run once, and the tests of that backend's module share it all."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg.rows import dict_row

from ogsync.analytics import build
from ogsync.analytics.scaffold import POSTGRES_PASSWORD_ENV, init_project
from ogsync.destinations.duckdb import file_url
from ogsync.testing.snowflake import emulated_snowflake

from .merchant import START, SyncedMerchant, sync_merchant
from .reference import Reference

# Generous: two cores shared by several test runs; a build takes tens of seconds.
DBT_TIMEOUT = 600
# The emulator takes any password; this one must never be written in the project.
SNOWFLAKE_PASSWORD = "emulator-Passw0rd-dbt"


@dataclass
class BuiltWarehouse:
    """A synced warehouse with the dbt package built on it."""

    backend: str
    url: str
    schema: str
    project: Path
    merchant: SyncedMerchant
    build: CompletedProcess[str]
    env: dict[str, str] = field(default_factory=dict)

    def dbt(self, *args: str) -> CompletedProcess[str]:
        return build.run_dbt(self.project, args, env=self.env, timeout=DBT_TIMEOUT)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts; `{marts}` and `{staging}` name the package's schemas."""
        sql = sql.format(
            marts=f'"{self.schema}_analytics"',
            staging=f'"{self.schema}_staging"',
            source=f'"{self.schema}"',
        )
        if self.backend == "duckdb":
            with duckdb.connect(self.url.removeprefix("duckdb:///"), read_only=True) as conn:
                cursor = conn.execute(sql, list(params))
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        if self.backend == "snowflake":
            return self._snowflake_rows(sql, params)
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(sql.replace("?", "%s"), list(params)).fetchall()  # type: ignore[arg-type]

    def _snowflake_rows(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Through ogsync's own session settings; names in lower case, as on the others."""
        from ogsync.destinations.snowflake_connect import connect, credentials, parse_url

        conn = connect(parse_url(self.url), credentials(self.env), self.url)
        try:
            cursor = conn.cursor()
            cursor.execute(sql, list(params) or None)
            names = [d[0].lower() for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            conn.close()

    def reference(self) -> Reference:
        settings = self.merchant.settings
        return Reference(
            self.merchant.seen_versions(), self.merchant.truth, settings.tz, settings.tz
        )

    def run_results(self) -> list[dict[str, Any]]:
        return json.loads((self.project / "target" / "run_results.json").read_text())["results"]


@pytest.fixture(scope="module")
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BuiltWarehouse]:
    """The warehouse of the module's backend (`BACKEND` in the test module), built."""
    backend = request.module.BACKEND
    folder = tmp_path_factory.mktemp(f"dbt-{backend}")
    env: dict[str, str] = {}
    size: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if backend == "duckdb":
            url, schema = file_url(folder / "warehouse.duckdb"), "ordergroove"
        elif backend == "snowflake":
            from ogsync.destinations.snowflake_connect import PASSWORD_ENV

            # Each test process its own emulator, on a port of its own.
            emulator = stack.enter_context(emulated_snowflake())
            url, schema = emulator.url("OGSYNC", staging="transient"), "og_dbt"
            env[PASSWORD_ENV] = SNOWFLAKE_PASSWORD  # ogsync's sync and dbt's profile read it
            stack.enter_context(pytest.MonkeyPatch.context()).setenv(
                PASSWORD_ENV, SNOWFLAKE_PASSWORD
            )
            # Every statement is a round trip to the emulator: a smaller merchant, fewer syncs.
            size = {"records": 600, "rounds": 2}
        else:
            server = request.getfixturevalue("postgres_server")
            url, schema = server.url, "og_dbt"
            # The profile reads the password from the environment (never written in it).
            env[POSTGRES_PASSWORD_ENV] = server.password
        merchant = sync_merchant(url, schema, folder, start=START, **size)
        project = folder / "project"
        init_project(project, merchant.settings)
        result = build.build_package(project, env=env, timeout=DBT_TIMEOUT)
        yield BuiltWarehouse(backend, url, schema, project, merchant, result, env)
