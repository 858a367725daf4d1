"""DuckDB's memory limit: read, and raised when a statement needs more."""

from __future__ import annotations

import duckdb
import pytest

from ogsync.destinations.duckdb_memory import setting_bytes, with_memory


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("244.1 MiB", int(244.1 * 2**20)),
        ("1.5 GB", 1_500_000_000),
        ("512 bytes", 512),
        ("lots", None),
    ],
)
def test_a_memory_setting_reads_in_bytes(setting: str, expected: int | None) -> None:
    assert setting_bytes(setting) == expected


def test_a_statement_out_of_memory_runs_again_with_more(caplog: pytest.LogCaptureFixture) -> None:
    conn = duckdb.connect()
    conn.execute("SET memory_limit = '4MB'")
    conn.execute("CREATE TABLE t AS SELECT repeat('x', 100) || i AS s FROM range(300000) t(i)")
    query = "SELECT length(string_agg(s, ',')) FROM t"
    with pytest.raises(duckdb.OutOfMemoryException):
        conn.execute(query).fetchall()
    ((length,),) = with_memory(conn, lambda: conn.execute(query).fetchall())
    assert length > 300_000 * 100
    (limit,) = conn.execute("SELECT current_setting('memory_limit')").fetchone()  # type: ignore[misc]
    assert setting_bytes(limit) > 8 * 2**20
    assert "DuckDB needed more memory" in caplog.text
