"""`ogsync maintain`: tidy a warehouse's files, for the warehouses that leave that to their
writer (the lakehouses: each sync adds files, and replaced ones stay for readers that began
before). The CLI and the benchmark are thin layers over `maintain`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from ogsync.config import Settings
from ogsync.destinations import kind_of, open_destination
from ogsync.destinations.base import TableUpkeep

# The lakehouse's own default, so `ogsync maintain` and a destination asked without a
# retention never disagree. The module is light: duckdb and pyarrow, neither format's driver.
from ogsync.destinations.lakehouse import DEFAULT_RETENTION
from ogsync.destinations.registry import masked

__all__ = ["DEFAULT_RETENTION", "Maintenance", "maintain", "maintain_settings"]


@dataclass(frozen=True)
class Maintenance:
    """What `maintain` did to one warehouse."""

    warehouse: str  # its kind's name (Delta Lake, DuckDB, ...)
    where: str  # its URL as messages may show it
    keeps_own_files: bool  # a database that tidies its own files: nothing is ever done
    tables: list[TableUpkeep] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What a person is told: a line per table, or why there was nothing to do."""
        if self.tables:
            return [upkeep.line() for upkeep in self.tables]
        if self.keeps_own_files:
            return [f"nothing to maintain: {self.warehouse} keeps its own files"]
        return [f"nothing to maintain: {self.where} has no tables yet"]


def maintain(
    url: str,
    schema: str,
    retention: timedelta = DEFAULT_RETENTION,
    *,
    memory_limit: str | None = None,
) -> Maintenance:
    """Hold the warehouse at `url` as its writer, compact each table of `schema` and delete
    the files no commit younger than `retention` reads. Raises AlreadyRunning when a sync
    holds it: maintenance rewrites what a sync would be writing."""
    if retention < timedelta(0):
        raise ValueError(f"the retention must not be negative (got {retention})")
    kind = kind_of(url)
    warehouse = open_destination(url, schema, memory_limit=memory_limit)
    try:
        tables = warehouse.maintain(retention)
        # Known by the warehouse's kind, not by what it returned: a lakehouse never synced
        # has no tables either, and must not be said to keep its own files.
        keeps_own = not kind.writer_keeps_files
    finally:
        warehouse.close()
    return Maintenance(kind.name, masked(url), keeps_own, tables)


def maintain_settings(settings: Settings, retention: timedelta = DEFAULT_RETENTION) -> Maintenance:
    """`maintain` on the warehouse and schema the settings name."""
    return maintain(
        settings.destination,
        settings.schema,
        retention,
        memory_limit=settings.duckdb_memory_limit,
    )
