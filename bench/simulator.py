"""By-hand benchmark of the Ordergroove API simulator, run as a separate process.

    .venv/bin/python bench/simulator.py --records 1000000 [--seconds 20] [--concurrency 4] [--json]

It measures:

1. Start-up: the wall time from launching `ogsync simulator serve --records N` until it answers
   HTTP, and the simulator's peak RSS (VmHWM) after start-up and after the load.
2. Throughput: pages of 100 records per second while several walkers page through different
   endpoints with cursors (`X-OG-API-VERSION: 2`, `page_size=100`, following `next`), each on
   its own keep-alive `httpx.Client` in a thread. It reports pages/s, records/s, p50/p99 page
   latency, and the CPU seconds per page of the simulator and of this client, so that one can
   tell which side is the bottleneck (with 2 cores, each side has one).

The simulator is started with the same command line as `ogsync.simulator.server.
simulator_process`, except that the per-client rate limit is lifted (the real API's 6,000
requests a minute would cap one client at 100 pages/s). Only loopback is used. The child is
always killed, and every phase has a deadline, so the script ends by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from ogsync.endpoints import ENDPOINTS, Endpoint
from ogsync.serving import stop_process, wait_until_answering
from ogsync.simulator.server import DEFAULT_API_KEY, free_port
from ogsync.testing.proc import cpu_seconds
from ogsync.testing.sim_control import SimControl, ready_url

HOST = "127.0.0.1"
PAGE_SIZE = 100
TARGET_PAGES_PER_SECOND = 800
TARGET_START_SECONDS = 60
TARGET_MEMORY_BYTES = 1 << 30  # 1 GiB, at 1,000,000 records
TARGET_MEMORY_RECORDS = 1_000_000


# -- the child process -----------------------------------------------------------------------


def proc_memory(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS in bytes, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
    return out


def proc_io(pid: int) -> dict[str, int]:
    """rchar (bytes read by syscalls) and read_bytes (fetched from storage), /proc/<pid>/io."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = int(value)
    return out


def machine_cpu() -> dict[str, int]:
    """Machine-wide CPU ticks from /proc/stat: busy, idle, iowait, steal."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return {
        "busy": user + nice + system + irq + softirq,
        "idle": idle,
        "iowait": iowait,
        "steal": steal,
    }


def database_bytes(pid: int) -> int:
    """The size of the simulator's SQLite file. It is removed from its folder as soon as it is
    open, so it is found among the process's open files."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).endswith("simulator.sqlite (deleted)"):
                total += fd.stat().st_size
    return total


class Child:
    """`python -m ogsync simulator serve ...` as simulator_process starts it, with its pid."""

    def __init__(self, args: list[str]) -> None:
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "ogsync",
            "simulator",
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--api-key",
            DEFAULT_API_KEY,
            *args,
        ]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float) -> float:
        """Seconds from launch until its controls answer."""
        if not wait_until_answering(self.proc, ready_url(self.url), timeout):
            raise RuntimeError(f"the simulator exited with status {self.proc.returncode}")
        return time.monotonic() - self.started

    def stop(self) -> None:
        stop_process(self.proc)


# -- the load --------------------------------------------------------------------------------


@dataclass
class WalkerResult:
    pages: int = 0
    records: int = 0
    bytes: int = 0
    walks_completed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    endpoints: dict[str, int] = field(default_factory=dict)


def first_url(base: str, ep: Endpoint) -> tuple[str, dict[str, str]]:
    return f"{base}{ep.path}", {**ep.list_params, "page_size": str(PAGE_SIZE)}


