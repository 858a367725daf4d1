"""What an endpoint table holds of each key, as newer-wins compares it, kept in memory.

A batch's winners are decided against the stored versions of its keys. Reading them from
the table at every batch scans all of its files, so a full sync's cost grew with the square
of its size; instead each endpoint's keys are read once per writer and then kept up to date
with every commit this writer makes. Only the writer holding the lakehouse's lock commits to
it, so nothing else can change a table meanwhile; a commit that fails (or may have half
succeeded) drops the endpoint's keys, which are read again from the table when next needed.
A million keys take about 70 MB, which the working DuckDB's memory limit lets it spill to
disk (`lakehouse.working_db`), so the writer's memory does not grow with its tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from ogsync.destinations.base import TableSql, quote
from ogsync.destinations.duckdb_memory import with_memory
from ogsync.endpoints import Endpoint

SCHEMA = "ogsync_keys"


def compared_columns(ep: Endpoint) -> list[str]:
    """The columns newer-wins reads of a stored row (quoted)."""
    columns = [quote(ep.column_key), "_updated_latest", "_deleted_at", "_deleted_reason"]
    upd = TableSql(ep, "").update_column
    if upd is not None:
        columns.append(quote(upd))
    return columns


class KeyIndex:
    """The compared columns of each endpoint table's rows, in the working DuckDB."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self._db = db
        self._db.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        self._held: set[str] = set()

    def table(self, ep: Endpoint, stored: Callable[[], Any]) -> str:
        """The name of `ep`'s keys table, read from `stored()` (its rows) the first time."""
        name = _table_name(ep.name)
        if ep.name not in self._held:
            self._db.register("ogsync_stored", stored())
            try:
                with_memory(
                    self._db,
                    lambda: self._db.execute(
                        f"CREATE OR REPLACE TABLE {name} AS "
                        f"SELECT {', '.join(compared_columns(ep))} FROM ogsync_stored"
                    ),
                )
            finally:
                self._db.unregister("ogsync_stored")
            self._held.add(ep.name)
        return name

    def committed(self, ep: Endpoint, rows: pa.Table) -> None:
        """`rows` are now the table's rows of their keys."""
        if ep.name not in self._held:
            return
        name = _table_name(ep.name)
        key = quote(ep.column_key)
        self._db.register("ogsync_committed", rows)
        columns = ", ".join(compared_columns(ep))

        def replace() -> None:  # run again whole after running out of memory
            self._db.execute(
                f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM ogsync_committed)"
            )
            self._db.execute(f"INSERT INTO {name} SELECT {columns} FROM ogsync_committed")

        try:
            with_memory(self._db, replace)
        except BaseException:
            self.forget(ep.name)
            raise
        finally:
            self._db.unregister("ogsync_committed")

    def forget(self, table: str) -> None:
        """Drop what is held of `table`: it is read again when next needed."""
        if table in self._held:
            self._held.discard(table)
            self._db.execute(f"DROP TABLE IF EXISTS {_table_name(table)}")


def _table_name(table: str) -> str:
    return f"{SCHEMA}.{quote(table)}"
