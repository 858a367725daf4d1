"""The webhook inbox as a table of the PostgreSQL warehouse, in the destination's schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ogsync.webhooks.inbox import COLUMNS, TABLE, GroupCommitInbox, InboxEvent, claimed, row_of


class PostgresInbox(GroupCommitInbox):
    """The inbox as a table of the PostgreSQL warehouse, in the destination's schema."""

    kind = "postgres-inbox"

    def __init__(self, url: str, schema: str, **kwargs: Any) -> None:
        if not schema.replace("_", "").isalnum():
            raise ValueError(f"schema {schema!r}: use letters, digits and underscores")
        self.url = url
        self.schema = schema
        super().__init__(**kwargs)

    @property
    def _table(self) -> str:
        return f'"{self.schema}".{TABLE}'

    def _connect(self) -> Any:
        conn = psycopg.connect(self.url, connect_timeout=10, application_name="ogsync-webhooks")
        with conn.transaction():
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self._table} (
                    event_id text PRIMARY KEY,
                    type text NOT NULL,
                    created bigint,
                    object_type text,
                    object_id text,
                    order_id text,
                    payload text NOT NULL,
                    received_at timestamptz NOT NULL,
                    applied_at timestamptz
                )"""
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {self._table}"
                " (created, received_at) WHERE applied_at IS NULL"
            )
        return conn

    def _insert(self, conn: Any, events: Sequence[InboxEvent]) -> list[bool]:
        columns = list(zip(*(row_of(e) for e in events), strict=True))
        rows = conn.execute(
            f"INSERT INTO {self._table} ({COLUMNS})"
            " SELECT e, t, c, ot, oi, od, p, to_timestamp(r), to_timestamp(a) FROM unnest("
            "%s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::float8[], %s::float8[]) AS u(e, t, c, ot, oi, od, p, r, a)"
            " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            [list(c) for c in columns],
        ).fetchall()
        return claimed(events, {row[0] for row in rows})

    def _pending(self, conn: Any, limit: int) -> list[InboxEvent]:
        rows = conn.execute(
            "SELECT event_id, type, created, object_type, object_id, order_id, payload,"
            " extract(epoch FROM received_at)::float8, extract(epoch FROM applied_at)::float8"
            f" FROM {self._table} WHERE applied_at IS NULL"
            " ORDER BY created ASC NULLS FIRST, received_at, event_id LIMIT %s",
            (limit,),
        ).fetchall()
        return [InboxEvent(*row) for row in rows]

    def _mark_applied(self, conn: Any, ids: list[str], at: float) -> int:
        return conn.execute(
            f"UPDATE {self._table} SET applied_at = to_timestamp(%s)"
            " WHERE applied_at IS NULL AND event_id = ANY(%s)",
            (at, ids),
        ).rowcount

    def _backlog(self, conn: Any) -> int:
        row = conn.execute(f"SELECT count(*) FROM {self._table} WHERE applied_at IS NULL")
        return int(row.fetchone()[0])

    def _applied(self, conn: Any) -> int:
        row = conn.execute(f"SELECT count(*) FROM {self._table} WHERE applied_at IS NOT NULL")
        return int(row.fetchone()[0])