def walker(
    index: int,
    concurrency: int,
    base: str,
    start_at: float,
    stop_at: float,
    result: WalkerResult,
    errors: list[str],
) -> None:
    """Walk endpoints index, index + concurrency, ... (mod 9), restarting each when exhausted.

    Only pages finished between start_at and stop_at are counted (the rest is warm-up).
    """
    headers = {"x-api-key": DEFAULT_API_KEY, "X-OG-API-VERSION": "2"}
    order = [ENDPOINTS[(index + k * concurrency) % len(ENDPOINTS)] for k in range(len(ENDPOINTS))]
    turn = 0
    ep = order[0]
    url, params = first_url(base, ep)
    with httpx.Client(headers=headers, timeout=10) as client:
        while True:
            t0 = time.monotonic()
            if t0 >= stop_at:
                return
            try:
                response = client.get(url, params=params)
                t1 = time.monotonic()
                if response.status_code != 200:
                    raise RuntimeError(f"{ep.name}: HTTP {response.status_code}")
                page = orjson.loads(response.content)
            except (httpx.HTTPError, RuntimeError, orjson.JSONDecodeError) as exc:
                result.errors += 1
                if len(errors) < 10:
                    errors.append(f"walker {index}: {exc!r}")
                time.sleep(0.05)
                url, params = first_url(base, ep)
                continue
            if t1 > start_at and t1 <= stop_at:
                result.pages += 1
                result.records += len(page["results"])
                result.bytes += len(response.content)
                result.latencies.append(t1 - t0)
                result.endpoints[ep.name] = result.endpoints.get(ep.name, 0) + 1
            if page["next"]:
                url, params = page["next"], None
            else:
                result.walks_completed += 1
                turn += 1
                ep = order[turn % len(order)]
                url, params = first_url(base, ep)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[rank]


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(base: str, pid: int, seconds: float, warmup: float, concurrency: int) -> dict:
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds
    results = [WalkerResult() for _ in range(concurrency)]
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=walker,
            args=(i, concurrency, base, start_at, stop_at, results[i], errors),
            name=f"walker-{i}",
            daemon=True,
        )
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    io0, machine0 = proc_io(pid), machine_cpu()
    server_cpu0, client_cpu0, wall0 = cpu_seconds(pid), client_cpu_seconds(), time.monotonic()
    time.sleep(max(0.0, stop_at - time.monotonic()))
    server_cpu1, client_cpu1, wall1 = cpu_seconds(pid), client_cpu_seconds(), time.monotonic()
    io1, machine1 = proc_io(pid), machine_cpu()
    ticks = {k: machine1[k] - machine0[k] for k in machine0}
    all_ticks = sum(ticks.values()) or 1
    for t in threads:
        t.join(timeout=15)  # a request in flight has a 10 s timeout
    stuck = sum(t.is_alive() for t in threads)

    elapsed = wall1 - wall0
    pages = sum(r.pages for r in results)
    records = sum(r.records for r in results)
    latencies = sorted(x for r in results for x in r.latencies)
    endpoints: dict[str, int] = {}
    for r in results:
        for name, n in r.endpoints.items():
            endpoints[name] = endpoints.get(name, 0) + n
    server_cpu = server_cpu1 - server_cpu0
    client_cpu = client_cpu1 - client_cpu0
    return {
        "seconds": elapsed,
        "concurrency": concurrency,
        "pages": pages,
        "records": records,
        "bytes": sum(r.bytes for r in results),
        "pages_per_second": pages / elapsed,
        "records_per_second": records / elapsed,
        "mb_per_second": sum(r.bytes for r in results) / elapsed / 1e6,
        "latency_ms_p50": percentile(latencies, 0.50) * 1000,
        "latency_ms_p99": percentile(latencies, 0.99) * 1000,
        "latency_ms_max": (latencies[-1] * 1000) if latencies else float("nan"),
        "server_cpu_seconds": server_cpu,
        "server_cpu_share": server_cpu / elapsed,  # of one core
        "server_cpu_ms_per_page": server_cpu / pages * 1000 if pages else float("nan"),
        "client_cpu_seconds": client_cpu,
        "client_cpu_share": client_cpu / elapsed,
        "client_cpu_ms_per_page": client_cpu / pages * 1000 if pages else float("nan"),
        "server_read_syscall_bytes": io1.get("rchar", 0) - io0.get("rchar", 0),
        "server_storage_read_bytes": io1.get("read_bytes", 0) - io0.get("read_bytes", 0),
        "machine_cpu_shares": {k: v / all_ticks for k, v in ticks.items()},
        # Busy cores not explained by the simulator and this client: other load on the machine.
        "other_cpu_cores": max(
            0.0,
            ticks["busy"] / all_ticks * (os.cpu_count() or 1) - (server_cpu + client_cpu) / elapsed,
        ),
        "walks_completed": sum(r.walks_completed for r in results),
        "pages_by_endpoint": dict(sorted(endpoints.items())),
        "errors": sum(r.errors for r in results),
        "error_samples": errors,
        "stuck_walkers": stuck,
    }


# -- the report ------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def bottleneck(load: dict) -> str:
    server, client = load["server_cpu_share"], load["client_cpu_share"]
    if server >= 0.85 and server >= client:
        return "server (its one core is saturated)"
    if client >= 0.85 and client > server:
        return "client (its one core is saturated; the server has headroom)"
    return "neither core saturated (latency or contention bound)"


