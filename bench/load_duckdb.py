"""Benchmark: DuckDB's writer alone, loading typed batches as a first sync does, by hand.

Generates a simulated merchant in memory, types its items, orders and subscriptions into
batches as a sync's workers do, and then writes them, one batch a commit, into a new DuckDB
file with history kept (`DuckDBDestination.write`, checkpoints included, then `close`). No
HTTP and no typing while it is timed, so the CPU seconds of the writer are steadier than
a whole sync's on a busy machine. Reports wall and CPU seconds, and the file's size.

    .venv/bin/python bench/load_duckdb.py --records 400000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from ogsync.destinations.base import Commit, RunLog
from ogsync.destinations.duckdb import DuckDBDestination, file_url
from ogsync.endpoints import BY_NAME
from ogsync.records import type_records
from ogsync.simulator.server import SimulatorConfig, build

LOADED = ("items", "orders", "subscriptions")  # the three largest, each with its history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400_000, help="merchant size")
    parser.add_argument("--batch", type=int, default=5000, help="records a batch (a commit)")
    args = parser.parse_args()

    config = SimulatorConfig(records=args.records, frozen_clock=True)
    sim = build(config)
    endpoints = {name: replace(BY_NAME[name], history=True) for name in LOADED}
    batches = []
    for ep in endpoints.values():
        records = [orjson.loads(body) for body in sim.store.iter_bodies(ep)]
        for first in range(0, len(records), args.batch):
            chunk = records[first : first + args.batch]
            batches.append((ep, type_records(ep, chunk, ZoneInfo(config.timezone), first)[0]))
    sim.store.close()

    with tempfile.TemporaryDirectory(prefix="ogsync-bench-") as folder:
        path = Path(folder) / "w.duckdb"
        dest = DuckDBDestination(file_url(path), "ordergroove")
        dest.prepare(endpoints.values())
        started = datetime.now(UTC)
        runs = {
            n: RunLog(run_id="bench", endpoint=n, kind="sync", started_at=started) for n in LOADED
        }
        wall, cpu = time.perf_counter(), time.process_time()
        for ep, batch in batches:
            dest.write([(ep, batch, Commit(run=runs[ep.name]))])
        dest.close()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = sum(batch.num_rows for _, batch in batches)
        size = path.stat().st_size / 2**20
    print(f"{rows:,} rows in {len(batches)} commits: wall {wall:.2f} s, CPU {cpu:.2f} s "
          f"({cpu / rows * 1e6:.1f} µs a row), file {size:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
