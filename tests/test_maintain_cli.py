"""`ogsync maintain` as a user runs it: after real syncs into a lakehouse, fewer files and the
same rows, read back with the format's own reader; nothing to do on DuckDB; one clear line when
a sync holds the lakehouse."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ogsync.destinations.lakehouse import DEFAULT_RETENTION
from ogsync.destinations.lakehouse_lock import acquire
from ogsync.endpoints import ENDPOINTS
from ogsync.simulator.server import RunningSimulator, simulator_process
from ogsync.status import parse_duration
from ogsync.testing.cli import one_line_error
from ogsync.testing.cli import run_ogsync as ogsync

SCHEMA = "ordergroove"
UPKEEP = re.compile(r"^(\w+): (\d+) -> (\d+) files, (\d+) unreferenced files removed$")


@pytest.fixture(scope="module")
def api() -> Iterator[RunningSimulator]:
    with simulator_process(["--records", "800", "--seed", "7"]) as sim:
        yield sim


def env_for(api: RunningSimulator, destination: str) -> dict[str, str]:
    return {
        "OGSYNC_API_KEY": api.api_key,
        "OGSYNC_BASE_URL": api.url,
        "OGSYNC_DESTINATION": destination,
    }


def settings_in(folder: Path) -> Path:
    # Small batches make each sync commit several files; lakehouses keep no history tables.
    (folder / "ogsync.toml").write_text('batch_records = 400\nhistory = "none"\n')
    return folder


class Lake:
    """A lakehouse folder read with its format's own reader, not ogsync's."""

    def __init__(self, fmt: str, root: Path) -> None:
        self.fmt, self.root = fmt, root

    def _iceberg(self, name: str) -> Any:
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = SqlCatalog(
            "ogsync", uri=f"sqlite:///{self.root}/catalog.db", warehouse=str(self.root)
        )
        try:
            return catalog.load_table((SCHEMA, name))
        finally:
            catalog.engine.dispose()

    def files(self, name: str) -> int:
        """Data files the table's latest commit reads."""
        if self.fmt == "delta":
            from deltalake import DeltaTable

            return len(DeltaTable(str(self.root / SCHEMA / name)).file_uris())
        return sum(1 for _ in self._iceberg(name).scan().plan_files())

    def rows(self, name: str) -> pa.Table:
        if self.fmt == "delta":
            from deltalake import DeltaTable

            return DeltaTable(str(self.root / SCHEMA / name)).to_pyarrow_table()
        return self._iceberg(name).scan().to_arrow()

    def parquet_on_disk(self) -> int:
        return sum(1 for _ in self.root.rglob("*.parquet"))


def keys(lake: Lake) -> dict[str, list[Any]]:
    """Each endpoint's keys, sorted (duplicates would show as a longer list)."""
    found = {}
    for ep in ENDPOINTS:
        column = lake.rows(ep.name).column(ep.column_key).to_pylist()
        found[ep.name] = sorted(column, key=str)
    return found


# Iceberg's commits are the slower: its case alone is slow by the marker's measure.
@pytest.mark.parametrize("fmt", ["delta", pytest.param("iceberg", marks=pytest.mark.slow)])
def test_maintain_compacts_and_deletes_old_files_keeping_every_row(
    api: RunningSimulator, tmp_path: Path, fmt: str
) -> None:
    root = tmp_path / "lake"
    cwd = settings_in(tmp_path)
    env = env_for(api, f"{fmt}:///{root}")
    # A full sync, then a full refresh: each endpoint's rows written twice, in small batches.
    for extra in ((), ("--full-refresh",)):
        done = ogsync("sync", "--endpoints", "all", *extra, env=env, cwd=cwd)
        assert done.returncode == 0, done.stderr
    lake = Lake(fmt, root)
    tables = [ep.name for ep in ENDPOINTS] + ["_ogsync_runs", "_ogsync_state"]
    files_before = {name: lake.files(name) for name in tables}
    on_disk_before = lake.parquet_on_disk()
    rows_before = keys(lake)
    assert sum(len(k) for k in rows_before.values()) > 800
    # Rows written twice, and the run log and state once per commit: files no longer read.
    assert on_disk_before > sum(files_before.values())

    result = ogsync("maintain", "--retention", "0h", env=env, cwd=cwd)

    assert result.returncode == 0, result.stderr
    told = {}
    for line in result.stdout.splitlines():
        match = UPKEEP.match(line)
        assert match, f"not a table's line: {line!r}"
        name, before, after, removed = match.groups()
        told[name] = (int(before), int(after), int(removed))
    assert set(tables) <= set(told)
    for name in tables:
        before, after, _ = told[name]
        assert before == files_before[name], name
        assert after == lake.files(name) <= before, name
        assert after <= 1, name  # compacted: these tables are small
    assert sum(removed for _, _, removed in told.values()) > 0
    # With no retention, what is left on disk is exactly what the tables read.
    assert lake.parquet_on_disk() == sum(after for _, after, _ in told.values()) < on_disk_before
    assert keys(lake) == rows_before

    # The data reads the same with ogsync itself, and a sync after maintenance still works.
    again = ogsync("sync", "--endpoints", "all", env=env, cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert keys(lake) == rows_before


def test_maintain_has_nothing_to_do_on_duckdb(tmp_path: Path) -> None:
    result = ogsync("maintain", "--destination", f"duckdb:///{tmp_path / 'w.duckdb'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nothing to maintain: DuckDB keeps its own files"


def test_maintain_a_lakehouse_never_synced_says_so(tmp_path: Path) -> None:
    result = ogsync("maintain", "--destination", f"delta:///{tmp_path / 'lake'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "has no tables yet" in result.stdout
    assert "keeps its own files" not in result.stdout


def test_maintain_while_a_sync_holds_the_lakehouse_exits_1_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    (root / SCHEMA).mkdir(parents=True)
    lock = acquire(str(root / SCHEMA))  # as a running sync holds it
    try:
        result = ogsync("maintain", "--destination", f"iceberg:///{root}", cwd=tmp_path)
    finally:
        lock.release()
    assert result.returncode == 1, result.stderr
    assert "another ogsync run" in one_line_error(result)
    assert result.stdout == ""


def test_a_bad_retention_exits_2_and_a_password_is_never_shown(tmp_path: Path) -> None:
    result = ogsync(
        "maintain", "--destination", "duckdb:///w.duckdb", "--retention", "3", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--retention" in one_line_error(result)
    secret = "pw-never-shown-5f1e"
    result = ogsync(
        "maintain", "--destination", f"postgresql://u:{secret}@127.0.0.1:1/db", cwd=tmp_path
    )
    assert result.returncode == 2
    assert secret not in result.stdout + result.stderr
    assert "***" in one_line_error(result)


def test_the_default_retention_is_the_lakehouses() -> None:
    assert parse_duration("7d") == DEFAULT_RETENTION
