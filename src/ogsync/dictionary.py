"""The data dictionary: every table ogsync writes, every column's meaning, and the documented
codes (order status, `every_period`, ...), from one source: the endpoint table
(`ogsync.endpoints`, each field's description) and the metadata columns defined here.

`ogsync schema` prints it, the warehouses that keep comments get them (`COMMENT ON`), the
`codes` table holds the codes, and the dbt package's docs are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The table of documented codes, in every warehouse's schema.
CODES_TABLE = "codes"


@dataclass(frozen=True)
class Code:
    endpoint: str  # the table whose column holds the code
    field: str  # the column
    code: str  # as stored (text, whatever the column's type)
    label: str  # short, for reports ("unsent")
    description: str = ""


CODES: tuple[Code, ...] = (
    Code("orders", "status", "1", "unsent", "Upcoming: not yet placed"),
    Code("orders", "status", "3", "rejected", "Placing it failed"),
    Code("orders", "status", "4", "cancelled", "Cancelled before it was placed"),
    Code("orders", "status", "5", "success", "Placed"),
    Code("orders", "status", "6", "send now", "Asked to be placed at once"),
    Code("orders", "status", "9", "pending batch", "Waiting in a batch to be placed"),
    Code("subscriptions", "every_period", "1", "days"),
    Code("subscriptions", "every_period", "2", "weeks"),
    Code("subscriptions", "every_period", "3", "months"),
)


@dataclass(frozen=True)
class ColumnDoc:
    name: str  # as in the warehouse
    type: str  # the logical type (ogsync.endpoints.FieldType value, or e.g. "timestamp")
    description: str


@dataclass(frozen=True)
class TableDoc:
    name: str
    description: str  # one line: what a row is
    columns: tuple[ColumnDoc, ...]
    key: tuple[str, ...] = ()  # the columns that identify a row


def labels(endpoint: str, field: str) -> dict[str, str]:
    """The documented codes of one column: code -> label."""
    return {c.code: c.label for c in CODES if c.endpoint == endpoint and c.field == field}
