"""The data dictionary in a SQL warehouse: the `codes` table, and a comment on every table,
view and column ogsync writes, where the warehouse keeps comments (`Dialect.comments`).

Both are written by `prepare`, in its transaction, and only where they differ from what the
warehouse holds: an unchanged warehouse is not touched, a changed list of codes replaces the
table's rows, a new or changed column gets its comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ogsync.destinations.base import DEPRECATED_VIEW_SUFFIX
from ogsync.dictionary import (
    CODES,
    CODES_TABLE,
    WAREHOUSE_TABLES,
    TableDoc,
    endpoint_tables,
    warehouse_tables,
)
from ogsync.endpoints import Endpoint

if TYPE_CHECKING:
    from ogsync.destinations.sql import SqlDestination

# The codes as rows of the `codes` table, in its column order.
CODE_ROWS = sorted((c.endpoint, c.field, c.code, c.label, c.description) for c in CODES)


def create_codes(dest: SqlDestination) -> bool:
    """The `codes` table, holding exactly `CODES`; True when its rows were (re)written."""
    table = f"{dest.s}.{CODES_TABLE}"
    dest.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (endpoint VARCHAR, field VARCHAR, code VARCHAR, "
        "label VARCHAR, description VARCHAR, PRIMARY KEY (endpoint, field, code))"
    )
    stored = dest.execute(f"SELECT endpoint, field, code, label, description FROM {table}")
    if sorted(tuple(row) for row in stored) == CODE_ROWS:
        return False
    dest.execute(f"DELETE FROM {table}")
    dest.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)", CODE_ROWS)
    return True


def literal(text: str) -> str:
    """`text` as an SQL string literal. COMMENT takes no parameters, so the description is
    written into the statement; a `?` there would be taken for a placeholder."""
    if "?" in text:
        raise ValueError(f"a description may not hold '?': {text!r}")
    return "'" + text.replace("'", "''") + "'"


def endpoint_docs(ep: Endpoint) -> dict[str, TableDoc]:
    """The endpoint's table, views and history table, as the dictionary describes them, by
    name (the history table's too when the endpoint keeps none now: it stays)."""
    return {doc.name: doc for doc in endpoint_tables(replace(ep, history=True))}


def column_texts(doc: TableDoc) -> dict[str, str]:
    return {c.name: c.description for c in doc.columns}


def comment(dest: SqlDestination, endpoints: Iterable[Endpoint]) -> int:
    """Comment every table, view and column of the schema the dictionary describes, where
    the stored comment differs; returns how many comments were written."""
    if not dest.dialect.comments:
        return 0
    relations, columns = dest.commentable()
    # A history table stays when its setting is turned off: describe it all the same.
    kept = [replace(ep, history=True) for ep in endpoints]
    wanted: list[tuple[str, str, str | None, str]] = []  # kind, relation, column, text
    for doc in warehouse_tables(kept, also=WAREHOUSE_TABLES):
        if doc.name not in relations:
            continue
        kind = relations[doc.name]
        wanted.append((kind, doc.name, None, doc.description))
        if doc.name.endswith(DEPRECATED_VIEW_SUFFIX):
            continue  # its note says which view to use instead, whose columns are described
        wanted += [
            (kind, doc.name, c.name, c.description)
            for c in doc.columns
            if c.name in columns.get(doc.name, ())
        ]
    stored = dest.stored_comments()
    statements = [
        dest.comment_statement(kind, relation, column, text)
        for kind, relation, column, text in wanted
        if stored is None or stored.get((relation, column)) != text
    ]
    if statements:
        dest.execute_script(statements)
    return len(statements)


def comments_by_name(rows: Sequence[Sequence[object]]) -> dict[tuple[str, str | None], str]:
    """(relation, column or None, comment) rows as a mapping, leaving out empty comments."""
    return {
        (str(relation), None if column is None else str(column)): str(text)
        for relation, column, text in rows
        if text
    }
