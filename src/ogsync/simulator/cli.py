"""`ogsync simulator serve`: the local Ordergroove API simulator as a command."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ogsync.apitime import zone
from ogsync.simulator import DEFAULT_API_KEY

simulator_app = typer.Typer(
    no_args_is_help=True,
    help="A local Ordergroove API with generated data, to try ogsync without an account.",
    pretty_exceptions_show_locals=False,
)
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    # The message is text, not markup: "[postgres]" or "[merchants.x]" must show as written.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _rate(value: float) -> float:
    if not 0 <= value <= 1:
        raise typer.BadParameter("a share between 0 and 1")
    return value


def _start(value: str | None) -> datetime | None:
    if value is None:
        return None
    from ogsync.simulator.server import utc

    try:
        return utc(value)
    except ValueError:
        raise typer.BadParameter("an ISO time such as 2026-11-01T05:00:00Z") from None


Rate = Annotated[float, typer.Option(callback=_rate, min=0, max=1)]


@simulator_app.command("serve")
def simulator_serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port to listen on."),
    seed: int = typer.Option(1, help="Same seed, same merchant."),
    records: int = typer.Option(10_000, min=0, help="Records across all nine endpoints."),
    timezone: str = typer.Option("America/Chicago", help="Zone of the API's naive timestamps."),
    api_key: str = typer.Option(
        DEFAULT_API_KEY, envvar="OGSYNC_SIM_API_KEY", help="The bulk key (x-api-key)."
    ),
    limited_key: str | None = typer.Option(None, help="A key without Bulk Operations."),
    start: str | None = typer.Option(None, help="Simulated time at start (ISO); default now."),
    frozen_clock: bool = typer.Option(False, help="Time moves only on /__sim__/advance."),
    database: Path | None = typer.Option(None, help="SQLite file for the records."),
    latency_ms: float = typer.Option(0.0, min=0, help="How long each request takes to answer."),
    latency_jitter: float = typer.Option(0.25, min=0, max=1, help="Share the latency varies."),
    rate_429: Rate = 0.0,
    rate_5xx: Rate = 0.0,
    rate_423: Rate = 0.0,
    rate_drop: Rate = 0.0,
    rate_malformed: Rate = 0.0,
    retry_after: int | None = typer.Option(None, min=0, help="Retry-After on injected 429s."),
    limit_per_minute: int = typer.Option(6000, min=1, help="The real per-client limit."),
    fault_endpoints: str | None = typer.Option(
        None, help="Comma-separated endpoints the random faults hit (default: all)."
    ),
    webhook_url: str | None = typer.Option(None, help="Where deletion webhooks are POSTed."),
    webhook_secret: list[str] = typer.Option(
        [], envvar="OGSYNC_WEBHOOK_SECRET", help="Signing key; repeat to sign as in a rotation."
    ),
    webhook_duplicates: Rate = 0.0,
    webhook_shuffle: bool = typer.Option(False, help="Deliver each batch out of order."),
    webhook_retry_seconds: float = typer.Option(1.0, min=0, help="First retry delay."),
) -> None:
    """Serve a simulated Ordergroove REST API with generated, changing data."""
    from ogsync.simulator.faults import Faults
    from ogsync.simulator.server import SimulatorConfig, serve

    config = SimulatorConfig(
        seed=seed,
        records=records,
        timezone=timezone,
        api_key=api_key,
        limited_key=limited_key,
        start=_start(start),
        frozen_clock=frozen_clock,
        database=database,
        faults=Faults(
            latency_ms=latency_ms,
            latency_jitter=latency_jitter,
            rate_429=rate_429,
            rate_5xx=rate_5xx,
            rate_423=rate_423,
            rate_drop=rate_drop,
            rate_malformed=rate_malformed,
            retry_after=retry_after,
            limit_per_minute=limit_per_minute,
            only_endpoints=fault_endpoints.split(",") if fault_endpoints else None,
        ),
        webhook_url=webhook_url,
        webhook_secrets=list(webhook_secret),
        webhook_duplicates=webhook_duplicates,
        webhook_shuffle=webhook_shuffle,
        webhook_retry_seconds=webhook_retry_seconds,
    )
    if webhook_url and not webhook_secret:
        raise _fail("--webhook-url needs --webhook-secret (or OGSYNC_WEBHOOK_SECRET)")
    try:
        zone(timezone)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    err.print(f"ogsync simulator: generating {records:,} records (seed {seed})...")

    def ready(bound: int) -> None:
        # Said once the port is open, so that the lines it prints can be used at once.
        moves = start is None and not frozen_clock
        message = ready_message(host, bound, api_key, clock_moves=moves)
        err.print(message, highlight=False, soft_wrap=True, markup=False)

    serve(config, host, port, on_ready=ready)


def ready_message(host: str, port: int, api_key: str, *, clock_moves: bool = True) -> str:
    """What `serve` prints once it listens: where, the key, and the lines that point `ogsync
    sync` at it."""
    from ogsync.plain_http import insecure_reason
    from ogsync.shell import runnable
    from ogsync.testing import SIMULATED_CLOCK_TOLERANCE

    # A wildcard address listens on every interface: this machine reaches it on loopback.
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    lines = [f"export OGSYNC_BASE_URL={url}", f"export OGSYNC_API_KEY={api_key}"]
    if insecure_reason(url):  # plain http to another machine is refused unless allowed
        lines.append("export OGSYNC_ALLOW_INSECURE_HTTP=1")
    if not clock_moves:  # its clock is not this machine's: the run's clock check must allow it
        minutes = int(SIMULATED_CLOCK_TOLERANCE.total_seconds() // 60)
        lines.append(f"export OGSYNC_CLOCK_TOLERANCE_MINUTES={minutes}")
    return "\n".join(
        [
            f"ogsync simulator: ready at {url} (API key {api_key}). Ctrl-C stops it.",
            "To sync from it, in another terminal:",
            "",
            *(f"    {line}" for line in lines),
            f"    {runnable('ogsync')} sync",
            "",
        ]
    )
