"""Every version of a record, in `<table>_history` (a slowly changing dimension, type 2), for
the SQL warehouses.

A version is a record's key and a hash of its content, update time included
(`_version_hash`: two contents stamped with the same time are two versions), so the same
version read twice (the overlap, a backfill after a sync, a retried batch) adds no row. It is
valid from its own update time (`_valid_from`). A record with no update time (offer profiles)
gets a new version when its content differs from its open version's, valid from when it was
synced. After
each change to a key's versions its timeline is drawn again: each version lasts until the next
one's `_valid_from`, or until a deletion between the two (`_closed_reason`); the last version
not closed by a deletion is current. A version arriving late takes its place in the timeline.

Written in the caller's transaction, with the current table's batch, so the two never
disagree. Versions that came and went between two syncs were never fetched and are not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ogsync.destinations.base import DELETIONS_TABLE, quote
from ogsync.endpoints import Endpoint

if TYPE_CHECKING:
    from ogsync.destinations.sql import SqlDestination

HISTORY_COLUMNS = (
    ("_valid_from", "TIMESTAMPTZ"),
    ("_valid_to", "TIMESTAMPTZ"),
    ("_is_current", "BOOLEAN"),
    ("_closed_reason", "VARCHAR"),
    ("_version_hash", "VARCHAR"),
    ("_updated_latest", "TIMESTAMPTZ"),
    ("_synced_at", "TIMESTAMPTZ"),
    ("_run_id", "VARCHAR"),
)


def history_table(dest: SqlDestination, ep: Endpoint) -> str:
    return f"{dest.s}.{quote(ep.name + '_history')}"


def create_history(dest: SqlDestination, ep: Endpoint) -> bool:
    """Create the history table (and columns added to the endpoint since); True when it is
    new, so the caller may seed it."""
    table = history_table(dest, ep)
    new = f"{ep.name}_history" not in dest.existing_tables()
    fields = [(f.column, dest.dialect.column_type(f.type)) for f in ep.fields]
    columns = [*fields, ("_raw", dest.dialect.raw_type), *HISTORY_COLUMNS]
    dest.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{quote(n)} {k}' for n, k in columns)})"
    )
    for name, kind in columns:
        dest.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {quote(name)} {kind}")
    key = quote(ep.column_key)
    index = quote(ep.name + "_history_key")
    if dest.dialect.key_lookups:
        dest.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({key})")
    else:  # a warehouse made before this knew better sheds its index
        dest.execute(f"DROP INDEX IF EXISTS {dest.s}.{index}")
    return new


def _select_versions(
    dest: SqlDestination, ep: Endpoint, source: str, synced_at: str, run_id: str
) -> str:
    """The typed columns and version columns of the rows of `source`, in `version_names`
    order (the first parameter: the time of a version with no update time)."""
    sql = dest.table_sql(ep)
    columns = dest.typed_columns(ep)
    upd = quote(sql.update_column) if sql.update_column else "NULL"
    # The record is read as JSON once, for the column and its hash (a PostgreSQL JSONB parse
    # costs more than the rest of the row): OFFSET 0 keeps a planner from copying the cast
    # into both places. The hash is the same as of the text: a cast to JSON keeps DuckDB's
    # text as it is, and PostgreSQL's hash is of the JSONB.
    return (
        f"SELECT {', '.join(columns)}, _ogsync_json AS _raw, "
        f"coalesce({upd}, CAST(? AS TIMESTAMPTZ)) AS _valid_from, "
        f"{dest.dialect.content_hash('_ogsync_json')} AS _version_hash, _updated_latest, "
        f"{synced_at} AS _synced_at, {run_id} AS _run_id FROM (SELECT *, "
        f"{dest.dialect.staged_raw} AS _ogsync_json FROM {source} OFFSET 0) AS r"
    )


def version_names(ep: Endpoint) -> str:
    """The history columns a version is inserted with, in order."""
    names = [quote(f.column) for f in ep.fields]
    names += ["_raw", "_valid_from", "_version_hash", "_updated_latest", "_synced_at", "_run_id"]
    return ", ".join(names)


def add_versions(
    dest: SqlDestination,
    ep: Endpoint,
    staged: str,
    synced_at: object,
    run_id: str,
    *,
    none_kept: bool = False,
    repeats: bool = True,
) -> None:
    """Keep the versions of a staged batch not yet kept, and redraw the timelines of the keys
    that need it. `none_kept`: every key of the batch is new to the current table, so the
    history keeps no version of it (the two are written together) and is not searched.
    `repeats`: some key comes more than once in the batch."""
    at, run = "CAST(? AS TIMESTAMPTZ)", "CAST(? AS VARCHAR)"
    versions = _select_versions(dest, ep, staged, at, run)
    params = [synced_at, synced_at, run_id]
    insert_new_versions(dest, ep, versions, params, checked=not none_kept, repeats=repeats)
    # A version goes in as its key's only one would be drawn: current, valid from its own
    # time. Only the keys with another version or a deletion are drawn again; on a first
    # load that is almost none.
    table = history_table(dest, ep)
    key = quote(ep.column_key)
    current = dest.table_sql(ep).table
    lookups = dest.dialect.key_lookups
    # The keys drawn again: those with another version, in the batch or kept before...
    branches = []
    if none_kept and repeats:  # only the batch itself can hold two versions of a key
        branches.append(f"SELECT {key} FROM {staged} GROUP BY {key} HAVING count(*) > 1")
    elif not none_kept and lookups:
        branches.append(
            f"SELECT DISTINCT s.{key} FROM {staged} AS s WHERE "
            f"(SELECT count(*) FROM {table} AS h WHERE h.{key} = s.{key}) > 1"
        )
    elif not none_kept:
        branches.append(
            f"SELECT s.{key} FROM (SELECT DISTINCT {key} FROM {staged}) AS s "
            f"JOIN {table} AS h ON h.{key} = s.{key} GROUP BY s.{key} HAVING count(*) > 1"
        )
    # ... those a webhook deleted, and those whose current row is soft-deleted.
    branches.append(
        f"SELECT {key} FROM {staged} WHERE {key} IN (SELECT record_id FROM "
        f"{dest.s}.{DELETIONS_TABLE} WHERE endpoint = ?)"
    )
    branches.append(
        f"SELECT s.{key} FROM {staged} AS s WHERE "
        f"(SELECT c._deleted_at FROM {current} AS c WHERE c.{key} = s.{key}) IS NOT NULL"
        if lookups
        else f"SELECT {key} FROM {staged} WHERE {key} IN (SELECT {key} FROM {current} "
        "WHERE _deleted_at IS NOT NULL)"
    )
    keys = " UNION ".join(branches)
    if dest.execute(f"SELECT 1 FROM ({keys}) AS k LIMIT 1", [ep.name]):
        redraw(dest, ep, keys, (ep.name,))


def insert_new_versions(
    dest: SqlDestination,
    ep: Endpoint,
    versions: str,
    params: Sequence[object],
    *,
    checked: bool = True,
    repeats: bool = True,
) -> None:
    """Insert the rows of `versions` (a query, in `version_names` order) that are not kept
    yet, one per key and content, each current until its timeline is drawn, in a statement
    every dialect runs. `checked=False`: none of their keys has a version kept yet;
    `repeats=False`: no key comes twice among them."""
    table = history_table(dest, ep)
    key = quote(ep.column_key)
    names = version_names(ep)
    # Without an update time, going back to an earlier content is a new version: only the
    # open version's content is the same version again.
    same = "" if ep.update_field else "AND h._valid_to IS NULL AND h._closed_reason IS NULL"
    unkept = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS h WHERE h.{key} = v.{key} "
        f"AND h._version_hash = v._version_hash {same})"
        if checked
        else ""
    )
    rows = f"({versions}) AS v {unkept}"
    if repeats:  # one copy of each version (with one row a key, there is none to leave out)
        rows = (
            f"(SELECT v.*, row_number() OVER (PARTITION BY v.{key}, v._version_hash ORDER BY "
            f"v.{key}) AS _first FROM {rows}) AS n WHERE _first = 1"
        )
    dest.execute(
        f"INSERT INTO {table} ({names}, _is_current) SELECT {names}, TRUE FROM {rows}", params
    )


def seed(dest: SqlDestination, ep: Endpoint) -> int:
    """History turned on for an endpoint that already has rows: each current row becomes a
    version, as synced (the ones before it were never seen). Returns how many."""
    table = history_table(dest, ep)
    current = dest.table_sql(ep).table
    versions = _select_versions(dest, ep, current, "_synced_at", "_run_id")
    names = version_names(ep)
    rows = dest.execute(f"INSERT INTO {table} ({names}) {versions} RETURNING 1", [_EPOCH])
    redraw(dest, ep, f"SELECT {quote(ep.column_key)} FROM {current}")
    return len(rows)


_EPOCH = "1970-01-01T00:00:00+00:00"  # a seeded row with no update time: valid since ever


def redraw(dest: SqlDestination, ep: Endpoint, keys: str, params: tuple[object, ...] = ()) -> None:
    """Draw again the timelines of the keys `keys` (a query) selects: each version valid until
    the next, or until a deletion between them; the last open version is current.

    A wall time the API's zone repeats (the hour the clocks go back) is first read as its
    first occurrence. Versions stamped in that hour are ordered as they were fetched (as in
    the current table, the one fetched later is the newer), and once one reads earlier than
    one fetched before it, it and those after it must be the second occurrence.
    """
    table = history_table(dest, ep)
    current = dest.table_sql(ep).table
    key = quote(ep.column_key)
    upd = dest.table_sql(ep).update_column
    first = (
        f"CASE WHEN {quote(upd)} IS NOT NULL THEN {quote(upd)} ELSE _valid_from END"
        if upd
        else "_valid_from"
    )
    block = "PARTITION BY k, amb, date_trunc('hour', f) ORDER BY sa, f, vh"
    deletions = (
        f"SELECT record_id AS k, deleted_at AS at, reason FROM {dest.s}.{DELETIONS_TABLE} "
        f"WHERE endpoint = ? UNION ALL SELECT {key}, _deleted_at, _deleted_reason "
        f"FROM {current} WHERE _deleted_at IS NOT NULL AND {key} IN ({keys})"
    )
    closing = "FROM d WHERE d.k = v.k AND d.at >= v.vf AND (v.nxt IS NULL OR d.at < v.nxt)"
    dest.execute(
        f"WITH d AS ({deletions}), "
        f"base AS (SELECT {key} AS k, _version_hash AS vh, _synced_at AS sa, {first} AS f, "
        f"_updated_latest AS l, coalesce(_updated_latest > {first}, FALSE) AS amb "
        f"FROM {table} WHERE {key} IN ({keys})), "
        f"flagged AS (SELECT *, CASE WHEN amb THEN f < max(f) OVER ({block} ROWS BETWEEN "
        "UNBOUNDED PRECEDING AND 1 PRECEDING) END AS dropped FROM base), "
        "eff AS (SELECT *, CASE WHEN amb AND bool_or(coalesce(dropped, FALSE)) OVER "
        f"({block} ROWS UNBOUNDED PRECEDING) THEN l ELSE f END AS es FROM flagged), "
        "v AS (SELECT k, vh, sa, es AS vf, lead(es) OVER (PARTITION BY k ORDER BY es, sa, vh) "
        "AS nxt FROM eff), "
        f"c AS (SELECT v.*, (SELECT min(d.at) {closing}) AS del, "
        f"(SELECT min(d.reason) {closing} AND d.at = (SELECT min(d2.at) FROM d AS d2 "
        "WHERE d2.k = v.k AND d2.at >= v.vf AND (v.nxt IS NULL OR d2.at < v.nxt))) AS why "
        "FROM v) "
        f"UPDATE {table} AS h SET _valid_from = c.vf, _valid_to = coalesce(c.del, c.nxt), "
        "_is_current = (c.nxt IS NULL AND c.del IS NULL), _closed_reason = c.why "
        f"FROM c WHERE h.{key} = c.k AND h._version_hash = c.vh AND h._synced_at = c.sa",
        [ep.name, *params, *params],
    )
