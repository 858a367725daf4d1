"""The field rules a SQL warehouse was written with (`_ogsync_rules`), and rewriting what it
holds when they change.

Rows written under one set of rules and read under another would mix plain and hashed values,
or keep a field the merchant has since asked to leave out. So a run whose rules differ from
the warehouse's is refused, until `ogsync rewrite` has brought every stored copy (current and
history tables, `_raw`, stored webhook payloads, dead letters) under the new rules. What can't
be undone is said: a hashed value can't be turned back into the plain one, nor hashed again
with another key, and a field no longer left out is empty in the rows written before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa

from ogsync.destinations.base import (
    CURRENT_VIEW_SUFFIX,
    DEPRECATED_VIEW_SUFFIX,
    EVENTS_TABLE,
    REJECTED_TABLE,
    DestinationError,
    quote,
)
from ogsync.destinations.sql_history import history_table
from ogsync.endpoints import BY_NAME, Endpoint
from ogsync.governance import Governance

if TYPE_CHECKING:
    from ogsync.destinations.sql import SqlDestination

RULES_TABLE = "_ogsync_rules"


class RulesChanged(DestinationError):
    """The settings' field rules are not the ones the warehouse was written with."""


def create_rules_table(dest: SqlDestination) -> None:
    dest.execute(
        f"CREATE TABLE IF NOT EXISTS {dest.s}.{RULES_TABLE} (endpoint VARCHAR PRIMARY KEY, "
        "rules VARCHAR, recorded_at TIMESTAMPTZ)"
    )


def stored_rules(dest: SqlDestination) -> dict[str, str]:
    if RULES_TABLE not in dest.existing_tables():
        return {}
    return dict(dest.execute(f"SELECT endpoint, rules FROM {dest.s}.{RULES_TABLE}"))


def check_rules(dest: SqlDestination, endpoints: Iterable[Endpoint]) -> None:
    """Refuse rules that differ from those the warehouse's rows were written with (a table
    with no rows takes any), before anything is written."""
    stored = stored_rules(dest)
    tables = dest.existing_tables()
    for ep in endpoints:
        before = stored.get(ep.name, "")
        if before == ep.rules or ep.name not in tables:
            continue
        if not dest.execute(f"SELECT 1 FROM {dest.table_sql(ep).table} LIMIT 1"):
            continue
        raise RulesChanged(
            f"{ep.name}: the settings leave out or hash other fields "
            f"({Governance.described(ep.rules)}) than this warehouse was written with "
            f"({Governance.described(before)}); run "
            "`ogsync rewrite` to bring what it holds under the new rules, or restore them"
        )


def record_rules(dest: SqlDestination, endpoints: Iterable[Endpoint]) -> None:
    now = datetime.now(UTC)
    stored = stored_rules(dest)
    for ep in endpoints:
        if stored.get(ep.name) == ep.rules:
            continue
        dest.execute(
            f"INSERT INTO {dest.s}.{RULES_TABLE} VALUES (?, ?, ?) ON CONFLICT (endpoint) "
            "DO UPDATE SET rules = excluded.rules, recorded_at = excluded.recorded_at",
            [ep.name, ep.rules, now],
        )


def rewrite(dest: SqlDestination, governance: Governance) -> list[str]:
    """Bring every stored copy under `governance`'s rules, in one transaction; what was done,
    a line per endpoint. Raises RulesChanged for a change that can't be made."""
    stored = stored_rules(dest)
    tables = dest.existing_tables()
    done: list[str] = []
    with dest.transaction():
        for plain in BY_NAME.values():
            ep = governance.endpoint(plain)
            before = stored.get(ep.name, "")
            if before == ep.rules or ep.name not in tables:
                continue
            old = _rules(before)
            new_excluded = set(_rules(ep.rules)["exclude"]) - set(old["exclude"])
            new_hashed = set(_rules(ep.rules)["hash"]) - set(old["hash"])
            _refuse_the_impossible(ep, old, _rules(ep.rules))
            targets = [dest.table_sql(ep).table]
            if f"{ep.name}_history" in tables:
                targets.append(history_table(dest, ep))
            # Columns can't be dropped from under a view, nor (DuckDB) an index: both are
            # made again below.
            for view in (CURRENT_VIEW_SUFFIX, DEPRECATED_VIEW_SUFFIX):
                dest.execute(f"DROP VIEW IF EXISTS {dest.s}.{quote(ep.name + view)}")
            dest.execute(f"DROP INDEX IF EXISTS {dest.s}.{quote(ep.name + '_history_key')}")
            for table in targets:
                _rewrite_table(dest, ep, plain, table, governance, new_excluded, new_hashed)
            dest.recreate(ep)
            if f"{ep.name}_history" in tables:
                dest.execute(
                    f"UPDATE {history_table(dest, ep)} "
                    f"SET _version_hash = {dest.dialect.content_hash('_raw')}"
                )
            done.append(
                f"{ep.name}: {Governance.described(before)} -> {Governance.described(ep.rules)}"
            )
        if done:
            _rewrite_payloads(dest, governance)
            record_rules(dest, [governance.endpoint(ep) for ep in BY_NAME.values()])
    return done


