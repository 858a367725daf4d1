"""By-hand benchmark of the webhook receiver with durable (SQLite, WAL, synchronous=FULL) writes.

    .venv/bin/python bench/webhooks.py [--events 5000] [--concurrency 16] [--json]

It starts `ogsync webhooks serve` as a child process with a fresh SQLite inbox, signs N distinct
events (as Ordergroove does: `Ordergroove-Signature: ts=...,sig=...`), then sends them from
several concurrent keep-alive connections over loopback, each request waiting for its answer.
Every answer must be a 2xx, and each is sent only after the event is committed to the inbox.

It reports accepted events per second, p50/p90/p99/max latency, the receiver's CPU seconds per
event, and the number of group commits the inbox made (read from its metrics). Afterwards it
opens the inbox file and checks that every event is in it, exactly once. Targets: at least
500 events/s, median latency under 20 ms. The child is always stopped; every phase has a
deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from ogsync.serving import stop_process, wait_until_answering
from ogsync.simulator.server import free_port
from ogsync.testing.proc import cpu_seconds
from ogsync.webhooks.signature import HEADER, sign

HOST = "127.0.0.1"
SECRET = "bench-webhook-secret"
PATH = "/webhooks/ordergroove"
TARGET_EVENTS_PER_SECOND = 500
TARGET_P50_MS = 20.0


def start_receiver(inbox: Path, port: int, timeout: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OGSYNC_WEBHOOK_SECRET": SECRET}
    cmd = [sys.executable, "-m", "ogsync", "webhooks", "serve", "--host", HOST]
    cmd += ["--port", str(port), "--inbox", str(inbox)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not wait_until_answering(proc, f"http://{HOST}:{port}/healthz", timeout):
        raise RuntimeError(f"the receiver exited with status {proc.returncode}")
    return proc


def make_events(count: int) -> list[tuple[str, bytes]]:
    """(id, raw HTTP request) per event, signed now, as deletions of a realistic size."""
    now = int(time.time())
    requests = []
    for n in range(count):
        kind = "order.delete" if n % 3 else "item.remove"
        obj: dict[str, Any] = {"type": kind.partition(".")[0], "public_id": f"obj{n:08x}"}
        if kind == "item.remove":
            obj.update(order=f"ord{n:08x}", product="p1", quantity=2, price="12.50")
        else:
            obj.update(customer=f"cust{n % 997}", status=1, sub_total="25.00", extra_data={})
        event_id = f"evt{n:08d}{os.urandom(4).hex()}"
        body = orjson.dumps(
            {
                "id": event_id,
                "type": kind,
                "created": now - count + n,
                "data": {"object": obj},
                "context": None,
                "snapshot": {},
            }
        )
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{HEADER}: {sign([SECRET], now, body)}\r\n\r\n"
        )
        requests.append((event_id, head.encode() + body))
    return requests


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def send_all(
    port: int, requests: list[tuple[str, bytes]], concurrency: int, deadline: float
) -> tuple[list[float], dict[int, int]]:
    """Send every request over `concurrency` keep-alive connections; latencies in seconds."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while queue and time.monotonic() < deadline:
                _, raw = queue.pop()
                started = time.perf_counter()
                writer.write(raw)
                status = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200, help="Events sent before timing.")
    parser.add_argument("--seconds", type=float, default=120, help="Deadline for the load.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ogsync-bench-webhooks-") as tmp:
        inbox = Path(tmp) / "inbox.sqlite"
        port = free_port(HOST)
        launched = time.monotonic()
        proc = start_receiver(inbox, port, timeout=60)
        start_seconds = time.monotonic() - launched
        try:
            warm = make_events(args.warmup)
            events = make_events(args.events)
            deadline = time.monotonic() + args.seconds
            asyncio.run(send_all(port, warm, args.concurrency, deadline))
            before = httpx.get(f"http://{HOST}:{port}/metrics").text
            cpu_before = cpu_seconds(proc.pid)
            started = time.perf_counter()
            latencies, statuses = asyncio.run(send_all(port, events, args.concurrency, deadline))
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid) - cpu_before
            after = httpx.get(f"http://{HOST}:{port}/metrics").text
        finally:
            stderr = stop_process(proc)

        conn = sqlite3.connect(inbox)
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            stored = {row[0] for row in conn.execute("SELECT event_id FROM _ogsync_inbox")}
            rows = conn.execute("SELECT count(*) FROM _ogsync_inbox").fetchone()[0]
        finally:
            conn.close()

    sent = len(latencies)
    accepted = sum(n for s, n in statuses.items() if 200 <= s < 300)
    missing = [eid for eid, _ in events[:sent] if eid not in stored]
    stored_metric = metric(after, "ogsync_webhook_events_stored_total") - metric(
        before, "ogsync_webhook_events_stored_total"
    )
    commits = metric(after, "ogsync_webhook_inbox_commits") - metric(
        before, "ogsync_webhook_inbox_commits"
    )
    results = {
        "events": args.events,
        "sent": sent,
        "accepted_2xx": accepted,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 3),
        "events_per_second": round(accepted / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "p90": round(percentile(latencies, 0.90) * 1000, 2) if latencies else None,
            "p99": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
            "max": round(max(latencies) * 1000, 2) if latencies else None,
        },
        "receiver_cpu_ms_per_event": round(cpu / max(sent, 1) * 1000, 3),
        "receiver_start_seconds": round(start_seconds, 2),
        "stored_metric": stored_metric,
        "group_commits": commits,
        "events_per_commit": round(stored_metric / commits, 1) if commits else None,
        "inbox_rows": rows,
        "inbox_journal_mode": mode,
        "missing_from_inbox": len(missing),
    }
    ok = (
        sent == args.events
        and accepted == sent
        and not missing
        and rows == args.events + args.warmup
        and results["events_per_second"] >= TARGET_EVENTS_PER_SECOND
        and results["latency_ms"]["p50"] is not None
        and results["latency_ms"]["p50"] < TARGET_P50_MS
    )
    results["targets"] = {
        "events_per_second": f">= {TARGET_EVENTS_PER_SECOND}",
        "p50_ms": f"< {TARGET_P50_MS}",
        "met": ok,
    }
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        lat = results["latency_ms"]
        print(
            f"webhooks: {accepted}/{args.events} signed events accepted in {elapsed:.2f}s with "
            f"{args.concurrency} connections = {results['events_per_second']:.0f} events/s "
            f"(target >= {TARGET_EVENTS_PER_SECOND})"
        )
        print(
            f"latency ms: p50 {lat['p50']} (target < {TARGET_P50_MS}), p90 {lat['p90']}, "
            f"p99 {lat['p99']}, max {lat['max']}"
        )
        print(
            f"receiver CPU {results['receiver_cpu_ms_per_event']} ms/event; {commits:.0f} group "
            f"commits ({results['events_per_commit']} events each); inbox "
            f"({mode}, synchronous=FULL) holds {rows} rows, {len(missing)} of the sent missing; "
            f"statuses {results['statuses']}"
        )
        print("targets met" if ok else "TARGETS NOT MET")
    if not ok and stderr.strip():
        print(stderr[-2000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
