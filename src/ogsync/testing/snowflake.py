"""A local Snowflake for tests: fakesnow's server (an emulator over DuckDB), which the real
`snowflake-connector-python` talks to over HTTP.

    with emulated_snowflake() as sf:
        url = sf.url("OGSYNC")   # snowflake://ogsync@emulator/OGSYNC?host=127.0.0.1&port=...

The server runs in a process of its own (`python -m ogsync.testing.snowflake --port P`), on
127.0.0.1, so that its work runs beside the test's rather than sharing one interpreter. Routes
under `/__ogsync__/` let a test end a session the way Snowflake does when it aborts one (its
open transaction rolls back, and its client must log in again). Any password is accepted.

What the emulator gets wrong is listed in the README (Snowflake); one thing is fixed here:
fakesnow 0.12.1 sends a NULL timestamp back as 1970-01-01 (its Arrow structs carry no null
mask), which would turn every empty checkpoint into a date.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from ogsync.destinations.base import quote

__all__ = ["SnowflakeEmulator", "emulated_snowflake"]

USER, ACCOUNT = "ogsync", "emulator"
CONTROL = "/__ogsync__"


@dataclass
class SnowflakeEmulator:
    host: str
    port: int

    def url(self, database: str, **options: str | int) -> str:
        query = {"host": self.host, "port": self.port, "protocol": "http", **options}
        return f"snowflake://{USER}@{ACCOUNT}/{database}?{urlencode(query)}"

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method, f"http://{self.host}:{self.port}{CONTROL}{path}", json=body, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def sessions(self) -> set[str]:
        return set(self._control("GET", "/sessions"))

    def end_session(self, token: str) -> bool:
        """End a session as Snowflake does when it aborts one: its transaction rolls back, and
        its client must log in again. False if there was no such session."""
        return bool(self._control("POST", "/end", {"tokens": [token]}))

    def end_sessions_except(self, keep: set[str]) -> int:
        return int(self._control("POST", "/end", {"tokens": sorted(self.sessions() - keep)}))

    def forget_results(self) -> None:
        """fakesnow keeps every result for RESULT_SCAN; a long test session need not."""
        self._control("POST", "/forget")


@contextlib.contextmanager
def emulated_snowflake(timeout: float = 60) -> Iterator[SnowflakeEmulator]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    emulator = SnowflakeEmulator("127.0.0.1", port)
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ogsync.testing.snowflake", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    emulator.sessions()
                    break
                except httpx.HTTPError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        said = output.read().decode(errors="replace")[-2000:]
                        raise RuntimeError(
                            f"the Snowflake emulator did not start:\n{said}"
                        ) from None
                    time.sleep(0.1)
            yield emulator
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the emulator's own process -------------------------------------------------------------


def _with_nulls(original: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    def timestamp_to_sf_struct(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        struct = original(ts)
        if not ts.null_count:
            return struct
        return pa.StructArray.from_arrays(
            [struct.field(i) for i in range(struct.type.num_fields)],
            fields=list(struct.type),
            mask=pc.is_null(ts),
        )

    return timestamp_to_sf_struct


def _keep_comments() -> None:
    """fakesnow 0.12.1 takes Snowflake's comment statements but loses some of what they say;
    this makes it keep and show them as Snowflake does (`information_schema`'s COMMENT):
    - a column's comment, by `ALTER TABLE|VIEW t ALTER COLUMN c COMMENT '...'` or in a
      CREATE TABLE, CREATE VIEW's column list or ADD COLUMN, is accepted and dropped: it is
      stored here as DuckDB's column comment, which the emulator's `columns` view shows;
    - a table or view comment holding a quote breaks its own bookkeeping statement, one
      replaced by a CREATE OR REPLACE with other properties (COPY GRANTS) becomes the text
      'None', and a view's comment is stored but never shown (its `views` view says NULL);
    - `COMMENT ON COLUMN` is run, then its result described with a statement DuckDB
      cannot parse: it is described as the status row Snowflake answers with.
    """
    import sqlglot
    from sqlglot import exp

    cursor = importlib.import_module("fakesnow.cursor")
    info_schema = importlib.import_module("fakesnow.info_schema")
    transforms = importlib.import_module("fakesnow.transforms")
    fake = cursor.FakeSnowflakeCursor

    dropped_column_comments = transforms.extract_comment_on_columns

    def extract_comment_on_columns(expression: Any) -> Any:
        # Called for every node of a statement: only its root names the table.
        if not isinstance(expression, exp.Alter | exp.Create):
            return dropped_column_comments(expression)
        table = expression.find(exp.Table)
        inline = [
            (column.name, comment.this.this)
            for column in expression.find_all(exp.ColumnDef)
            for constraint in column.args.get("constraints") or ()
            if isinstance(comment := constraint.args.get("kind"), exp.CommentColumnConstraint)
            and isinstance(comment.this, exp.Literal)
        ]
        out = dropped_column_comments(expression)
        comments = [*(out.args.get("col_comments") or ()), *inline]
        if table is not None and comments:
            out.args["col_comments"] = comments
            out.args["ogsync_comment_table"] = table
        return out

    transforms.extract_comment_on_columns = extract_comment_on_columns

    run = fake._execute

    def _execute(self: Any, transformed: Any, params: Any = None) -> None:
        run(self, transformed, params)
        table = transformed.args.get("ogsync_comment_table")
        comments = transformed.args.get("col_comments") or ()
        if table is None or not comments:
            return
        # One call for all of a table's columns: a CREATE TABLE names forty of them.
        parts = (table.catalog or self._conn.database, table.db or self._conn.schema, table.name)
        self._duck_conn.execute(
            ";\n".join(
                f"COMMENT ON COLUMN {'.'.join(map(quote, (*parts, column)))} IS {_literal(text)}"
                for column, text in comments
            )
        )

    fake._execute = _execute

    def insert_table_comment_sql(catalog: str, schema: str, table: str, comment: Any) -> str:
        # (fakesnow's own writes the text unquoted, and None, from a CREATE with other
        # properties but no comment, as the text 'None': Snowflake's CREATE OR REPLACE leaves
        # no comment. Names are kept in upper case and matched so: the emulator keeps a
        # quoted "t" and an unquoted t apart, where Snowflake's sessions (as ogsync sets
        # them) name one table.)
        values = ", ".join(
            "NULL" if v is None else exp.Literal.string(v).sql("duckdb")
            for v in (catalog.upper(), schema.upper(), table.upper(), comment)
        )
        return (
            "INSERT INTO _fs_global._fs_information_schema._fs_tables_ext "
            f"VALUES ({values}) ON CONFLICT (ext_table_catalog, ext_table_schema, "
            "ext_table_name) DO UPDATE SET comment = excluded.comment"
        )

    info_schema.insert_table_comment_sql = insert_table_comment_sql
    replacements = {
        "SQL_CREATE_INFORMATION_SCHEMA_TABLES_VIEW": (
            "    tables.database_name = _fs_tables_ext.ext_table_catalog AND\n"
            "    tables.schema_name = _fs_tables_ext.ext_table_schema AND\n"
            "    tables.table_name = _fs_tables_ext.ext_table_name\n",
            "    upper(tables.database_name) = _fs_tables_ext.ext_table_catalog AND\n"
            "    upper(tables.schema_name) = _fs_tables_ext.ext_table_schema AND\n"
            "    upper(tables.table_name) = _fs_tables_ext.ext_table_name\n",
        ),
        "SQL_CREATE_INFORMATION_SCHEMA_VIEWS_VIEW": (
            "    null::VARCHAR as COMMENT\nfrom duckdb_views\n",
            "    ext.comment as COMMENT\nfrom duckdb_views\n"
            "left join _fs_global._fs_information_schema._fs_tables_ext as ext\n"
            "  on ext.ext_table_catalog = upper(database_name)\n"
            "  and ext.ext_table_schema = upper(schema_name)\n"
            "  and ext.ext_table_name = upper(view_name)\n",
        ),
    }
    for name, (before, after) in replacements.items():
        template = getattr(info_schema, name)
        if before not in template.template:
            raise RuntimeError(f"fakesnow's {name} changed: see _keep_comments")
        setattr(info_schema, name, type(template)(template.template.replace(before, after)))

    describe = fake._describe_last_sql
    status = sqlglot.parse_one("DESCRIBE SELECT 'Statement executed successfully.' AS status")

    described: dict[str, list] = {}

    def _describe_last_sql(self: Any) -> list:
        if isinstance(self._last_transformed, exp.Comment):
            with self._conn.cursor() as other:
                other._execute(status)
                return other.fetchall()
        # fakesnow answers a statement that returns no rows of its own (CREATE, INSERT,
        # COMMIT...) with a SELECT of constants, and then describes it in DuckDB: the columns
        # depend only on the names and the kinds of the constants, so each shape is described
        # once.
        shape = _constant_shape(self._last_sql) if self._last_params is None else None
        if shape is None:
            return describe(self)
        if shape not in described:
            described[shape] = describe(self)
        return described[shape]

    fake._describe_last_sql = _describe_last_sql


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# fakesnow's answers to statements without rows of their own: constants under fixed names
# (`SELECT 'Table T successfully created.' as 'status'`, `SELECT 3 as 'number of rows
# inserted', ...`).
_CONSTANT = r"(?:'(?:[^']|'')*'|\d+) as '?[a-z_ -]+'?"
_CONSTANTS = re.compile(rf"SELECT {_CONSTANT}(?:, {_CONSTANT})*")
_TEXT = re.compile(r"'(?:[^']|'')*'(?= as )")
_NUMBER = re.compile(r"(?<=[ ,])\d+(?= as )")


def _constant_shape(sql: str | None) -> str | None:
    """The statement with its texts emptied and its numbers told only by the integer type
    DuckDB gives them, when it selects nothing but constants; else None."""
    if sql is None or not _CONSTANTS.fullmatch(sql):
        return None
    shape = _TEXT.sub("''", sql)
    return _NUMBER.sub(lambda n: "0" if int(n.group()) < 2**31 else str(2**62), shape)


def _describe_any_case() -> None:
    """The emulator ignores QUOTED_IDENTIFIERS_IGNORE_CASE, so the tables ogsync names in
    quoted lower case stay lower case, where Snowflake keeps them in upper case. A client
    naming them unquoted (dbt: `describe table DB.og.orders`, read as OG.ORDERS) then finds
    them in every statement but DESCRIBE, which compares names exactly: here it ignores
    case, as the rest of the emulator does."""
    transforms = importlib.import_module("fakesnow.transforms.transforms")
    template = transforms.SQL_DESCRIBE_TABLE.template
    exact = (
        "WHERE table_catalog = '${catalog}' AND table_schema = '${schema}' "
        "AND table_name = '${table}'"
    )
    if exact not in template:
        raise RuntimeError("fakesnow's DESCRIBE TABLE changed: see _describe_any_case")
    transforms.SQL_DESCRIBE_TABLE = type(transforms.SQL_DESCRIBE_TABLE)(
        template.replace(
            exact,
            "WHERE upper(table_catalog) = upper('${catalog}') "
            "AND upper(table_schema) = upper('${schema}') "
            "AND upper(table_name) = upper('${table}')",
        )
    )


def _app() -> Any:
    """fakesnow's server app, its NULL timestamps fixed, with the tests' controls."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    arrow = importlib.import_module("fakesnow.arrow")
    arrow.timestamp_to_sf_struct = _with_nulls(arrow.timestamp_to_sf_struct)
    _keep_comments()
    _describe_any_case()
    server = importlib.import_module("fakesnow.server")
    for name in ("fakesnow", "fakesnow.server", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Its translation to DuckDB notes every Snowflake clause it drops (COPY GRANTS, TRANSIENT).
    logging.getLogger("sqlglot").setLevel(logging.ERROR)

    async def sessions(_: Request) -> JSONResponse:
        return JSONResponse(sorted(server.sessions))

    async def end(request: Request) -> JSONResponse:
        ended = 0
        for token in (await request.json())["tokens"]:
            session = server.sessions.pop(token, None)
            if session is not None:
                with contextlib.suppress(Exception):
                    session.close()  # its DuckDB transaction rolls back
                ended += 1
        return JSONResponse(ended)

    async def forget(_: Request) -> JSONResponse:
        server.shared_fs.results_cache.clear()
        return JSONResponse(True)

    server.app.add_route(f"{CONTROL}/sessions", sessions, methods=["GET"])
    server.app.add_route(f"{CONTROL}/end", end, methods=["POST"])
    server.app.add_route(f"{CONTROL}/forget", forget, methods=["POST"])
    return server.app


def main(argv: Sequence[str] | None = None) -> None:
    import warnings

    import uvicorn

    parser = argparse.ArgumentParser(description="fakesnow's server, as ogsync's tests run it")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    uvicorn.run(_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
