"""Benchmark: a full sync from the simulator into a warehouse, by hand.

Starts `ogsync simulator serve` as its own process, runs `ogsync sync --endpoints all` as
another, and reports records/s, requests, the sync's peak memory, the CPU seconds (user +
system) each process spent on the full sync (per 100,000 records, and the simulator's per
page: on a busy machine these move far less than wall time), and the ratio of wall time
to the latency-bound limit (each endpoint's pages times the latency, endpoints placed on the
workers as well as possible), and again at the time a lone request takes the simulator to
answer (the latency plus its HTTP server's own work). Then an incremental run with no
changes, which should make one request per incremental endpoint. For a lakehouse (delta,
iceberg), then `maintain` with no retention: the data files the tables read before and
after, and the files it deleted.

    .venv/bin/python bench/sync.py --records 1000000
    .venv/bin/python bench/sync.py --records 200000 --latency-ms 50
    .venv/bin/python bench/sync.py --records 100000 --destination delta
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import httpx
import psycopg
import pyarrow

from ogsync.client import API_VERSION_HEADER, PAGE_SIZE
from ogsync.endpoints import ENDPOINTS
from ogsync.maintenance import Maintenance, maintain
from ogsync.simulator.server import simulator_process
from ogsync.testing.cli import clean_env
from ogsync.testing.postgres import throwaway_postgres
from ogsync.testing.proc import cpu_seconds
from ogsync.testing.sim_control import SimControl

WORKERS = 5
SCHEMA = "ordergroove"  # the settings' default, which the bench leaves alone
LAKEHOUSES = ("delta", "iceberg")
# Each warehouse's targets at 1,000,000 records: records/s, peak MB of the sync.
TARGETS = {
    "duckdb": (40_000, 250),
    "postgresql": (30_000, 250),
    "delta": (20_000, 400),
    "iceberg": (20_000, 400),
}


def run_sync(
    env: dict[str, str], cwd: Path, command: tuple[str, ...] = ("sync",)
) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS in MB, exit code, CPU seconds) of one
    `ogsync COMMAND --endpoints all`."""
    log = cwd / "sync.log"
    start = time.perf_counter()
    with log.open("ab") as sink:  # a file, not a pipe: nobody has to drain it
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ogsync",
                *command,
                "--endpoints",
                "all",
                "--log-format",
                "json",
            ],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        # The kernel's own high-water mark, to the very end (polling could miss a last peak).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    peak = usage.ru_maxrss / 1024  # kilobytes on Linux
    if proc.returncode:
        sys.stderr.write(log.read_text()[-2000:])
    return wall, peak, proc.returncode, usage.ru_utime + usage.ru_stime


def latency_bound(pages: dict[str, int], latency_s: float, workers: int = WORKERS) -> float:
    """The makespan of endpoints (pages x latency) placed largest first on `workers`."""
    loads = [0.0] * workers
    for count in sorted(pages.values(), reverse=True):
        heapq.heapreplace(loads, loads[0] + count * latency_s)
    return max(loads)


def lone_answer_s(url: str, api_key: str, requests: int = 20) -> float:
    """How long one request alone takes the simulator to answer (median), asked as the sync
    asks for a page: the latency it was given plus its HTTP server's own work, which no
    client can save. The latency bound counts the latency alone."""
    times = []
    headers = {"x-api-key": api_key, API_VERSION_HEADER: "2"}
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(requests):
            start = time.perf_counter()
            client.get("/items/", params={"page_size": str(PAGE_SIZE)}).raise_for_status()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--destination",
        default=None,
        help="a warehouse URL; 'postgresql' starts a throwaway server; 'duckdb' (the default), "
        "'delta' or 'iceberg' a fresh one in the bench's temporary folder",
    )
    parser.add_argument(
        "--history",
        default=None,
        help="the history setting (default, all, none or names); default: the settings' "
        "default, none for a lakehouse (it keeps no history tables)",
    )
    parser.add_argument(
        "--requests-per-minute",
        type=int,
        default=1_000_000,
        help="the sync's rate budget (the real API allows 6,000)",
    )
    parser.add_argument(
        "--backfill-window",
        choices=["year", "month", "week", "day"],
        help="run `ogsync backfill` of the whole history in these windows instead of a sync",
    )
    parser.add_argument("--batch-records", type=int, default=5000, help="records per batch")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ogsync-bench-"))
    if args.destination == "postgresql":
        with throwaway_postgres() as server:
            bench(args, workdir, server.url)
    elif args.destination in LAKEHOUSES:
        bench(args, workdir, f"{args.destination}:///{workdir / 'lake'}")
    elif args.destination in (None, "duckdb"):
        bench(args, workdir, f"duckdb:///{workdir / 'bench.duckdb'}")
    else:
        bench(args, workdir, args.destination)


