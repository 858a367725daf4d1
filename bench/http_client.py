"""Benchmark: the API client's own CPU per page, by hand.

Starts the simulator as its own process, then reads every page of one endpoint through
`OrdergrooveClient.pages` in this process, several passes, and reports per page the client's
CPU (request, response, decoding and parsing the JSON), the wall time, and the simulator's
CPU. Nothing is typed or stored: this is the part of a fetcher's work the HTTP library
decides. To compare two versions of the client, run this file with each on PYTHONPATH:

    .venv/bin/python bench/http_client.py --records 200000
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/http_client.py --records 200000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from ogsync.client import OrdergrooveClient, RateBudget, RequestStats
from ogsync.simulator.server import simulator_process
from ogsync.testing.proc import cpu_seconds


def one_pass(client: OrdergrooveClient, path: str, sim_pid: int) -> dict[str, float]:
    stats = RequestStats()
    cpu, wall, sim = time.process_time(), time.perf_counter(), cpu_seconds(sim_pid)
    records = sum(len(results) for results, _ in client.pages(path, {}, stats))
    pages = stats.pages
    return {
        "pages": pages,
        "records": records,
        "client_cpu_ms_per_page": (time.process_time() - cpu) / pages * 1000,
        "wall_ms_per_page": (time.perf_counter() - wall) / pages * 1000,
        "simulator_cpu_ms_per_page": (cpu_seconds(sim_pid) - sim) / pages * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--endpoint", default="orders")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sim_args = ["--records", str(args.records), "--seed", "1", "--frozen-clock"]
    sim_args += ["--limit-per-minute", "1000000000", "--latency-ms", "0", "--latency-jitter", "0"]
    with (
        simulator_process(sim_args) as sim,
        OrdergrooveClient(sim.url, sim.api_key, budget=RateBudget(0)) as client,
    ):
        one_pass(client, f"/{args.endpoint}/", sim.pid)  # warm: connections, caches
        passes = [one_pass(client, f"/{args.endpoint}/", sim.pid) for _ in range(args.passes)]
    summary = {
        key: round(statistics.median(p[key] for p in passes), 3)
        for key in ("client_cpu_ms_per_page", "wall_ms_per_page", "simulator_cpu_ms_per_page")
    }
    summary["pages"] = passes[0]["pages"]
    if args.json:
        json.dump({"passes": passes, "median": summary}, sys.stdout, indent=2)
        print()
        return
    print(
        f"/{args.endpoint}/: {summary['pages']:,} pages a pass, median of {args.passes} passes: "
        f"client CPU {summary['client_cpu_ms_per_page']:.3f} ms a page, wall "
        f"{summary['wall_ms_per_page']:.3f} ms, simulator CPU "
        f"{summary['simulator_cpu_ms_per_page']:.3f} ms"
    )


if __name__ == "__main__":
    main()