def _rules(fingerprint: str) -> dict[str, list[str]]:
    if not fingerprint:
        return {"exclude": [], "hash": [], "key": ""}  # type: ignore[dict-item]
    return orjson.loads(fingerprint)


def _refuse_the_impossible(ep: Endpoint, old: dict, new: dict) -> None:
    unhashed = set(old["hash"]) - set(new["hash"])
    if unhashed:
        raise RulesChanged(
            f"{ep.name}: {', '.join(sorted(unhashed))} can't be un-hashed (the plain values "
            "were never stored); keep hashing them, or sync into a new schema"
        )
    if old["hash"] and new["hash"] and old.get("key") and old["key"] != new.get("key"):
        raise RulesChanged(
            f"{ep.name}: the hash key changed, and stored hashes can't be hashed again with "
            "another key; restore the key, or sync into a new schema"
        )


def _rewrite_table(
    dest: SqlDestination,
    ep: Endpoint,
    plain: Endpoint,
    table: str,
    governance: Governance,
    excluded: set[str],
    hashed: set[str],
) -> None:
    """`_raw` under the new rules; newly excluded columns dropped; newly hashed columns
    hashed. Each row is rewritten from its `_raw` (which holds every field as stored)."""
    key = quote(ep.column_key)
    identity = [key, "_raw"] + (["_version_hash"] if table.endswith('_history"') else [])
    rows = dest.execute(f"SELECT {', '.join(identity)} FROM {table}")
    for name in sorted(excluded):
        column = plain.field_named(name).column
        dest.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {quote(column)}")
    for name in sorted(hashed):
        column = plain.field_named(name).column
        dest.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS {quote(column)}")
        dest.execute(f"ALTER TABLE {table} ADD COLUMN {quote(column)} VARCHAR")
    if not rows:
        return
    keys, raws, versions, hashes = [], [], [], {n: [] for n in hashed}
    for row in rows:
        record = orjson.loads(row[1]) if isinstance(row[1], str | bytes) else row[1]  # JSONB
        original = record if isinstance(record, dict) else {}
        governed = governance.record(ep.name, original) if original else original
        keys.append(row[0])
        raws.append(orjson.dumps(governed).decode() if governed else _text(row[1]))
        versions.append(row[2] if len(row) > 2 else "")
        for name in hashed:
            hashes[name].append(governed.get(name) if governed else None)
    staged = pa.table(
        {
            "k": pa.array(keys, pa.string()),
            "v": pa.array(versions, pa.string()),
            "raw": pa.array(raws, pa.string()),
            **{f"h_{i}": pa.array(hashes[n], pa.string()) for i, n in enumerate(sorted(hashed))},
        }
    )
    sets = [f"_raw = CAST(r.raw AS {dest.dialect.json})"]
    sets += [
        f"{quote(plain.field_named(n).column)} = r.h_{i}" for i, n in enumerate(sorted(hashed))
    ]
    match = f"t.{key} = r.k"
    if table.endswith('_history"'):
        match += " AND t._version_hash = r.v"
    with dest.stage("ogsync_rewrite", staged) as relation:
        dest.execute(
            f"UPDATE {table} AS t SET {', '.join(sets)} FROM {relation} AS r WHERE {match}"
        )


def _rewrite_payloads(dest: SqlDestination, governance: Governance) -> None:
    """Stored webhook payloads and dead letters under the new rules."""
    events = dest.execute(f"SELECT event_id, payload FROM {dest.s}.{EVENTS_TABLE}")
    changed = [(k, governance.payload(_text(p)), _text(p)) for k, p in events]
    changed = [(k, after) for k, after, before in changed if after != before]
    if changed:
        staged = pa.table(
            {"k": pa.array([k for k, _ in changed], pa.string()),
             "p": pa.array([p for _, p in changed], pa.string())}
        )  # fmt: skip
        with dest.stage("ogsync_rewrite_events", staged) as relation:
            dest.execute(
                f"UPDATE {dest.s}.{EVENTS_TABLE} AS t SET payload = CAST(r.p AS "
                f"{dest.dialect.json}) FROM {relation} AS r WHERE t.event_id = r.k"
            )
    rejected = dest.execute(f"SELECT source, item_id, payload FROM {dest.s}.{REJECTED_TABLE}")
    for source, item, payload in rejected:  # few: each is a failure someone should look at
        if source == "webhook":
            governed = governance.payload(payload)
        else:
            try:
                record = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            governed = orjson.dumps(governance.record(source, record)).decode()
        if governed != payload:
            dest.execute(
                f"UPDATE {dest.s}.{REJECTED_TABLE} SET payload = ? "
                "WHERE source = ? AND item_id IS NOT DISTINCT FROM ? AND payload = ?",
                [governed, source, item, payload],
            )


def _text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()
