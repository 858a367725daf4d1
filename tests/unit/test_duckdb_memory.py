"""DuckDB's memory limit: read, and raised when a statement needs more."""

from __future__ import annotations

import duckdb
import pytest

from ogsync.destinations.duckdb_memory import (
    keep_headroom,
    memory_limit,
    out_of_memory,
    setting_bytes,
    with_memory,
)


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
    assert (memory_limit(conn) or 0) > 8 * 2**20
    assert "DuckDB needed more memory" in caplog.text


def keyed_table(tmp_path) -> duckdb.DuckDBPyConnection:
    """A file with a keyed table `t`, under a 16 MB limit, checkpointed only when asked."""
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    for setting in ("memory_limit = '16MB'", "threads = 1", "checkpoint_threshold = '1GB'"):
        conn.execute(f"SET {setting}")
    conn.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, raw VARCHAR)")
    return conn


def test_a_commit_out_of_memory_runs_again_with_more(tmp_path) -> None:
    """A plain INSERT into a keyed table meets the limit only as it commits, which DuckDB
    tells as a failed transaction: that too is out of memory to `with_memory`, so the batch
    runs again (with more memory, if it fails again; whether the rolled-back batch fits at
    the same limit on its second try varies, so only the first failure is asserted)."""
    conn = keyed_table(tmp_path)

    def load(start: int) -> None:
        conn.begin()
        try:
            conn.execute(
                "INSERT INTO t SELECT md5(i::VARCHAR), repeat('x', 400) FROM range(?, ?) r(i)",
                [start, start + 5000],
            )
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    start = 0
    with pytest.raises(duckdb.TransactionException, match="Failed to commit") as failed:
        for start in range(0, 2_000_000, 5000):  # `start` is left where it failed
            load(start)
    assert out_of_memory(failed.value)
    with_memory(conn, lambda: load(start))
    keep_headroom(conn)  # as the loader does before a checkpoint, which DuckDB fails fatally
    conn.execute("CHECKPOINT")  # and the file is whole
    ((count,),) = conn.execute("SELECT count(*) FROM t").fetchall()
    assert count == start + 5000


def test_a_checkpoint_gets_twice_its_key_indexes_in_memory(tmp_path, caplog) -> None:
    """DuckDB fails a checkpoint that runs out of memory fatally (the database is closed for
    the run), so before one the key indexes, which it holds whole, are kept under half the
    limit."""
    conn = keyed_table(tmp_path)
    for start in range(0, 125_000, 5000):  # keys in batches, as a load commits them
        conn.execute(
            "INSERT INTO t SELECT md5(i::VARCHAR), 'x' FROM range(?, ?) r(i)", [start, start + 5000]
        )

    def index_bytes() -> int:
        ((used,),) = conn.execute(
            "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'ART_INDEX'"
        ).fetchall()
        return int(used)

    assert index_bytes() * 2 > (memory_limit(conn) or 0)  # the case at hand
    keep_headroom(conn)
    assert index_bytes() * 2 <= (memory_limit(conn) or 0) and "limit raised" in caplog.text
    conn.execute("CHECKPOINT")
    ((count,),) = conn.execute("SELECT count(*) FROM t").fetchall()
    assert count == 125_000
