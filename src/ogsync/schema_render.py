"""`ogsync schema`: the data dictionary as tables for a terminal, Markdown, or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from ogsync.destinations.base import CURRENT_VIEW_SUFFIX, DEPRECATED_VIEW_SUFFIX
from ogsync.dictionary import TableDoc, labels
from ogsync.endpoints import BY_NAME


def rich_tables(docs: Sequence[TableDoc]) -> list[Table]:
    """A table per warehouse table: its columns, types and meanings; keys marked."""
    out = []
    for doc in docs:
        table = Table(title=escape(f"{doc.name}: {doc.description}"), title_justify="left")
        table.add_column("column", no_wrap=True)
        table.add_column("type", no_wrap=True)
        table.add_column("description")
        for column in doc.columns:
            name = escape(column.name)
            if column.name in doc.key:
                name = f"[bold]{name}[/] (key)"
            table.add_row(name, column.type, escape(column.description))
        out.append(table)
    return out


def markdown(docs: Sequence[TableDoc]) -> str:
    """A section per table: what a row is, its key, and its columns as a Markdown table."""
    parts = []
    if len(docs) > 1:
        parts.append("# ogsync data dictionary\n")
    for doc in docs:
        lines = [f"## `{doc.name}`", "", _cell(doc.description)]
        if doc.key:
            lines += ["", "Key: " + ", ".join(f"`{k}`" for k in doc.key) + "."]
        lines += ["", "| column | type | description |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {_cell(c.description)} |" for c in doc.columns]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def as_json(doc: TableDoc) -> dict[str, Any]:
    """A table for machines: a coded column also carries its codes (code -> label)."""
    endpoint = _endpoint_of(doc.name)
    columns = []
    for c in doc.columns:
        column: dict[str, Any] = {"name": c.name, "type": c.type, "description": c.description}
        codes = labels(endpoint, c.name) if endpoint else {}
        if codes:
            column["codes"] = codes
        columns.append(column)
    return {
        "name": doc.name,
        "description": doc.description,
        "key": list(doc.key),
        "columns": columns,
    }


def _endpoint_of(table: str) -> str | None:
    """The endpoint whose fields a table holds: its own, its views', its history's."""
    for suffix in ("", CURRENT_VIEW_SUFFIX, DEPRECATED_VIEW_SUFFIX, "_history"):
        name = table.removesuffix(suffix) if suffix else table
        if (not suffix or table.endswith(suffix)) and name in BY_NAME:
            return name
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
