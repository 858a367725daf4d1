"""Soak: the sync and the webhook receiver killed over and over under faults and changes.

The simulator runs with continuous changes and faults (429s, 5xx, dropped connections,
truncated bodies, jittered latency) and delivers webhooks with duplicates, out of order.
`ogsync sync` (or `backfill`) is killed with SIGKILL at random moments and started again; the
receiver is killed and restarted too. Then changes and faults stop, the webhooks drain, one
clean sync runs, and the warehouse must equal the API exactly. `bench/soak.py` runs it at
length; the test suite runs a short one.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson

from ogsync.destinations.duckdb import file_url
from ogsync.endpoints import select
from ogsync.simulator.server import DEFAULT_API_KEY, free_port, simulator_process
from ogsync.testing.cli import clean_env
from ogsync.testing.sim_control import DeliveriesPending, FaultChanges, SimControl

SECRET = "soak-webhook-secret"
FAULTS = FaultChanges(rate_429=0.2, rate_5xx=0.05, rate_drop=0.02, rate_malformed=0.01)


def ogsync_process(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "ogsync", *args], env=env, cwd=cwd, stdout=sink, stderr=sink
        )


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def check(control: SimControl, db: Path, inbox: Path) -> dict[str, int]:
    """Compare the warehouse with the truth; return what was checked. Raises on a difference."""
    checked: dict[str, int] = {}
    with duckdb.connect(str(db), read_only=True) as conn:
        for ep in select(None):  # the default endpoints, which the runs sync
            truth = control.truth_by_key(ep)
            gone = set(control.deleted(ep))
            key = ep.column_key
            rows = conn.execute(
                f'SELECT "{key}", _raw, _deleted_at FROM ordergroove.{ep.name}'
            ).fetchall()
            live = {k: orjson.loads(raw) for k, raw, deleted in rows if deleted is None}
            soft = {k for k, _, deleted in rows if deleted is not None}
            assert set(live) == set(truth), f"{ep.name}: live {len(live)} != truth {len(truth)}"
            stale = [k for k in truth if live[k] != truth[k]]
            assert not stale, f"{ep.name}: {len(stale)} stale versions"
            assert soft <= gone, f"{ep.name}: {len(soft - gone)} soft-deleted but alive"
            still = (gone & {k for k, _, _ in rows}) - soft
            assert not still, f"{ep.name}: {len(still)} deleted in the API, live here"
            checked[f"{ep.name} live"] = len(live)
            checked[f"{ep.name} soft-deleted"] = len(soft)
        (dups,) = conn.execute(
            "SELECT count(*) - count(DISTINCT public_id) FROM ordergroove.orders"
        ).fetchone()
        assert dups == 0
        # No watermark ahead of committed data: each is the API-clock start of a successful
        # run of its endpoint (run ids begin with it).
        for endpoint, watermark in conn.execute(
            "SELECT endpoint, watermark FROM ordergroove._ogsync_state WHERE watermark IS NOT NULL"
        ).fetchall():
            starts = {
                datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                for (run_id,) in conn.execute(
                    "SELECT run_id FROM ordergroove._ogsync_runs "
                    "WHERE endpoint = ? AND status = 'success'",
                    [endpoint],
                ).fetchall()
            }
            assert watermark in starts, f"{endpoint}: watermark {watermark} from no committed run"
        stored = {r[0] for r in conn.execute("SELECT event_id FROM ordergroove.events").fetchall()}
    delivered = set(control.webhooks()["delivered_ids"])
    assert delivered <= stored, f"{len(delivered - stored)} delivered events not in the warehouse"
    checked["events"] = len(stored)
    return checked


@dataclass
class SoakReport:
    command: str
    runs: int = 0
    killed: int = 0
    finished: int = 0
    receiver_kills: int = 0
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    webhooks: dict[str, Any] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)


def run_soak(
    *,
    kills: int,
    records: int,
    seed: int = 7,
    command: str = "sync",
    workdir: Path | None = None,
    kill_after: tuple[float, float] = (0.3, 3.0),
) -> SoakReport:
    """Run the soak; raise AssertionError on any difference from the API's truth."""
    rng = random.Random(seed)
    work = workdir or Path(tempfile.mkdtemp(prefix="ogsync-soak-"))
    (work / "ogsync.toml").write_text(
        "batch_records = 300\nrequests_per_minute = 100000\nmax_attempts = 30\n"
    )
    db, inbox, log = work / "w.duckdb", work / "inbox.sqlite", work / "soak.log"
    receiver_port = free_port()
    env = clean_env()
    sim_args = ["--records", str(records), "--seed", str(seed), "--latency-ms", "5",
                "--webhook-url", f"http://127.0.0.1:{receiver_port}/webhooks/ordergroove",
                "--webhook-secret", SECRET, "--webhook-duplicates", "0.2", "--webhook-shuffle",
                "--webhook-retry-seconds", "0.2", "--limit-per-minute", "1000000"]  # fmt: skip
    started = time.monotonic()
    with simulator_process(sim_args, timeout=300) as api, SimControl(api.url) as control:
        env.update(OGSYNC_API_KEY=DEFAULT_API_KEY, OGSYNC_BASE_URL=api.url,
                   OGSYNC_DESTINATION=file_url(db), OGSYNC_WEBHOOK_SECRET=SECRET,
                   OGSYNC_WEBHOOK_INBOX=str(inbox))  # fmt: skip
        receive = ["webhooks", "serve", "--port", str(receiver_port), "--inbox", str(inbox)]
        children: list[subprocess.Popen] = []

        def spawn(args: list[str]) -> subprocess.Popen:
            child = ogsync_process(args, env, work, log)
            children.append(child)
            return child

        try:
            receiver = spawn(receive)
            wait_http(f"http://127.0.0.1:{receiver_port}/healthz")
            control.set_faults(**FAULTS)

            changing = threading.Event()
            changing.set()

            def change() -> None:
                # A client of its own: the main thread uses `control` meanwhile.
                with SimControl(api.url, timeout=60) as changes:
                    while changing.is_set():
                        changes.advance(minutes=2, changes=20)
                        time.sleep(0.3)

            changer = threading.Thread(target=change, daemon=True)
            changer.start()
            argv = ["sync", "--log-format", "json"]
            if command == "backfill":
                argv = ["backfill", "--start", "2023-01-01", "--window", "month",
                        "--log-format", "json"]  # fmt: skip
            killed = finished = receiver_kills = 0
            for n in range(kills):
                served = control.stats()["requests_total"]
                victim = spawn(argv)
                # The kill's moment is counted from the run's first request, not from its
                # start: on a busy machine starting Python alone can take longer than that.
                started = time.monotonic()
                while victim.poll() is None and time.monotonic() - started < 60:
                    if control.stats()["requests_total"] > served:
                        break
                    time.sleep(0.05)
                time.sleep(rng.uniform(*kill_after))
                if victim.poll() is None:
                    victim.send_signal(signal.SIGKILL)
                    killed += 1
                else:
                    finished += 1
                victim.wait()
                if n % 5 == 4:  # the receiver dies too, now and then
                    receiver.send_signal(signal.SIGKILL)
                    receiver.wait()
                    receiver_kills += 1
                    time.sleep(rng.uniform(0.1, 1.0))
                    receiver = spawn(receive)
                    wait_http(f"http://127.0.0.1:{receiver_port}/healthz")
            changing.clear()
            changer.join()
            stats = control.stats()
            calm = {k: 0.0 for k in FAULTS} | {"latency_ms": 0.0}
            control.set_faults(**calm)
            try:
                hooks = control.wait_for_deliveries(timeout=120, interval=0.2)
            except DeliveriesPending as pending:
                # Go on regardless: the check below finds any delivered event that is missing.
                hooks = pending.state
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=30)
            final = subprocess.run([sys.executable, "-m", "ogsync", "sync", "--log-format", "json"],
                                   env=env, cwd=work, capture_output=True, text=True)  # fmt: skip
            assert final.returncode == 0, final.stderr[-2000:]
            checked = check(control, db, inbox)
            return SoakReport(
                command=command,
                runs=kills,
                killed=killed,
                finished=finished,
                receiver_kills=receiver_kills,
                seconds=time.monotonic() - started,
                faults=stats["faults"],
                statuses=stats["statuses"],
                webhooks=hooks,
                checked=checked,
            )
        finally:
            for child in children:  # whatever an assertion left running
                if child.poll() is None:
                    child.kill()
                    child.wait()
