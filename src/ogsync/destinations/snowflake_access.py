"""`ogsync check` on Snowflake: connect, and try what a sync does first (the schema, a table
written through the warehouse, a view and a temporary stage, each dropped again); for what the
role may not do, the statements that would allow it.

Trying beats reading grants: a role's privileges come through role hierarchies, ownership and
future grants, and a refused statement is the one answer that cannot be misread.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from ogsync.destinations.base import AccessReport, quote
from ogsync.destinations.snowflake_connect import (
    Target,
    connect,
    credentials,
    is_error,
    masked,
    parse_url,
)

TS = "TIMESTAMP_TZ"


# Snowflake's answers when the role may not do something: insufficient privileges, or an
# object it may not see ("does not exist or not authorized").
DENIED_ERRNOS = frozenset({3001, 3003, 2003, 2043})
NO_WAREHOUSE_ERRNOS = frozenset({606})
CHECK_TABLE = '"_ogsync_access_check"'


def _denied(exc: BaseException) -> bool:
    if not is_error(exc):
        return False
    errno = getattr(exc, "errno", None)
    text = str(exc).lower()
    return (
        errno in DENIED_ERRNOS
        or getattr(exc, "sqlstate", None) == "42501"
        or "insufficient privileges" in text
        or "not authorized" in text
    )


def _no_warehouse(exc: BaseException) -> bool:
    errno = getattr(exc, "errno", None)
    return is_error(exc) and (
        errno in NO_WAREHOUSE_ERRNOS or "no active warehouse" in str(exc).lower()
    )


def check_access(url: str, schema: str) -> AccessReport:
    """Connect, and try what a sync does first: the schema, a table (written through the
    warehouse), a view and a temporary stage in it, each dropped again."""
    target = parse_url(url)
    creds = credentials()
    conn = connect(target, creds, url)

    def run(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, list(params) or None)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    try:
        return probe_access(run, target, schema, url)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def probe_access(
    run: Callable[..., list[tuple]], target: Target, schema: str, url: str
) -> AccessReport:
    """What `run` (one statement on a session) may do, as `check_access` reports it."""
    (user, role, database), *_ = run("SELECT current_user(), current_role(), current_database()")
    role = _ident(target.role or role or "<ROLE>")
    db = _ident(target.database)
    sch = f"{db}.{_ident(schema)}"
    wh = _ident(target.warehouse) if target.warehouse else "<WAREHOUSE>"
    found = [f"connected as {user} with role {role}"]
    missing: list[str] = []
    grants: list[str] = []
    if not database:
        missing.append(f"database {db} does not exist, or role {role} may not use it")
        grants.append(f"GRANT USAGE ON DATABASE {db} TO ROLE {role};")
        return _report(url, found, missing, grants)
    s = quote(schema)
    (exists,) = run(
        "SELECT count(*) FROM information_schema.schemata WHERE upper(schema_name) = upper(?)",
        [schema],
    )[0]
    if exists:
        found.append(f"schema {sch} exists")
    else:
        try:
            run(f"CREATE SCHEMA IF NOT EXISTS {s}")
            found.append(f"created schema {sch} (as the first sync would)")
        except Exception as exc:
            if not _denied(exc):
                raise
            missing.append(f"role {role} may not create schema {sch}")
            grants.append(f"GRANT USAGE, CREATE SCHEMA ON DATABASE {db} TO ROLE {role};")
            return _report(url, found, missing, grants)
    view = f'{s}."_ogsync_access_check_view"'
    # (what, the privilege it takes, the statement); a step after a refused one that needs
    # it (writing to the table it could not make) is not tried.
    table = f"{s}.{CHECK_TABLE}"
    steps = [
        ("create tables", "CREATE TABLE", f"CREATE TABLE IF NOT EXISTS {table} (checked_at {TS})"),
        ("write through a warehouse", "", f"INSERT INTO {table} SELECT current_timestamp()"),
        ("create views", "CREATE VIEW", f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {table}"),
        ("create stages to load through", "CREATE STAGE",
         f'CREATE TEMPORARY STAGE IF NOT EXISTS {s}."_ogsync_access_check_stage"'),
    ]  # fmt: skip
    needed: list[str] = []
    table_made = True
    for what, privilege, statement in steps:
        if not table_made and table in statement:
            continue
        try:
            run(statement)
            found.append(f"role {role} may {what} in {sch}")
        except Exception as exc:
            if _no_warehouse(exc):
                missing.append(f"no usable warehouse ({target.warehouse or 'none named'})")
                grants.append(f"GRANT USAGE ON WAREHOUSE {wh} TO ROLE {role};")
            elif _denied(exc):
                missing.append(f"role {role} may not {what} in {sch}")
                needed += [privilege] if privilege else []
            else:
                raise
            table_made = table_made and privilege != "CREATE TABLE"
    for statement in (f"DROP VIEW IF EXISTS {view}", f"DROP TABLE IF EXISTS {table}"):
        with contextlib.suppress(Exception):
            run(statement)
    if needed:
        grants.append(f"GRANT USAGE, {', '.join(needed)} ON SCHEMA {sch} TO ROLE {role};")
    return _report(url, found, missing, grants)


def _ident(name: str) -> str:
    """A name as a GRANT statement for a person to run shows it: as Snowflake resolves it."""
    upper = name.upper()
    return upper if re.fullmatch(r"[A-Z_][A-Z0-9_$]*", upper) else quote(upper)


def _report(url: str, found: list[str], missing: list[str], grants: list[str]) -> AccessReport:
    return AccessReport(masked(url), tuple(found), tuple(missing), tuple(grants))
