"""What `ogsync status` reads while a sync holds a DuckDB warehouse.

DuckDB lets one process open a file to write and, meanwhile, no other process open it at all,
so a monitor asking for the status during a sync would see an outage. The process holding the
file therefore keeps a snapshot of the status beside it, `<file>.<schema>.status.json`
(replaced atomically, owner-only, every few seconds and at the end), and `ogsync status`
reads that, saying how old it is, when it can't open the file itself.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ogsync.private import write_private
from ogsync.status import EndpointStatus, warehouse_status

if TYPE_CHECKING:
    from ogsync.destinations.duckdb import DuckDBDestination


def snapshot_path(db_path: str, schema: str) -> Path:
    return Path(f"{db_path}.{schema}.status.json")


@dataclass(frozen=True)
class Snapshot:
    pid: int  # the process that holds the warehouse
    taken_at: datetime
    statuses: list[EndpointStatus]


def write_snapshot(destination: DuckDBDestination) -> None:
    """The status of `destination` (a DuckDB warehouse this process holds), beside its file."""
    now = datetime.now(UTC)
    statuses = warehouse_status(destination, now)
    document = {
        "pid": os.getpid(),
        "schema": destination.schema,
        "taken_at": now.isoformat(),
        "endpoints": [s.as_json() for s in statuses],
    }
    write_private(snapshot_path(destination.path, destination.schema), orjson.dumps(document))


def read_snapshot(path: Path, now: datetime) -> Snapshot | None:
    """The snapshot of a live process, the lags measured to `now`; None if there is none."""
    try:
        document = orjson.loads(path.read_bytes())
        pid = int(document["pid"])
        taken_at = datetime.fromisoformat(document["taken_at"])
        rows = document["endpoints"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid):
        return None
    return Snapshot(pid, taken_at, [EndpointStatus.from_json(row, now) for row in rows])


def running_syncs(db_path: str) -> set[int]:
    """The live processes that keep a snapshot of this warehouse (any schema)."""
    found = set()
    folder = Path(db_path).expanduser().parent
    for path in folder.glob(f"{Path(db_path).name}.*.status.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pid = int(orjson.loads(path.read_bytes())["pid"])
            if _alive(pid):
                found.add(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
