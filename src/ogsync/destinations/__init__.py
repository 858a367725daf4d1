"""Warehouses behind one protocol (`base.Destination`), chosen by URL (`registry`)."""

from ogsync.destinations.errors import AlreadyRunning, DestinationError
from ogsync.destinations.registry import (
    DEFAULT_URL,
    EXAMPLES,
    KINDS,
    OpenOptions,
    WarehouseKind,
    kind_of,
    open_destination,
    open_reader,
)

__all__ = [
    "DEFAULT_URL",
    "EXAMPLES",
    "KINDS",
    "AlreadyRunning",
    "DestinationError",
    "OpenOptions",
    "WarehouseKind",
    "kind_of",
    "open_destination",
    "open_reader",
]
