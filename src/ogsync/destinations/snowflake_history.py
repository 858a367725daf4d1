"""History (`<table>_history`) and field rules (`_ogsync_rules`) on Snowflake: what
`sql_history` and `sql_rules` do, in statements Snowflake runs.

The same versions, timelines and rules as there (read those modules for what they mean); what
differs is how it is said:
- JSON text becomes VARIANT with PARSE_JSON (a CAST would store a string), and a version's
  hash is that of the value's JSON as Snowflake writes it (TO_JSON), so the text staged and
  the value stored hash alike;
- no RETURNING or ON CONFLICT: row counts, an UPDATE then an INSERT;
- no index on the history table (standard Snowflake tables have none; it prunes by itself);
- the deletion closing a version is found by a join, not a correlated subquery with a range
  (which Snowflake does not evaluate);
- a rewrite's DDL cannot share its transaction (Snowflake commits before each DDL statement):
  the columns change first, then one transaction rewrites the rows, the payloads and the
  rules. Cut off between the two, the rules still read as the old ones, so syncs stay refused
  and a second `ogsync rewrite` finishes the work (the rows are rewritten from `_raw`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ogsync.destinations import sql_dictionary
from ogsync.destinations.base import (
    CURRENT_VIEW_SUFFIX,
    DELETIONS_TABLE,
    DEPRECATED_VIEW_SUFFIX,
    EVENTS_TABLE,
    quote,
)
from ogsync.destinations.sql_history import (
    HISTORY_COLUMNS,
    history_table,
    insert_new_versions,
    version_names,
)
from ogsync.destinations.sql_rules import (
    RULES_TABLE,
    _refuse_the_impossible,
    _rules,
    changed_events,
    governed_rows,
    rewrite_match,
    rewrite_rejected,
    stored_rules,
)
from ogsync.endpoints import BY_NAME, Endpoint, FieldType
from ogsync.governance import Governance

if TYPE_CHECKING:
    from ogsync.destinations.snowflake import SnowflakeDestination

log = logging.getLogger("ogsync.snowflake")

JSON_TYPES = (FieldType.JSON, FieldType.JSON_TEXT)
TS = "TIMESTAMP_TZ"
# A seeded row with no update time is valid since ever.
EPOCH = "1970-01-01T00:00:00+00:00"


def version_hash(value: str, staged: bool) -> str:
    """The hash of a record's content: its JSON as Snowflake writes it, whether `value` is the
    text staged (parsed first) or the VARIANT stored."""
    variant = f"parse_json({value})" if staged else value
    return f"md5(to_json({variant}))"


def comment_literal(text: str) -> str:
    """A description as a Snowflake string literal (where a backslash escapes the next
    character)."""
    return sql_dictionary.literal(text.replace("\\", "\\\\"))


def described(name: str, kind: str, texts: Mapping[str, str]) -> str:
    """A column's definition with its description: a new table's comments go in with it,
    one statement, where commenting after would take one round trip per column."""
    text = texts.get(name)
    return f"{quote(name)} {kind}" + (f" COMMENT {comment_literal(text)}" if text else "")


def create_history(dest: SnowflakeDestination, ep: Endpoint, known: Mapping[str, set[str]]) -> bool:
    """The history table, or the columns added to the endpoint since (`known`: each table's
    columns, in lower case); True when it is new. Only what is missing is sent: each DDL
    statement is a round trip, and a commit."""
    table = history_table(dest, ep)
    fields = [(f.column, dest.dialect.column_type(f.type)) for f in ep.fields]
    columns = [*fields, ("_raw", dest.dialect.json), *HISTORY_COLUMNS]
    name = f"{ep.name}_history"
    doc = sql_dictionary.endpoint_docs(ep)[name]
    texts = sql_dictionary.column_texts(doc)
    if name not in known:
        dest.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            f"({', '.join(described(n, k, texts) for n, k in columns)}) "
            f"COMMENT = {comment_literal(doc.description)}"
        )
        return True
    for column, kind in columns:
        if column.lower() not in known[name]:
            dest.execute(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {described(column, kind, texts)}"
            )
    return False


def _versions(
    dest: SnowflakeDestination, ep: Endpoint, source: str, staged: bool, synced: str, run: str
) -> str:
    """The rows of `source` as versions, in `version_names` order (the first parameter: the
    time of a version with no update time)."""
    sql = dest.table_sql(ep)
    typed = [
        f"parse_json({quote(f.column)}) AS {quote(f.column)}"
        if staged and f.type in JSON_TYPES
        else quote(f.column)
        for f in ep.fields
    ]
    upd = quote(sql.update_column) if sql.update_column else "NULL"
    raw = "parse_json(_raw)" if staged else "_raw"
    return (
        f"SELECT {', '.join(typed)}, {raw} AS _raw, coalesce({upd}, CAST(? AS {TS})) AS "
        f"_valid_from, {version_hash('_raw', staged)} AS _version_hash, _updated_latest, "
        f"{synced} AS _synced_at, {run} AS _run_id FROM {source}"
    )


def add_versions(
    dest: SnowflakeDestination, ep: Endpoint, staged: str, synced_at: datetime, run_id: str
) -> None:
    """Keep the versions of a staged batch not yet kept, and redraw their keys' timelines."""
    versions = _versions(dest, ep, staged, True, f"CAST(? AS {TS})", "CAST(? AS VARCHAR)")
    insert_new_versions(dest, ep, versions, [synced_at, synced_at, run_id])
    redraw(dest, ep, f"SELECT {quote(ep.column_key)} FROM {staged}")