def human(summary: dict) -> str:
    s, load, mem = summary["startup"], summary["load"], summary["memory"]
    mib = 1024 * 1024
    lines = [
        f"simulator: {summary['records']:,} records requested; pid {summary['pid']}; "
        f"SQLite file {s['database_bytes'] / mib:,.0f} MiB",
        f"start-up:   {s['seconds']:.2f} s to answer HTTP "
        f"(simulator CPU {s['server_cpu_seconds']:.2f} s)",
        f"memory:     peak RSS {mem['peak_rss_after_start'] / mib:,.0f} MiB after start-up, "
        f"{mem['peak_rss_after_load'] / mib:,.0f} MiB after load "
        f"(RSS now {mem['rss_after_load'] / mib:,.0f} MiB)",
        f"load:       {load['concurrency']} walkers x {load['seconds']:.1f} s: "
        f"{load['pages']:,} pages, {load['records']:,} records, "
        f"{load['mb_per_second']:.1f} MB/s, {load['errors']} errors",
        f"throughput: {load['pages_per_second']:,.0f} pages/s, "
        f"{load['records_per_second']:,.0f} records/s",
        f"latency:    p50 {load['latency_ms_p50']:.2f} ms, p99 {load['latency_ms_p99']:.2f} ms, "
        f"max {load['latency_ms_max']:.1f} ms",
        f"cpu:        simulator {load['server_cpu_ms_per_page']:.3f} ms/page "
        f"({load['server_cpu_share']:.0%} of a core); client "
        f"{load['client_cpu_ms_per_page']:.3f} ms/page ({load['client_cpu_share']:.0%} of a core)",
        f"server I/O: {load['server_read_syscall_bytes'] / load['pages'] / 1024:,.0f} KiB "
        f"read() per page, {load['server_storage_read_bytes'] / 2**20:,.1f} MiB from storage",
        "machine:    "
        + ", ".join(f"{k} {v:.0%}" for k, v in load["machine_cpu_shares"].items())
        + f" of {os.cpu_count()} cores; other processes {load['other_cpu_cores']:.2f} cores"
        + (" (WARNING: the machine is not quiet)" if load["other_cpu_cores"] > 0.2 else ""),
        f"bottleneck: {bottleneck(load)}",
        "targets:",
    ]
    for name, t in summary["targets"].items():
        lines.append(f"  [{verdict(t['ok'])}] {name}: {t['measured']} (target {t['target']})")
    for e in load["error_samples"]:
        lines.append(f"  error: {e}")
    return "\n".join(lines)


def targets(summary: dict) -> dict[str, Any]:
    s, load, mem = summary["startup"], summary["load"], summary["memory"]
    peak = max(mem["peak_rss_after_start"], mem["peak_rss_after_load"])
    at_scale = summary["records"] >= TARGET_MEMORY_RECORDS
    return {
        "throughput": {
            "measured": f"{load['pages_per_second']:,.0f} pages/s",
            "target": f">= {TARGET_PAGES_PER_SECOND} pages/s",
            "ok": load["pages_per_second"] >= TARGET_PAGES_PER_SECOND,
        },
        "start-up": {
            "measured": f"{s['seconds']:.1f} s",
            "target": f"< {TARGET_START_SECONDS} s",
            "ok": s["seconds"] < TARGET_START_SECONDS,
        },
        "memory": {
            "measured": f"{peak / 2**20:,.0f} MiB peak RSS",
            "target": "< 1 GiB at 1,000,000 records"
            + ("" if at_scale else " (judged only at >= 1,000,000)"),
            "ok": peak < TARGET_MEMORY_BYTES if at_scale else None,
        },
    }


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000, help="simulator --records")
    p.add_argument("--seconds", type=float, default=20.0, help="measured load duration")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent walkers (threads)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before load")
    p.add_argument("--start-timeout", type=float, default=300.0, help="give up on start-up")
    p.add_argument(
        "--limit-per-minute",
        type=int,
        default=1_000_000_000,
        help="simulator per-client rate limit (the real API's 6000 caps one client at 100/s)",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0 or args.records < 0:
        p.error("--concurrency >= 1, --seconds > 0 and --records >= 0 are required")
    return args


def _terminate(signum, frame):  # let `finally` kill the child on SIGTERM / SIGHUP
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    sim_args = ["--records", str(args.records), "--limit-per-minute", str(args.limit_per_minute)]
    child = None
    try:
        child = Child(sim_args)
        start_seconds = child.wait_ready(args.start_timeout)
        start_cpu = cpu_seconds(child.pid)
        mem_start = proc_memory(child.pid)
        db_bytes = database_bytes(child.pid)
        load = run_load(child.url, child.pid, args.seconds, args.warmup, args.concurrency)
        mem_load = proc_memory(child.pid)
        with SimControl(child.url, timeout=5) as control:
            stats = control.stats()
    finally:
        if child is not None:
            child.stop()
    summary: dict[str, Any] = {
        "records": args.records,
        "pid": child.pid,
        "command": child.cmd,
        "startup": {
            "seconds": start_seconds,
            "server_cpu_seconds": start_cpu,
            "database_bytes": db_bytes,
        },
        "memory": {
            "peak_rss_after_start": mem_start["VmHWM"],
            "rss_after_start": mem_start["VmRSS"],
            "peak_rss_after_load": mem_load["VmHWM"],
            "rss_after_load": mem_load["VmRSS"],
        },
        "load": load,
        "simulator_stats": {k: stats.get(k) for k in ("requests_total", "statuses", "faults")},
    }
    summary["targets"] = targets(summary)
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(human(summary))
    failed = load["errors"] > 0 or load["stuck_walkers"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
