"""Benchmark: typing API records into Arrow batches (`ogsync.records.type_records`), by hand.

Generates a simulated merchant in memory (no HTTP, no warehouse), parses each endpoint's
records as the client does, and types them a few pages at a time, as a sync's workers do.
Reports the CPU microseconds per record of each endpoint (the best of `--repeat` passes), and
of each field type across them, so that a change to typing shows where it lands.

    .venv/bin/python bench/type_records.py --records 200000
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from itertools import islice
from zoneinfo import ZoneInfo

import orjson

from ogsync.endpoint_run import TYPE_EVERY
from ogsync.endpoints import ENDPOINTS, FieldType
from ogsync.records import _column, _LocalTimes, type_records
from ogsync.simulator.server import SimulatorConfig, build

TZ = ZoneInfo(SimulatorConfig().timezone)  # the zone the simulated API writes its times in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="merchant size")
    parser.add_argument("--per-endpoint", type=int, default=20_000, help="records typed each")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    sim = build(SimulatorConfig(records=args.records, frozen_clock=True))
    total_cpu, total_records = 0.0, 0
    by_type: Counter[str] = Counter()
    typed_values: Counter[str] = Counter()
    for ep in ENDPOINTS:
        bodies = islice(sim.store.iter_bodies(ep), args.per_endpoint)
        records = [orjson.loads(body) for body in bodies]
        if not records:
            continue
        chunks = [records[i : i + TYPE_EVERY] for i in range(0, len(records), TYPE_EVERY)]
        best = float("inf")
        for _ in range(args.repeat):
            started = time.process_time()
            for first, chunk in enumerate(chunks):
                type_records(ep, chunk, TZ, first * TYPE_EVERY)
            best = min(best, time.process_time() - started)
        total_cpu += best
        total_records += len(records)
        print(f"{ep.name:22s} {len(records):7,} records  {best / len(records) * 1e6:6.2f} µs each")
        for chunk in chunks:  # each field type alone, once
            times = _LocalTimes(TZ)
            for f in ep.fields:
                values = [r.get(f.name) for r in chunk]
                started = time.process_time()
                if f.type == FieldType.TIMESTAMP:
                    times.column(values, Counter(), f.name)
                else:
                    _column(f.type, values, times, Counter(), f.name)
                by_type[f.type.name] += time.process_time() - started
                typed_values[f.type.name] += len(values)
    sim.store.close()
    print(f"{'all':22s} {total_records:7,} records  {total_cpu / total_records * 1e6:6.2f} µs each")
    for name, seconds in by_type.most_common():
        each, per_record = seconds / typed_values[name] * 1e6, seconds / total_records * 1e6
        print(f"  {name:12s} {each:6.3f} µs a value, {per_record:6.2f} µs a record")


if __name__ == "__main__":
    main()
