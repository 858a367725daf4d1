"""The lakehouse warehouses for the contract suite: Delta Lake and Iceberg, in a folder or in a
bucket of a local S3 stand-in (moto, ogsync.testing.s3).

The reader reads every table back with the format's own reader (deltalake, pyiceberg) into an
in-memory DuckDB, in a schema of the warehouse's name, with each endpoint's `<table>_current`
view as docs/design.md tells a reader to make it; then the suite's SQL runs on that.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from ogsync.destinations.base import quote
from ogsync.endpoints import ENDPOINTS
from ogsync.testing.s3 import S3Server

from .conftest import Warehouse

LAKEHOUSES = ("delta", "iceberg", "delta_s3", "iceberg_s3")
TABLES = (
    *(ep.name for ep in ENDPOINTS),
    "_ogsync_state", "_ogsync_runs", "_ogsync_rejected", "_ogsync_deletions",
    "_ogsync_backfill", "events", "_ogsync_rules",
)  # fmt: skip


@dataclass
class LakehouseWarehouse(Warehouse):
    root: str = ""  # the folder or s3://bucket/prefix the URL names
    storage: dict[str, str] | None = None  # S3 settings for the readers
    catalog_uri: str = ""  # Iceberg's catalog

    @property
    def fmt(self) -> str:
        return self.backend.removesuffix("_s3")

    def arrow(self, name: str) -> pa.Table | None:
        """A table as its format's own reader returns it; None when it does not exist."""
        if self.fmt == "delta":
            from deltalake import DeltaTable

            uri = f"{self.root}/{self.schema}/{name}"
            if not DeltaTable.is_deltatable(uri, storage_options=self.storage):
                return None
            return DeltaTable(uri, storage_options=self.storage).to_pyarrow_table()
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        catalog = SqlCatalog("ogsync", **self.catalog_properties())
        try:
            return catalog.load_table((self.schema, name)).scan().to_arrow()
        except (NoSuchTableError, NoSuchNamespaceError):
            return None
        finally:
            catalog.engine.dispose()

    def catalog_properties(self) -> dict[str, str]:
        properties = {"uri": self.catalog_uri, "warehouse": self.root}
        if self.storage:
            properties |= {
                "s3.endpoint": self.storage["AWS_ENDPOINT_URL"],
                "s3.access-key-id": self.storage["AWS_ACCESS_KEY_ID"],
                "s3.secret-access-key": self.storage["AWS_SECRET_ACCESS_KEY"],
                "s3.region": self.storage["AWS_REGION"],
            }
        return properties

    def reader(self, query: str | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB holding the tables `query` names (all for a catalog query
        or none given), each read whole: on S3 a table costs many requests."""
        conn = duckdb.connect()
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"CREATE SCHEMA {self.s}")
        every = query is None or "information_schema" in query
        for name in TABLES:
            if not every and name not in query:  # type: ignore[operator]
                continue
            table = self.arrow(name)
            if table is None:
                continue
            conn.register("loaded", table)
            conn.execute(f"CREATE TABLE {self.s}.{quote(name)} AS SELECT * FROM loaded")
            conn.unregister("loaded")
            if name in {ep.name for ep in ENDPOINTS}:
                conn.execute(
                    f"CREATE VIEW {self.s}.{quote(name + '_current')} AS "
                    f"SELECT * FROM {self.s}.{quote(name)} WHERE _deleted_at IS NULL"
                )
        return conn

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.reader(query) as conn:
            cursor = conn.execute(query.replace("{s}", self.s), list(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def lakehouse(
    backend: str, tmp_path: Path, s3: S3Server | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LakehouseWarehouse]:
    """A fresh lakehouse of `backend` (one of LAKEHOUSES)."""
    fmt = backend.removesuffix("_s3")
    schema = "ordergroove"
    catalog_uri = f"sqlite:///{tmp_path / 'catalog.db'}"
    storage = None
    if backend.endswith("_s3"):
        assert s3 is not None
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        root = f"s3://{s3.new_bucket()}/lake-{uuid.uuid4().hex[:8]}"
        storage = s3.env() | {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
        url = f"{fmt}+{root}"
        monkeypatch.setenv("OGSYNC_ICEBERG_CATALOG", catalog_uri)
    else:
        root = str(tmp_path / "lake")
        url = f"{fmt}://{root}"
        catalog_uri = f"sqlite:///{root}/catalog.db"
    warehouse = LakehouseWarehouse(
        backend, url, schema, root=root, storage=storage, catalog_uri=catalog_uri
    )
    yield warehouse
    warehouse.close_writers()


def contract_fixture(backend: str) -> Any:
    """The `wh` fixture of a contract module on one of LAKEHOUSES: a module per backend, so
    that the test workers (which take a module each) share the slow S3 ones out."""

    @pytest.fixture
    def wh(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[LakehouseWarehouse]:
        s3 = request.getfixturevalue("s3_stand_in") if backend.endswith("_s3") else None
        yield from lakehouse(backend, tmp_path, s3, monkeypatch)

    return wh
