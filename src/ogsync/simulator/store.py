"""The simulator's records, in SQLite: one table per endpoint, indexed for keyset paging.

A record is stored as its JSON body (exactly the documented fields, in order) plus the columns
the API filters and sorts on: `sort_ts` (the update time as unix seconds) and one `f_<param>`
column per equality filter of the endpoint table.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from ogsync.endpoints import ENDPOINTS, Endpoint

# Hidden keys a record dict may carry for the store; they never reach the body.
SORT_TS = "_ts"


# Made for every row of every page: a frozen dataclass would set each field slowly.
class Row(NamedTuple):
    id: str
    sort_ts: int
    body: bytes


def _column(param: str) -> str:
    return f"f_{param}"


def _filter_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


class Store:
    def __init__(self, path: str | Path | None = None) -> None:
        """The records in SQLite: in `path`, or else in a file that is removed as soon as it
        is open, so that nothing stays behind however the process ends (a million records
        take close to a gigabyte)."""
        folder = tempfile.TemporaryDirectory(prefix="ogsync-sim-") if path is None else None
        if folder is not None:
            path = Path(folder.name) / "simulator.sqlite"
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        for pragma in (
            "journal_mode=OFF",  # a throwaway database: no crash safety needed
            "synchronous=OFF",
            "temp_store=MEMORY",
            "cache_size=-65536",
            # Rows read through a memory map, not a system call and a copy each: a page of
            # 100 records costs half the CPU. SQLite caps the map at 2 GB, a 2M-record store.
            f"mmap_size={2**31}",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self._create()
        if folder is not None:
            folder.cleanup()  # the open connection keeps the file

    def close(self) -> None:
        self.conn.close()

    def _create(self) -> None:
        for ep in ENDPOINTS:
            cols = "".join(f", {_column(p)}" for p in ep.equality_filters)
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {ep.name} "
                f"(id TEXT PRIMARY KEY, sort_ts INTEGER NOT NULL, body BLOB NOT NULL{cols})"
            )
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS deleted (endpoint TEXT, id TEXT, deleted_at INTEGER, "
            "PRIMARY KEY (endpoint, id))"
        )
        # Versions replaced or deleted since the merchant was generated (tests compare a
        # warehouse's history with them); the current ones are the endpoint tables.
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS versions (endpoint TEXT, id TEXT, sort_ts INTEGER, "
            "body BLOB)"
        )
        self.keeping_versions = False  # not while the generated records go in

    def create_indexes(self) -> None:
        """The paging and filter indexes; built once after the bulk load, which is faster
        than keeping them up to date row by row while a million records go in."""
        for ep in ENDPOINTS:
            self.conn.execute(
                f"CREATE INDEX IF NOT EXISTS {ep.name}_sort ON {ep.name} (sort_ts, id)"
            )
            for p in ep.equality_filters:
                self.conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {ep.name}_{p} "
                    f"ON {ep.name} ({_column(p)}, sort_ts, id)"
                )
        self.conn.execute("ANALYZE")
        self.keeping_versions = True

    # -- writing -------------------------------------------------------------------------

    def put(self, ep: Endpoint, records: Iterable[dict[str, Any]]) -> int:
        """Insert or replace records; each carries `_ts` and its filter fields."""
        names = ep.field_names
        filters = list(ep.equality_filters.items())
        placeholders = ", ".join(["?"] * (3 + len(filters)))
        sql = f"INSERT OR REPLACE INTO {ep.name} VALUES ({placeholders})"
        rows = (
            (
                rec[ep.key],
                rec[SORT_TS],
                orjson.dumps({n: rec[n] for n in names}),
                *(_filter_value(rec.get(field)) for _, field in filters),
            )
            for rec in records
        )
        if self.keeping_versions:
            rows = list(rows)
            self._keep_versions(ep, [r[0] for r in rows])
        cur = self.conn.executemany(sql, rows)
        return cur.rowcount

    def _keep_versions(self, ep: Endpoint, ids: Sequence[str]) -> None:
        self.conn.executemany(
            f"INSERT INTO versions SELECT ?, id, sort_ts, body FROM {ep.name} WHERE id = ?",
            [(ep.name, i) for i in ids],
        )

    def delete(self, ep: Endpoint, ids: Sequence[str], at: int) -> None:
        if self.keeping_versions:
            self._keep_versions(ep, ids)
        self.conn.executemany(f"DELETE FROM {ep.name} WHERE id = ?", [(i,) for i in ids])
        self.conn.executemany(
            "INSERT OR IGNORE INTO deleted VALUES (?, ?, ?)", [(ep.name, i, at) for i in ids]
        )

    def transaction(self) -> sqlite3.Connection:
        """`with store.transaction():` groups writes (the connection is in autocommit)."""
        return _Transaction(self.conn)  # type: ignore[return-value]

    # -- reading -------------------------------------------------------------------------

    def get(self, ep: Endpoint, record_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {_select(ep)} FROM {ep.name} WHERE id = ?", (record_id,)
        ).fetchone()
        return _decode(ep, row) if row else None

    def body(self, ep: Endpoint, record_id: str) -> bytes | None:
        row = self.conn.execute(f"SELECT body FROM {ep.name} WHERE id = ?", (record_id,)).fetchone()
        return row[0] if row else None

    def find(self, ep: Endpoint, **conditions: Any) -> list[dict[str, Any]]:
        """Records whose filter columns match, e.g. `find(ORDERS, customer=c, status=1)`."""
        where = " AND ".join(f"{_column(p)} = ?" for p in conditions) or "1"
        rows = self.conn.execute(
            f"SELECT {_select(ep)} FROM {ep.name} WHERE {where}",
            [_filter_value(v) for v in conditions.values()],
        ).fetchall()
        return [_decode(ep, r) for r in rows]

    def pick(self, ep: Endpoint, fraction: float, where: str = "1", args: Sequence[Any] = ()):
        """A record at about `fraction` of the table's rowid range that matches `where`."""
        (top,) = self.conn.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {ep.name}").fetchone()
        start = int(top * fraction)
        for bound in ("rowid >= ?", "rowid < ?"):
            row = self.conn.execute(
                f"SELECT {_select(ep)} FROM {ep.name} WHERE {bound} AND {where} "
                f"ORDER BY rowid LIMIT 1",
                (start, *args),
            ).fetchone()
            if row:
                return _decode(ep, row)
        return None

    def count(self, ep: Endpoint, where: str = "1", args: Sequence[Any] = ()) -> int:
        (n,) = self.conn.execute(f"SELECT COUNT(*) FROM {ep.name} WHERE {where}", args).fetchone()
        return n

    def page(
        self,
        ep: Endpoint,
        where: Sequence[str],
        args: Sequence[Any],
        *,
        after: tuple[int, str] | None = None,
        before: tuple[int, str] | None = None,
        offset: int = 0,
        limit: int,
    ) -> list[Row]:
        """Rows matching `where`, ordered by (sort_ts, id); keyset bounds are exclusive.

        With `before`, the rows are the ones just before it, still returned in ascending order.
        """
        # The keyset bound goes first: given `sort_ts >= ?` first, SQLite starts the index
        # scan there and walks every row before the cursor, a page's cost growing with its
        # depth (7 ms against 0.08 ms a page near the end of 117,000 items).
        clauses: list[str] = []
        params: list[Any] = []
        if after is not None:
            clauses.append("(sort_ts, id) > (?, ?)")
            params.extend(after)
        if before is not None:
            clauses.append("(sort_ts, id) < (?, ?)")
            params.extend(before)
        clauses += where
        params += args
        order = "DESC" if before is not None else "ASC"
        sql = (
            f"SELECT id, sort_ts, body FROM {ep.name} WHERE {' AND '.join(clauses) or '1'} "
            f"ORDER BY sort_ts {order}, id {order} LIMIT ? OFFSET ?"
        )
        rows = list(map(Row._make, self.conn.execute(sql, (*params, limit, offset))))
        if before is not None:
            rows.reverse()
        return rows

    def count_where(self, ep: Endpoint, where: Sequence[str], args: Sequence[Any]) -> int:
        return self.count(ep, " AND ".join(where) or "1", args)

    def iter_bodies(self, ep: Endpoint, chunk: int = 5000) -> Iterator[bytes]:
        """Every current body, by id, in chunks so that writes may interleave."""
        last = ""
        while True:
            rows = self.conn.execute(
                f"SELECT id, body FROM {ep.name} WHERE id > ? ORDER BY id LIMIT ?", (last, chunk)
            ).fetchall()
            if not rows:
                return
            for _, body in rows:
                yield body
            last = rows[-1][0]

    def versions(self, ep: Endpoint) -> list[tuple[str, int, bytes, int]]:
        """Every version of each record since generation, (id, sort_ts, body, current),
        oldest first per record: those replaced or deleted, then the current one."""
        rows = self.conn.execute(
            f"SELECT id, sort_ts, body, 0 FROM versions WHERE endpoint = ? "
            f"UNION ALL SELECT id, sort_ts, body, 1 FROM {ep.name} ORDER BY 1, 4, 2",
            (ep.name,),
        )
        return rows.fetchall()

    def deleted(self, ep: Endpoint) -> list[tuple[str, int]]:
        return self.conn.execute(
            "SELECT id, deleted_at FROM deleted WHERE endpoint = ? ORDER BY deleted_at, id",
            (ep.name,),
        ).fetchall()


def _hidden(ep: Endpoint) -> list[tuple[str, str]]:
    """(param, field) of filters on values that are not in the body (items' order status)."""
    return [(p, f) for p, f in ep.equality_filters.items() if f not in ep.field_names]


def _select(ep: Endpoint) -> str:
    return ", ".join(["body", "sort_ts", *(_column(p) for p, _ in _hidden(ep))])


def _decode(ep: Endpoint, row: Sequence[Any]) -> dict[str, Any]:
    body, sort_ts, *hidden = row
    rec = orjson.loads(body)
    rec[SORT_TS] = sort_ts
    for (_, field), value in zip(_hidden(ep), hidden, strict=True):
        rec[field] = value
    return rec


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