def seed(dest: SnowflakeDestination, ep: Endpoint) -> int:
    """History turned on for an endpoint with rows: each current row becomes a version."""
    table = history_table(dest, ep)
    current = dest.table_sql(ep).table
    versions = _versions(dest, ep, current, False, "_synced_at", "_run_id")
    seeded = dest.count(f"INSERT INTO {table} ({version_names(ep)}) {versions}", [EPOCH])
    if seeded:
        redraw(dest, ep, f"SELECT {quote(ep.column_key)} FROM {current}")
    return seeded


def redraw(dest: SnowflakeDestination, ep: Endpoint, keys: str, params: Sequence[Any] = ()) -> None:
    """`sql_history.redraw`: each version of the keys `keys` selects lasts until the next,
    or a deletion between them; the last open one is current. Versions stamped in an hour the
    API's zone repeats are put in the order they were fetched."""
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
    upto = f"({block} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    deletions = (
        f"SELECT record_id AS k, deleted_at AS gone_at, reason FROM {dest.s}.{DELETIONS_TABLE} "
        f"WHERE endpoint = ? UNION ALL SELECT {key}, _deleted_at, _deleted_reason "
        f"FROM {current} WHERE _deleted_at IS NOT NULL AND {key} IN ({keys})"
    )
    timelines = (
        f"WITH d AS ({deletions}), "
        f"base AS (SELECT {key} AS k, _version_hash AS vh, _synced_at AS sa, {first} AS f, "
        f"_updated_latest AS l, coalesce(_updated_latest > {first}, FALSE) AS amb "
        f"FROM {table} WHERE {key} IN ({keys})), "
        # In an ambiguous hour, a version that reads earlier than one fetched before it is the
        # second occurrence, and so is every one fetched after it.
        f"peak AS (SELECT *, max(f) OVER {upto} AS top FROM base), "
        f"flagged AS (SELECT *, CASE WHEN amb THEN f < lag(top) OVER ({block}) END AS dropped "
        "FROM peak), "
        "eff AS (SELECT *, CASE WHEN amb AND max(CASE WHEN dropped THEN 1 ELSE 0 END) OVER "
        f"{upto} = 1 THEN l ELSE f END AS es FROM flagged), "
        "v AS (SELECT k, vh, sa, es AS vf, lead(es) OVER (PARTITION BY k ORDER BY es, sa, vh) "
        "AS nxt FROM eff), "
        # The first deletion within a version's lifetime closes it (the least reason first).
        "hits AS (SELECT v.*, d.gone_at, d.reason, row_number() OVER (PARTITION BY v.k, v.vh, "
        "v.sa ORDER BY d.gone_at NULLS LAST, d.reason) AS n FROM v LEFT JOIN d ON d.k = v.k "
        "AND d.gone_at >= v.vf AND (v.nxt IS NULL OR d.gone_at < v.nxt)) "
        "SELECT k, vh, sa, vf, nxt, gone_at AS del, reason AS why FROM hits WHERE n = 1"
    )
    dest.execute(
        f"UPDATE {table} AS h SET _valid_from = c.vf, _valid_to = coalesce(c.del, c.nxt), "
        "_is_current = (c.nxt IS NULL AND c.del IS NULL), _closed_reason = c.why "
        f"FROM ({timelines}) AS c "
        f"WHERE h.{key} = c.k AND h._version_hash = c.vh AND h._synced_at = c.sa",
        [ep.name, *params, *params],
    )


