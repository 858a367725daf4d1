"""By-hand benchmark: signed deliveries while many slow clients hold the receiver's connections.

    .venv/bin/python bench/receiver_slow_clients.py [--attackers 800] [--seconds 30]

It starts `ogsync webhooks serve` as a child process (a fresh SQLite inbox), then runs two
phases of `--seconds` each: signed deliveries alone (one at a time, on fresh connections, as a
sender retrying would), then the same while `--attackers` clients keep connections open:
half dribble request headers a byte every second, half send signed headers and a body that
never finishes, each reconnecting when the receiver cuts it off. It reports, per phase, the
deliveries answered 200, refused 503 or failed, their latency p50/p99/max, and the receiver's
open file descriptors and RSS at the end. Nothing is asserted: the figures go in notes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from ogsync.serving import stop_process
from ogsync.simulator.server import free_port
from ogsync.webhooks.signature import HEADER, sign
from webhooks import HOST, PATH, SECRET, start_receiver


def signed_request(n: int) -> bytes:
    event = {"id": f"evt-{n}-{os.urandom(4).hex()}", "type": "order.delete",
             "created": int(time.time()), "data": {"object": {"public_id": f"o{n}"}}}  # fmt: skip
    body = orjson.dumps(event)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{HEADER}: {sign([SECRET], int(time.time()), body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def deliver(port: int, n: int) -> tuple[int | None, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
        writer.write(signed_request(n))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        status = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None
    except (OSError, TimeoutError, ValueError, IndexError):
        status = None
    return status, time.perf_counter() - started


async def attacker(port: int, n: int, stop: asyncio.Event) -> None:
    """Holds a connection as long as the receiver lets it, then comes back."""
    dribble = n % 2 == 0
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            if dribble:
                for byte in f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode() + b"a" * 10_000:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
                    if stop.is_set() or reader.at_eof():
                        break
            else:
                request = signed_request(n)
                writer.write(request[:-10])  # all but the end of the body
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(), 60)
        except OSError:
            pass
        finally:
            writer.close()


async def phase(port: int, seconds: float, attackers: int, pid: int) -> dict[str, object]:
    stop = asyncio.Event()
    held = [asyncio.create_task(attacker(port, n, stop)) for n in range(attackers)]
    await asyncio.sleep(2 if attackers else 0)  # let them take their connections
    results: list[tuple[int | None, float]] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        results.append(await deliver(port, n))
        n += 1
        await asyncio.sleep(0.05)
    usage = receiver_usage(pid)  # while the attackers still hold their connections
    stop.set()
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    ok = sorted(t for s, t in results if s == 200)
    return {
        "deliveries": len(results),
        "200": len(ok),
        "503": sum(1 for s, _ in results if s == 503),
        "failed": sum(1 for s, _ in results if s not in (200, 503)),
        "p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
        "p99_ms": round(ok[int(len(ok) * 0.99) - 1] * 1000, 1) if ok else None,
        "max_ms": round(ok[-1] * 1000, 1) if ok else None,
        **usage,
    }


def receiver_usage(pid: int) -> dict[str, object]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(
        int(line.split()[1]) // 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return {"open_fds": fds, "rss_mb": rss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", type=int, default=800)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.attackers)), hard))
    with tempfile.TemporaryDirectory(prefix="ogsync-bench-slow-") as tmp:
        port = free_port()
        proc = start_receiver(Path(tmp) / "inbox.sqlite", port, timeout=60)
        try:
            quiet = asyncio.run(phase(port, args.seconds, 0, proc.pid))
            attacked = asyncio.run(phase(port, args.seconds, args.attackers, proc.pid))
        finally:
            stop_process(proc)
    print(orjson.dumps({"alone": quiet, f"beside {args.attackers} slow clients": attacked},
                       option=orjson.OPT_INDENT_2).decode())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
