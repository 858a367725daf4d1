"""Warehouses behind one small protocol: choose one by its URL."""

from __future__ import annotations

from ogsync.destinations.base import Destination, DestinationError


def open_destination(
    url: str, schema: str, *, duckdb_memory_limit: str | None = None
) -> Destination:
    if url.startswith("duckdb:"):
        from ogsync.destinations.duckdb import DuckDBDestination

        return DuckDBDestination(url, schema, duckdb_memory_limit)
    if url.startswith(("postgresql://", "postgres://")):
        from ogsync.destinations.postgres import PostgresDestination

        return PostgresDestination(url, schema)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise DestinationError(
        f"unsupported destination {scheme!r}: use duckdb:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DB"
    )
