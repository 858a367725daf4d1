"""Warehouses behind one small protocol: choose one by its URL."""

from __future__ import annotations

from collections.abc import Collection

from ogsync.destinations.base import Destination, DestinationError


def open_destination(
    url: str,
    schema: str,
    *,
    duckdb_memory_limit: str | None = None,
    claims: Collection[str] | None = None,
    read_only: bool = False,
) -> Destination:
    """The warehouse at `url`, held for this run.

    With `claims` (endpoint names), only those endpoints are held, so that runs of other
    endpoints may write to the same warehouse at once. DuckDB cannot share its file between
    processes, so there a claim holds the whole file. With `read_only` (status), nothing is
    held or written: a run starting meanwhile waits for DuckDB's file a moment, not in vain.
    """
    if url.startswith("duckdb:"):
        from ogsync.destinations.duckdb import DuckDBDestination

        return DuckDBDestination(url, schema, duckdb_memory_limit, read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        from ogsync.destinations.postgres import PostgresDestination

        return PostgresDestination(url, schema, claims, read_only=read_only)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise DestinationError(
        f"unsupported destination {scheme!r}: use duckdb:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DB"
    )