def is_lakehouse(destination: str) -> bool:
    """A lakehouse in a local folder (the bench reads its files directly)."""
    return destination.split(":", 1)[0] in LAKEHOUSES


def history_setting(args: argparse.Namespace, destination: str) -> str | None:
    """The history setting to write, or None for the settings' default."""
    if args.history is not None or not is_lakehouse(destination):
        return args.history
    print(
        "note: a lakehouse keeps no history tables: syncing with history = none "
        "(--history to choose)",
        file=sys.stderr,
    )
    return "none"


def first_runs(destination: str) -> list[tuple[str, int, int]]:
    """(endpoint, records, pages) of each endpoint's first run."""
    sql = (
        f"SELECT endpoint, records, pages FROM {SCHEMA}._ogsync_runs r "
        f"WHERE started_at = (SELECT min(started_at) FROM {SCHEMA}._ogsync_runs "
        "WHERE endpoint = r.endpoint)"
    )
    if destination.startswith("duckdb:///"):
        with duckdb.connect(destination.removeprefix("duckdb:///"), read_only=True) as conn:
            return conn.execute(sql).fetchall()
    if is_lakehouse(destination):
        # Read with the format's own reader, as any other reader of the lakehouse would.
        runs = read_lakehouse_table(destination, "_ogsync_runs")
        with duckdb.connect() as conn:
            conn.execute(f"CREATE SCHEMA {SCHEMA}")
            conn.register("runs", runs)
            conn.execute(f"CREATE TABLE {SCHEMA}._ogsync_runs AS SELECT * FROM runs")
            return conn.execute(sql).fetchall()
    with psycopg.connect(destination) as conn:
        return conn.execute(sql).fetchall()


def read_lakehouse_table(destination: str, name: str) -> pyarrow.Table:
    """A table of a local lakehouse (`delta:///FOLDER`, `iceberg:///FOLDER`)."""
    fmt, root = destination.split(":///", 1)
    root = "/" + root.lstrip("/")
    if fmt == "delta":
        from deltalake import DeltaTable

        return DeltaTable(f"{root}/{SCHEMA}/{name}").to_pyarrow_table()
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("ogsync", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}")
    try:
        return catalog.load_table((SCHEMA, name)).scan().to_arrow()
    finally:
        catalog.engine.dispose()


def parquet_files(destination: str) -> int:
    """Parquet files in a local lakehouse's folder: read by a table or not."""
    root = Path("/" + destination.split(":///", 1)[1].lstrip("/"))
    return sum(1 for _ in root.rglob("*.parquet"))


def run_maintain(destination: str) -> tuple[Maintenance, float, int, int]:
    """(what maintain did, its wall seconds, parquet files on disk before and after) of
    `maintain` with no retention, as `ogsync maintain --retention 0h` runs it."""
    on_disk = parquet_files(destination)
    start = time.perf_counter()
    done = maintain(destination, SCHEMA, timedelta(0))
    return done, time.perf_counter() - start, on_disk, parquet_files(destination)


