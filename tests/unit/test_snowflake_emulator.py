"""The Snowflake emulator describes each shape of fakesnow's constant answers once: a shape
must be described exactly as every statement of that shape is."""

from __future__ import annotations

import duckdb
import fakesnow.cursor as fakesnow_cursor
import pytest

from ogsync.testing.snowflake import _constant_shape


def described(sql: str) -> list[tuple]:
    return duckdb.connect().execute(f"DESCRIBE {sql}").fetchall()


ANSWERS = [
    fakesnow_cursor.SQL_SUCCESS,
    *(
        fakesnow_cursor.SQL_CREATED_TABLE.substitute(name=name)
        for name in ("OGSYNC.S.ORDERS", '"quoted"', "")
    ),
    fakesnow_cursor.SQL_DROPPED.substitute(name="OGSYNC.S._OGSYNC_X"),
    *(fakesnow_cursor.SQL_INSERTED_ROWS.substitute(count=n) for n in (0, 7, 2**31 - 1, 2**31)),
    *(fakesnow_cursor.SQL_UPDATED_ROWS.substitute(count=n) for n in (1, 5_000_000_000)),
    fakesnow_cursor.SQL_DELETED_ROWS.substitute(count=3),
]


@pytest.mark.parametrize("sql", ANSWERS)
def test_a_constant_answer_is_described_as_its_shape(sql: str) -> None:
    shape = _constant_shape(sql)
    assert shape is not None, sql
    assert described(shape) == described(sql)


def test_answers_differing_only_in_text_share_a_shape_and_numbers_by_their_type() -> None:
    created = fakesnow_cursor.SQL_CREATED_TABLE
    assert _constant_shape(created.substitute(name="A")) == _constant_shape(
        created.substitute(name="B.C")
    )
    inserted = fakesnow_cursor.SQL_INSERTED_ROWS
    small, large = (_constant_shape(inserted.substitute(count=n)) for n in (3, 2**40))
    assert small == _constant_shape(inserted.substitute(count=2**31 - 1))
    assert small != large  # an INTEGER and a BIGINT


@pytest.mark.parametrize(
    "sql",
    [
        None,
        "SELECT 1 as 'x' FROM t",
        "SELECT a as 'x'",
        "SELECT ? as 'x'",
        "SELECT 'a' as 'x'; DROP TABLE t",
        "select count(*) from information_schema.tables",
        # (fakesnow writes a name into its answer as it is: one with a quote breaks it)
        fakesnow_cursor.SQL_CREATED_TABLE.substitute(name="it's"),
    ],
)
def test_anything_else_is_described_by_duckdb_each_time(sql: str | None) -> None:
    assert _constant_shape(sql) is None
