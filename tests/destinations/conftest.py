"""One warehouse contract, three backends: a fresh DuckDB file, a fresh PostgreSQL schema, or
a fresh schema in Snowflake (the real connector against the emulator: snowflake_support.py).

`wh` (parametrised over both backends) gives a factory `wh.open_dest()` for a connected
destination and a backend-neutral reader `wh.rows(sql, params)` returning dicts. SQL given to
the reader uses `?` placeholders and `{s}` for the quoted schema. JSON columns come back as
text on both backends, so tests compare them with `orjson.loads`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

from ogsync.destinations import open_destination
from ogsync.destinations.base import Destination, quote

BACKENDS = ("duckdb", "postgres", "snowflake")


@dataclass
class Warehouse:
    """A warehouse for one test: where it is, how to open it, and how to read it."""

    backend: str
    url: str
    schema: str
    opened: list[Destination] = field(default_factory=list)

    # -- writing -------------------------------------------------------------------------

    def open_dest(self) -> Destination:
        """A connected destination; any this warehouse opened before is closed first.

        One writer at a time, as in production: DuckDB locks its file and PostgreSQL
        takes an advisory lock per schema.
        """
        self.close_writers()
        dest = open_destination(self.url, self.schema)
        self.opened.append(dest)
        return dest

    def close_writers(self) -> None:
        while self.opened:
            with contextlib.suppress(Exception):
                self.opened.pop().close()

    # -- reading -------------------------------------------------------------------------

    @property
    def s(self) -> str:
        return quote(self.schema)

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts. For DuckDB the writers are closed first (its file is locked)."""
        query = query.replace("{s}", self.s)
        if self.backend == "duckdb":
            self.close_writers()
            with duckdb.connect(self.path, read_only=True) as conn:
                conn.execute("SET TimeZone = 'UTC'")
                cursor = conn.execute(query, list(params))
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        # A new connection each time: tests terminate backends on purpose.
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            for json_type in ("json", "jsonb"):
                conn.adapters.register_loader(json_type, TextLoader)
            cursor = conn.execute(query.replace("?", "%s"), list(params))  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params: Sequence[Any] = ()) -> Any:
        (row,) = self.rows(query, params)
        (only,) = row.values()
        return only

    def table(self, name: str, where: str = "TRUE") -> dict[str, dict[str, Any]]:
        """An endpoint table's (or its `_current` or `_live` view's) rows by their key."""
        from ogsync.endpoints import BY_NAME

        key = BY_NAME[name.removesuffix("_current").removesuffix("_live")].column_key
        return {
            str(r[key]): r for r in self.rows(f"SELECT * FROM {{s}}.{quote(name)} WHERE {where}")
        }

    def count(self, name: str, where: str = "TRUE") -> int:
        return int(self.value(f"SELECT count(*) AS n FROM {{s}}.{quote(name)} WHERE {where}"))

    def column_types(self, table: str) -> dict[str, str]:
        """Column name -> a backend-neutral kind: timestamptz, decimal, json, boolean, ..."""
        rows = self.rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [self.schema, table],
        )
        return {r["column_name"]: neutral_type(r["data_type"]) for r in rows}

    def primary_keys(self) -> dict[str, list[str]]:
        rows = self.rows(
            "SELECT kcu.table_name AS t, kcu.column_name AS c "
            "FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu "
            "ON tc.constraint_name = kcu.constraint_name "
            "AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name "
            "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = ? "
            "ORDER BY kcu.table_name, kcu.ordinal_position",
            [self.schema],
        )
        keys: dict[str, list[str]] = {}
        for r in rows:
            keys.setdefault(r["t"], []).append(r["c"])
        return keys

    def relations(self) -> dict[str, str]:
        """Name -> 'BASE TABLE' or 'VIEW' for everything in the schema."""
        rows = self.rows(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = ?",
            [self.schema],
        )
        return {r["table_name"]: r["table_type"] for r in rows}

    @property
    def path(self) -> str:
        return self.url.removeprefix("duckdb:///")

    @contextlib.contextmanager
    def client_killed(self) -> Iterator[None]:
        """Around a writer that is killed: what the warehouse does about its session."""
        yield


def neutral_type(data_type: str) -> str:
    kind = data_type.lower()
    if kind in ("timestamp with time zone", "timestamptz"):
        return "timestamptz"
    if kind.startswith(("decimal", "numeric")):
        return "decimal"
    if kind in ("json", "jsonb"):
        return "json"
    if kind in ("boolean", "bool"):
        return "boolean"
    if kind in ("bigint", "int8"):
        return "bigint"
    if kind in ("text", "varchar", "character varying"):
        return "text"
    return kind


def drop_schema(admin_url: str, schema: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema(postgres_server: Any) -> Iterator[str]:
    """A fresh, unique schema on the shared server, dropped afterwards."""
    schema = f"contract_{uuid.uuid4().hex[:12]}"
    yield schema
    drop_schema(postgres_server.url, schema)


@pytest.fixture(params=BACKENDS)
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        warehouse = Warehouse("duckdb", f"duckdb:///{tmp_path / 'warehouse.duckdb'}", "ordergroove")
        yield warehouse
        warehouse.close_writers()
        return
    if request.param == "snowflake":
        warehouse = request.getfixturevalue("sf_wh")
        yield warehouse
        return
    server = request.getfixturevalue("postgres_server")  # raises if PostgreSQL is missing
    schema = request.getfixturevalue("pg_schema")
    warehouse = Warehouse("postgres", server.url, schema)
    yield warehouse
    warehouse.close_writers()  # before pg_schema's teardown drops the schema


@pytest.fixture
def open_dest(wh: Warehouse) -> Callable[[], Destination]:
    return wh.open_dest


@pytest.fixture(scope="session")
def snowflake_emulator() -> Iterator[Any]:
    from ogsync.testing.snowflake import emulated_snowflake

    with emulated_snowflake() as emulator:
        yield emulator


@pytest.fixture
def sf_wh(snowflake_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Warehouse]:
    """Snowflake alone: a fresh schema in the emulator, password from the environment."""
    from .snowflake_support import SnowflakeWarehouse

    monkeypatch.setenv("OGSYNC_SNOWFLAKE_PASSWORD", SnowflakeWarehouse.PASSWORD)
    for name in ("OGSYNC_SNOWFLAKE_PRIVATE_KEY_FILE", "OGSYNC_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    warehouse = SnowflakeWarehouse.fresh(snowflake_emulator)
    yield warehouse
    warehouse.drop()


@pytest.fixture
def pg_wh(postgres_server: Any, pg_schema: str) -> Iterator[Warehouse]:
    """PostgreSQL alone, for the tests of what only it does (locks, reconnects, passwords)."""
    warehouse = Warehouse("postgres", postgres_server.url, pg_schema)
    yield warehouse
    warehouse.close_writers()


@pytest.fixture(scope="session")
def s3_stand_in() -> Iterator[Any]:
    """A local S3 (moto, on 127.0.0.1) for the lakehouse tests; each test takes a bucket."""
    from ogsync.testing.s3 import s3_server

    with s3_server() as server:
        yield server
