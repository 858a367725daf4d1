"""The contract suite's reader for Snowflake: a fresh schema in the emulator, read through the
real connector.

Rows come back as dicts with lower-case keys (Snowflake answers with upper-case column names).
JSON (VARIANT) comes back as text, as on the other backends.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ogsync.destinations.base import quote
from ogsync.destinations.snowflake_connect import connect, credentials, parse_url

from .conftest import Warehouse

DATABASE = "OGSYNC"
# Short, so that a writer killed on purpose gives its schema up within the suite's patience;
# renewed every quarter of it.
LEASE_SECONDS = 3


@dataclass
class SnowflakeWarehouse(Warehouse):
    PASSWORD = "emulator-Passw0rd-4711"  # the emulator takes any; must never be shown

    emulator: Any = None
    _reader: Any = field(default=None, repr=False)

    @classmethod
    def fresh(cls, emulator: Any, **options: str | int) -> SnowflakeWarehouse:
        options.setdefault("staging", "transient")  # what the emulator can COPY into
        options.setdefault("lease_seconds", LEASE_SECONDS)
        url = emulator.url(DATABASE, **options)
        return cls("snowflake", url, f"contract_{uuid.uuid4().hex[:12]}", emulator=emulator)

    def reader(self) -> Any:
        if self._reader is None or self._reader.is_closed():
            self._reader = connect(parse_url(self.url), credentials(), self.url)
        return self._reader

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        query = query.replace("{s}", self.s)
        cursor = self.reader().cursor()
        try:
            cursor.execute(query, list(params) or None)
            if not cursor.description:
                return []
            names = [d[0].lower() for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def column_types(self, table: str) -> dict[str, str]:
        rows = self.rows(
            "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
            "WHERE upper(table_schema) = upper(?) AND upper(table_name) = upper(?)",
            [self.schema, table],
        )
        return {r["column_name"].lower(): snowflake_type(r) for r in rows}

    def primary_keys(self) -> dict[str, list[str]]:
        rows = self.rows(f"SHOW PRIMARY KEYS IN SCHEMA {self.s}")
        keys: dict[str, list[tuple[int, str]]] = {}
        for r in rows:
            keys.setdefault(r["table_name"].lower(), []).append(
                (int(r["key_sequence"]), r["column_name"].lower())
            )
        # (The emulator numbers every column 1; it lists them in order, which a stable sort keeps.)
        return {t: [c for _, c in sorted(cols, key=lambda c: c[0])] for t, cols in keys.items()}

    def relations(self) -> dict[str, str]:
        """Snowflake lists views among its tables; the emulator only in `views`: read both."""
        where = "WHERE upper(table_schema) = upper(?)"
        found = {
            r["table_name"].lower(): r["table_type"]
            for r in self.rows(
                f"SELECT table_name, table_type FROM information_schema.tables {where}",
                [self.schema],
            )
        }
        for r in self.rows(
            f"SELECT table_name FROM information_schema.views {where}", [self.schema]
        ):
            found[r["table_name"].lower()] = "VIEW"
        return found

    @contextlib.contextmanager
    def client_killed(self) -> Iterator[None]:
        """A killed client's session stays open on Snowflake, with its transaction, until it is
        aborted: by Snowflake after minutes, or by the next run, which ends the session its
        lease names (SYSTEM$ABORT_SESSION). The emulator has no session ids to name, so this
        ends the killed client's sessions as that call would."""
        before = self.emulator.sessions()
        yield
        self.emulator.end_sessions_except(before)

    def drop(self) -> None:
        self.close_writers()
        with contextlib.suppress(Exception):
            self.rows(f"DROP SCHEMA IF EXISTS {quote(self.schema)} CASCADE")
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
        self.emulator.forget_results()


def snowflake_type(column: dict[str, Any]) -> str:
    kind = column["data_type"].upper()
    if kind == "NUMBER":
        return "bigint" if not column["numeric_scale"] else "decimal"
    return {
        "TIMESTAMP_TZ": "timestamptz",
        "VARIANT": "json",
        "TEXT": "text",
        "BOOLEAN": "boolean",
        "DATE": "date",
    }.get(kind, kind.lower())