# -- field rules -------------------------------------------------------------------------


def record_rules(dest: SnowflakeDestination, endpoints: Iterable[Endpoint]) -> None:
    now = datetime.now(UTC)
    stored = stored_rules(dest)
    for ep in endpoints:
        if stored.get(ep.name) == ep.rules:
            continue
        table = f"{dest.s}.{RULES_TABLE}"
        moved = dest.count(
            f"UPDATE {table} SET rules = ?, recorded_at = CAST(? AS {TS}) WHERE endpoint = ?",
            [ep.rules, now, ep.name],
        )
        if not moved:
            dest.execute(
                f"INSERT INTO {table} (endpoint, rules, recorded_at) "
                f"VALUES (?, ?, CAST(? AS {TS}))",
                [ep.name, ep.rules, now],
            )


def rewrite(dest: SnowflakeDestination, governance: Governance) -> list[str]:
    """`sql_rules.rewrite` on Snowflake: the columns first, then the rows in one transaction."""
    stored = stored_rules(dest)
    tables = dest.existing_tables()
    changes: list[tuple[Endpoint, Endpoint, str, set[str], set[str]]] = []
    for plain in BY_NAME.values():
        ep = governance.endpoint(plain)
        before = stored.get(ep.name, "")
        if before == ep.rules or ep.name not in tables:
            continue
        old, new = _rules(before), _rules(ep.rules)
        _refuse_the_impossible(ep, old, new)  # all of them, before anything changes
        excluded = set(new["exclude"]) - set(old["exclude"])
        hashed = set(new["hash"]) - set(old["hash"])
        changes.append((ep, plain, before, excluded, hashed))
    if not changes:
        return []
    # Each table's rows under the new rules, read before any column changes.
    rows: list[tuple[Endpoint, str, pa.Table, dict[str, str]]] = []
    for ep, plain, _, excluded, hashed in changes:
        targets = [dest.table_sql(ep).table]
        if f"{ep.name}_history" in tables:
            targets.append(history_table(dest, ep))
        for table in targets:
            rows.append((ep, table, *governed_rows(dest, ep, table, governance, hashed)))
        for suffix in (CURRENT_VIEW_SUFFIX, DEPRECATED_VIEW_SUFFIX):
            dest.execute(f"DROP VIEW IF EXISTS {dest.s}.{quote(ep.name + suffix)}")
        for table in targets:
            for name in sorted(excluded | hashed):
                column = quote(plain.field_named(name).column)
                dest.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {column}")
                if name in hashed:
                    dest.execute(f"ALTER TABLE {table} ADD COLUMN {column} VARCHAR")
        dest.recreate(ep)
    events = changed_events(dest, governance)
    staging = [changed for *_, changed, _ in rows] + [events]
    with dest.staged_tables("rewrite", staging) as relations, dest.transaction():
        for (ep, table, changed, hashed_columns), relation in zip(rows, relations, strict=False):
            if not changed.num_rows:
                continue
            sets = ["_raw = parse_json(r.raw)"]
            sets += [f"{quote(column)} = r.{staged}" for staged, column in hashed_columns.items()]
            dest.execute(
                f"UPDATE {table} AS t SET {', '.join(sets)} FROM {relation} AS r "
                f"WHERE {rewrite_match(ep, table)}"
            )
            if table.endswith('_history"'):
                dest.execute(f"UPDATE {table} SET _version_hash = {version_hash('_raw', False)}")
        if events.num_rows:
            dest.execute(
                f"UPDATE {dest.s}.{EVENTS_TABLE} AS t SET payload = parse_json(r.p) "
                f"FROM {relations[-1]} AS r WHERE t.event_id = r.k"
            )
        rewrite_rejected(dest, governance)
        record_rules(dest, [governance.endpoint(ep) for ep in BY_NAME.values()])
    return [
        f"{ep.name}: {Governance.described(before)} -> {Governance.described(ep.rules)}"
        for ep, _, before, _, _ in changes
    ]