def bench(args: argparse.Namespace, workdir: Path, destination: str) -> None:
    settings = (
        f"requests_per_minute = {args.requests_per_minute}\nbatch_records = {args.batch_records}\n"
    )
    history = history_setting(args, destination)
    if history is not None:
        settings += f"history = {json.dumps(history)}\n"
    (workdir / "ogsync.toml").write_text(settings)
    # A frozen clock, moved on by hand: the hours before each run are quiet, so the second run
    # measures what a run with no changes costs (the overlap finds nothing to re-read).
    quiet_minutes = 120
    sim_args = [
        "--frozen-clock",
        "--records",
        str(args.records),
        "--seed",
        "1",
        "--limit-per-minute",
        str(10**9),
        "--latency-ms",
        str(args.latency_ms),
        "--latency-jitter",
        "0",
    ]
    started = time.perf_counter()
    with simulator_process(sim_args, timeout=900) as sim, SimControl(sim.url) as control:
        ready = time.perf_counter() - started
        env = clean_env()
        env.update(
            OGSYNC_API_KEY=sim.api_key, OGSYNC_BASE_URL=sim.url, OGSYNC_DESTINATION=destination
        )
        control.advance(minutes=quiet_minutes)
        answer = lone_answer_s(sim.url, sim.api_key) if args.latency_ms else None
        control.reset_stats()
        first: tuple[str, ...] = ("sync",)
        if args.backfill_window:
            first = ("backfill", "--start", "2020-01-01", "--window", args.backfill_window)
        sim_cpu = cpu_seconds(sim.pid) if sim.pid else 0.0
        wall, peak, code, cpu = run_sync(env, workdir, first)
        sim_cpu = cpu_seconds(sim.pid) - sim_cpu if sim.pid else 0.0
        served = control.stats()
        before = served["requests"]
        control.advance(minutes=quiet_minutes)
        inc_wall, inc_peak, inc_code, inc_cpu = run_sync(env, workdir)
        after = control.stats()["requests"]
    upkeep = run_maintain(destination) if is_lakehouse(destination) else None

    records = pages = 0
    per_endpoint: dict[str, int] = {}
    for endpoint, count, endpoint_pages in first_runs(destination):
        records += count
        pages += endpoint_pages
        per_endpoint[endpoint] = endpoint_pages
    incremental = {
        ep.name: after.get(ep.name, 0) - before.get(ep.name, 0)
        for ep in ENDPOINTS
        if ep.incremental
    }
    bound = latency_bound(per_endpoint, args.latency_ms / 1000) if args.latency_ms else None
    answer_bound = latency_bound(per_endpoint, answer) if answer else None
    summary = {
        "records": records,
        "pages": pages,
        "requests": served["requests_total"],
        "simulator_ready_s": round(ready, 1),
        "sync_wall_s": round(wall, 2),
        "records_per_s": round(records / wall) if wall else 0,
        "sync_peak_rss_mb": round(peak, 1),
        "sync_cpu_s": round(cpu, 2),
        "sync_cpu_s_per_100k": round(cpu * 100_000 / records, 2) if records else None,
        "simulator_cpu_s": round(sim_cpu, 2),
        "simulator_cpu_s_per_100k": round(sim_cpu * 100_000 / records, 2) if records else None,
        "simulator_cpu_ms_per_page": round(sim_cpu * 1000 / pages, 3) if pages else None,
        "exit_code": code,
        "latency_ms": args.latency_ms,
        "latency_bound_s": round(bound, 2) if bound else None,
        "wall_over_bound": round(wall / bound, 3) if bound else None,
        "lone_answer_ms": round(answer * 1000, 2) if answer else None,
        "answer_bound_s": round(answer_bound, 2) if answer_bound else None,
        "wall_over_answer_bound": round(wall / answer_bound, 3) if answer_bound else None,
        "incremental_wall_s": round(inc_wall, 2),
        "incremental_exit_code": inc_code,
        "incremental_requests_per_endpoint": incremental,
        "incremental_peak_rss_mb": round(inc_peak, 1),
        "incremental_cpu_s": round(inc_cpu, 2),
    }
    if upkeep is not None:
        done, maintain_wall, disk_before, disk_after = upkeep
        summary |= {
            "data_files_before_maintain": sum(t.files_before for t in done.tables),
            "data_files_after_maintain": sum(t.files_after for t in done.tables),
            "files_removed_by_maintain": sum(t.removed for t in done.tables),
            "parquet_on_disk_before_maintain": disk_before,
            "parquet_on_disk_after_maintain": disk_after,
            "maintain_wall_s": round(maintain_wall, 2),
        }
    if args.json:
        print(json.dumps(summary))
        return
    kind = destination.split("://")[0].split("+")[0]
    speed, memory = TARGETS.get(kind, TARGETS["duckdb"])
    print(f"destination {kind}")
    print(f"full sync of {records:,} records ({pages:,} pages, {summary['requests']:,} requests)")
    print(
        f"  wall {wall:.1f} s -> {summary['records_per_s']:,} records/s   "
        f"(target >= {speed:,} at 1,000,000)"
    )
    print(f"  peak RSS of the sync {peak:.0f} MB   (target < {memory} MB)   exit {code}")
    print(
        f"  CPU (user+sys): sync {cpu:.1f} s ({summary['sync_cpu_s_per_100k']} s per 100k), "
        f"simulator {sim_cpu:.1f} s ({summary['simulator_cpu_s_per_100k']} s per 100k, "
        f"{summary['simulator_cpu_ms_per_page']} ms per page)"
    )
    if bound:
        print(
            f"  latency-bound limit {bound:.1f} s; wall/limit {wall / bound:.3f} (target <= 1.05)"
        )
    if answer_bound and answer:
        print(
            f"  a lone request takes the simulator {answer * 1000:.1f} ms "
            f"(latency {args.latency_ms:g} ms); at that, the limit is {answer_bound:.1f} s "
            f"and wall/limit {wall / answer_bound:.3f}"
        )
    print(
        f"incremental run with no changes: {inc_wall:.1f} s, CPU {inc_cpu:.1f} s, "
        f"peak RSS {inc_peak:.0f} MB, requests {incremental}, exit {inc_code}"
    )
    if upkeep is not None:
        done, maintain_wall, disk_before, disk_after = upkeep
        print(
            f"files: {summary['data_files_before_maintain']:,} -> "
            f"{summary['data_files_after_maintain']:,} after maintain (data files the "
            f"{len(done.tables)} tables read); parquet on disk {disk_before:,} -> "
            f"{disk_after:,}, {summary['files_removed_by_maintain']:,} files removed; "
            f"maintain {maintain_wall:.1f} s"
        )
    print(f"(simulator ready in {ready:.1f} s; files in {workdir})")


if __name__ == "__main__":
    main()
