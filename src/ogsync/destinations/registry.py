"""The one place a warehouse is chosen: its URL's scheme names a kind, and the kind's module
opens it. Adding a warehouse is a module in this package and a line in `KINDS`.

Light on purpose: settings and Airflow's DAG parsing read it without loading any driver.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogsync.destinations.errors import DestinationError
from ogsync.extras import is_missing_dependency, missing_extra_message

if TYPE_CHECKING:
    from ogsync.destinations.base import AccessReport, Destination, WarehouseReader
    from ogsync.webhooks.inbox import GroupCommitInbox


@dataclass(frozen=True)
class OpenOptions:
    # Endpoint names: hold only these, so runs of other endpoints may write at the same time
    # (where the warehouse can; otherwise a claim holds it all). None holds the whole of it.
    claims: tuple[str, ...] | None = None
    read_only: bool = False  # a reader: holds and writes nothing
    memory_limit: str | None = None  # the warehouse's own memory, where it has a setting


@dataclass(frozen=True)
class WarehouseKind:
    """What ogsync must know of a warehouse before opening it.

    Its module provides `open_warehouse(url, schema, options) -> Destination`, `masked(url)`,
    and, as the flags say, `local_path(url)`, `open_inbox(url, schema)` and
    `check_access(url, schema)`.
    """

    name: str
    schemes: tuple[str, ...]
    example: str  # for messages and --help
    module: str  # imported when used: each kind needs its own driver
    single_writer: bool = False  # one process at a time may write (a run holds all of it)
    on_local_disk: bool = False  # the URL names a local file or folder
    hosts_inbox: bool = False  # can keep the webhook inbox in its own schema
    checks_access: bool = False  # `ogsync check` can ask what its role may do there
    # Its writer compacts and expires its files (`ogsync maintain`); a database keeps its own.
    writer_keeps_files: bool = False
    # The package extra that installs its driver (`pip install 'ogsync[EXTRA]'`); None for a
    # warehouse the core installs.
    extra: str | None = None
    # Bookkeeping tables only this kind writes (the data dictionary describes them too).
    own_tables: tuple[str, ...] = ()

    def _module(self) -> Any:
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if self.extra is None or not is_missing_dependency(exc):
                raise
            # The driver is an extra: say which, in one line, instead of an ImportError.
            raise DestinationError(
                missing_extra_message(f"a {self.name} warehouse", self.extra)
            ) from None

    def open(self, url: str, schema: str, options: OpenOptions = OpenOptions()) -> Destination:
        return self._module().open_warehouse(url, schema, options)

    def masked(self, url: str) -> str:
        """The URL as messages may show it (no password)."""
        return self._module().masked(url)

    def local_path(self, url: str) -> Path | None:
        """Where the warehouse lives on this machine, for one on local disk."""
        return self._module().local_path(url) if self.on_local_disk else None

    def open_inbox(self, url: str, schema: str) -> GroupCommitInbox:
        if not self.hosts_inbox:
            raise DestinationError(f"a {self.name} warehouse cannot hold the webhook inbox")
        return self._module().open_inbox(url, schema)

    def check_access(self, url: str, schema: str) -> AccessReport | None:
        """What the role may do there (create the schema, tables, ...), or None: not asked."""
        return self._module().check_access(url, schema) if self.checks_access else None


KINDS: tuple[WarehouseKind, ...] = (
    WarehouseKind(
        "DuckDB",
        ("duckdb",),
        "duckdb:///FILE",
        "ogsync.destinations.duckdb",
        single_writer=True,
        on_local_disk=True,
    ),
    WarehouseKind(
        "PostgreSQL",
        ("postgresql", "postgres"),
        "postgresql://USER:PASSWORD@HOST:PORT/DB",
        "ogsync.destinations.postgres",
        hosts_inbox=True,
        extra="postgres",
        own_tables=("_ogsync_inbox",),  # when it holds the webhook inbox
    ),
    WarehouseKind(
        "Snowflake",
        ("snowflake",),
        "snowflake://USER@ACCOUNT/DATABASE?warehouse=W&role=R",
        "ogsync.destinations.snowflake",
        checks_access=True,
        extra="snowflake",
        own_tables=("_ogsync_leases",),  # its run guard (destinations/snowflake_lease.py)
    ),
    # Open table formats, in a folder or an S3 prefix (destinations/lakehouse.py): one writer
    # at a time, held by a lock file or, on S3, a conditional put (lakehouse_lock.py).
    WarehouseKind(
        "Delta Lake",
        ("delta", "delta+s3"),
        "delta:///ABSOLUTE/FOLDER",
        "ogsync.destinations.delta",
        single_writer=True,
        writer_keeps_files=True,
        on_local_disk=True,
        extra="delta",
        own_tables=("_ogsync_rules",),
    ),
    WarehouseKind(
        "Iceberg",
        ("iceberg", "iceberg+s3"),
        "iceberg:///ABSOLUTE/FOLDER",
        "ogsync.destinations.iceberg",
        single_writer=True,
        writer_keeps_files=True,
        on_local_disk=True,
        extra="iceberg",
        own_tables=("_ogsync_rules",),
    ),
)
DEFAULT_URL = "duckdb:///ogsync.duckdb"
EXAMPLES = " or ".join(kind.example for kind in KINDS)
# Schemes people try that name no kind here, and what to tell them.
UNSUPPORTED = {"md": "MotherDuck is not supported", "motherduck": "MotherDuck is not supported"}


def kind_of(url: str) -> WarehouseKind:
    scheme = url.split(":", 1)[0].lower() if ":" in url else url
    for kind in KINDS:
        if scheme in kind.schemes:
            return kind
    problem = UNSUPPORTED.get(scheme, f"unsupported destination {scheme!r}")
    raise DestinationError(f"{problem}: use {EXAMPLES}")


def open_destination(
    url: str,
    schema: str,
    *,
    memory_limit: str | None = None,
    claims: tuple[str, ...] | list[str] | None = None,
) -> Destination:
    """The warehouse at `url`, held for this run (with `claims`, only those endpoints)."""
    held = tuple(claims) if claims is not None else None
    return kind_of(url).open(url, schema, OpenOptions(held, memory_limit=memory_limit))


def open_reader(url: str, schema: str) -> WarehouseReader:
    """The warehouse at `url` to read, holding nothing: a run starting meanwhile is not kept
    waiting. Raises AlreadyRunning (with a snapshot to read instead, where there is one) when
    a run holds a warehouse that lets no reader in."""
    return kind_of(url).open(url, schema, OpenOptions(read_only=True))


def check_access(url: str, schema: str) -> AccessReport | None:
    """For `ogsync check`: what the warehouse at `url` lets this role do (None: not asked)."""
    return kind_of(url).check_access(url, schema)


def masked(url: str) -> str:
    try:
        return kind_of(url).masked(url)
    except DestinationError:
        return f"{url.split(':', 1)[0]}://***"
