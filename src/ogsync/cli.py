"""The `ogsync` command: a thin Typer layer over the library."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import pyarrow
import typer
from rich.console import Console
from rich.table import Table

from ogsync.apitime import from_local_naive, zone
from ogsync.client import ApiError, AuthError, RequestStats
from ogsync.config import ConfigError, Settings, load_settings, merchant_names
from ogsync.destinations.base import AlreadyRunning, DestinationError, RunLog
from ogsync.endpoints import select
from ogsync.output import LogListener, ProgressListener, configure_logging, summary_table
from ogsync.plan import WindowSize
from ogsync.schedule import DEFAULT_CRON, DEFAULT_ZONE
from ogsync.simulator import DEFAULT_API_KEY
from ogsync.sync import (
    EXIT_AUTH,
    EXIT_ENDPOINT_FAILED,
    EXIT_OK,
    Backfill,
    EndpointOutcome,
    SyncOptions,
    SyncResult,
    api_client,
    run_sync,
)

if TYPE_CHECKING:
    from ogsync.metrics_file import MerchantRun
    from ogsync.status import EndpointStatus
    from ogsync.status_snapshot import Snapshot

# Tracebacks never show local variables: an API key is a local somewhere.
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)
simulator_app = typer.Typer(
    no_args_is_help=True,
    help="The local Ordergroove API simulator.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(simulator_app, name="simulator")

err = Console(stderr=True)

EXIT_CONFIG = 2


# Options most commands share.
DestinationOpt = Annotated[
    str | None, typer.Option(help="duckdb:///FILE or postgresql://... (OGSYNC_DESTINATION).")
]
SchemaOpt = Annotated[str | None, typer.Option(help="Warehouse schema (OGSYNC_SCHEMA).")]
EnvOpt = Annotated[str | None, typer.Option(help="production or staging.")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="API base URL (OGSYNC_BASE_URL).")]
ConfigOpt = Annotated[Path | None, typer.Option(help="Settings file (default ./ogsync.toml).")]


def fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    """One clear line on stderr, and the exit code the design names."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


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
        raise fail("--webhook-url needs --webhook-secret (or OGSYNC_WEBHOOK_SECRET)")
    try:
        zone(timezone)
    except ValueError as exc:
        raise fail(str(exc)) from None
    err.print(f"ogsync simulator: generating {records:,} records (seed {seed})...")
    serve(config, host, port)


webhooks_app = typer.Typer(
    no_args_is_help=True,
    help="Receive Ordergroove webhooks.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("serve")
def webhooks_serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8766, help="Port to listen on."),
    inbox: Path | None = typer.Option(
        None,
        help="SQLite inbox file (OGSYNC_WEBHOOK_INBOX). Default: the warehouse when it is "
        "PostgreSQL, else ogsync-inbox.sqlite.",
    ),
    max_age_seconds: int | None = typer.Option(
        None, min=1, help="Refuse signatures whose ts is older than this (default: off)."
    ),
    event_types: str = typer.Option(
        "order.delete,item.remove",
        help="Comma-separated event types to apply; others are stored and ignored.",
    ),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Receive signed webhooks at /webhooks/ordergroove into a durable inbox (key from
    OGSYNC_WEBHOOK_SECRET; during a rotation, both keys separated by a comma)."""
    from ogsync.webhooks.inbox import open_inbox
    from ogsync.webhooks.receiver import serve_webhooks

    settings = _settings(destination=destination, schema=schema, config=config)
    secrets = settings.webhook_secrets
    if not secrets:
        raise fail("no webhook secret: set OGSYNC_WEBHOOK_SECRET (the verification key)")
    configure_logging("text")
    try:
        opened = open_inbox(settings, inbox)
    except Exception as exc:
        raise fail(f"cannot open the webhook inbox: {exc}") from None
    types = {t.strip() for t in event_types.split(",") if t.strip()}
    err.print(f"ogsync webhooks: listening on http://{host}:{port}/webhooks/ordergroove")
    serve_webhooks(
        opened, secrets, host, port, max_age_seconds=max_age_seconds, accepted_types=types
    )


@webhooks_app.command("apply")
def webhooks_apply(
    inbox: Path | None = typer.Option(None, help="SQLite inbox file (OGSYNC_WEBHOOK_INBOX)."),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Apply the inbox now: store every event, soft-delete what the deletions name."""
    from ogsync.webhooks.apply import InboxUnavailable, apply_webhooks

    settings = _settings(destination=destination, schema=schema, config=config)
    configure_logging("text")
    try:
        result = apply_webhooks(settings, inbox)
    except AlreadyRunning as exc:
        raise fail(str(exc), EXIT_ENDPOINT_FAILED) from None
    except (DestinationError, InboxUnavailable) as exc:
        raise fail(str(exc)) from None
    Console().print(
        f"{result.stored} events stored, {result.deletions} deletions recorded, "
        f"{result.soft_deleted} rows soft-deleted"
        + (f", {result.rejected} events rejected (see _ogsync_rejected)" if result.rejected else "")
    )


LogFormat = Annotated[
    str, typer.Option("--log-format", help="text, or json for one JSON object per event.")
]


def _settings(**flags: object) -> Settings:
    config = flags.pop("config", None)
    merchant = flags.pop("merchant", None)
    try:
        return load_settings(flags, config_path=config, merchant=merchant)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _instant(value: str | None, tz: ZoneInfo, name: str) -> datetime | None:
    """A --since/--until value: ISO date or time; without a zone it is the API's zone."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{name} {value!r} is not an ISO date or time (e.g. 2025-01-31T12:00)") from None
    return parsed if parsed.tzinfo else from_local_naive(parsed, tz)


def _listener(console: Console, log_format: str) -> LogListener:
    if log_format not in ("text", "json"):
        raise fail(f"--log-format {log_format!r}: use text or json")
    configure_logging(log_format)
    if log_format == "text" and console.is_terminal:
        return ProgressListener(console)
    return LogListener()


@app.command()
def sync(
    endpoints: str | None = typer.Option(
        None, help="Comma-separated endpoints, or 'all'. Default: the seven the guide names."
    ),
    since: str | None = typer.Option(None, help="Test window start; leaves the watermark alone."),
    until: str | None = typer.Option(None, help="Test window end (default: now)."),
    full_refresh: bool = typer.Option(False, help="Fetch everything, ignoring the watermark."),
    reconcile: bool = typer.Option(
        False, help="Afterwards, soft-delete unsent orders and items the API no longer has."
    ),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    workers: int | None = typer.Option(
        None, help="Most endpoints fetched at once (up to 5; more than one while the API is slow)."
    ),
    config: ConfigOpt = None,
    log_format: LogFormat = "text",
    metrics_file: Path | None = typer.Option(
        None,
        "--metrics-file",
        help="Write the run's Prometheus metrics here (for node_exporter's textfile collector).",
    ),
    merchant: str | None = typer.Option(
        None, help="Sync this merchant of the settings file (default: each in turn)."
    ),
) -> None:
    """Bring the warehouse up to date with the API (exit 0 ok, 1 an endpoint failed)."""
    try:
        chosen = select(endpoints)
        names = [merchant] if merchant else merchant_names(config_path=config) or [None]
    except (ValueError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if metrics_file is not None:
        from ogsync.metrics_file import check_writable

        problem = check_writable(metrics_file)
        if problem:
            raise fail(problem)
    from ogsync.metrics_file import MerchantRun

    planned = []  # every merchant's settings are checked before any of them syncs
    for name in names:
        settings = _settings(
            destination=destination,
            schema=schema,
            env=env,
            base_url=base_url,
            workers=workers,
            config=config,
            merchant=name,
        )
        try:
            options = SyncOptions.from_settings(
                settings,
                chosen,
                since=_instant(since, settings.tz, "--since"),
                until=_instant(until, settings.tz, "--until"),
                full_refresh=full_refresh,
                reconcile=reconcile,
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        planned.append((name, settings, options))
    worst = EXIT_OK
    ran: list[MerchantRun] = []
    for name, settings, options in planned:  # one after another, each into its own schema
        if name is not None:
            err.print(f"merchant {name} (schema {settings.schema})")
        code, result = _run_logged(settings, options, log_format)
        worst = max(worst, code)
        if result is not None:  # one merchant failing does not keep the others from running
            failed = any(o.run.status != "success" for o in result.outcomes)
            last = _last_successes(settings) if failed and metrics_file else None
            ran.append(MerchantRun(name or "", result, last))
    if metrics_file is not None and ran:
        _write_metrics(metrics_file, ran)
    raise typer.Exit(worst)


def _run_logged(
    settings: Settings, options: SyncOptions, log_format: str
) -> tuple[int, SyncResult | None]:
    """Run a sync, backfill or reconcile with the output the user asked for.

    Returns its exit code and what it did: a run that failed as a whole counts each chosen
    endpoint failed, and one refused because another holds the warehouse has no result (the
    run holding it reports for itself).
    """
    console = Console(stderr=True)
    listener = _listener(console, log_format)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        result = run_sync(settings, options, listener, stop)
    except AlreadyRunning as exc:
        return _error(str(exc), EXIT_ENDPOINT_FAILED), None
    except AuthError as exc:
        return _error(str(exc), EXIT_AUTH), _failed_run(options, exc)
    except ApiError as exc:
        return _error(str(exc), EXIT_ENDPOINT_FAILED), _failed_run(options, exc)
    except (DestinationError, ConfigError) as exc:
        return _error(str(exc), EXIT_CONFIG), _failed_run(options, exc)
    finally:
        if isinstance(listener, ProgressListener):
            listener.close()
        signal.signal(signal.SIGTERM, previous)
    if console.is_terminal:
        console.print(summary_table(result))
    return result.exit_code, result


def _error(message: str, code: int) -> int:
    """Say what went wrong in one line, as `fail` does, without leaving yet."""
    return fail(message, code).exit_code


def _failed_run(options: SyncOptions, exc: Exception) -> SyncResult:
    """A run that failed before any endpoint ran: each chosen endpoint failed with it."""
    now = datetime.now(UTC)
    runs = [
        RunLog("", ep.name, "sync", now, status="failed", error=str(exc), finished_at=now)
        for ep in options.endpoints
    ]
    return SyncResult("", now, [EndpointOutcome(r.endpoint, "", r, ()) for r in runs])


def _write_metrics(path: Path, ran: list[MerchantRun]) -> None:
    """Write the metrics file; a failure to write is one line, not the exit code."""
    from ogsync.metrics_file import write_metrics_file

    try:
        write_metrics_file(path, ran, datetime.now(UTC))
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot write metrics file {path}: {exc}", highlight=False)


def _last_successes(settings: Settings) -> dict[str, datetime | None]:
    """Each endpoint's last successful sync, from the warehouse's run log (best effort)."""
    from ogsync.destinations import open_destination
    from ogsync.status import warehouse_status

    try:
        warehouse = open_destination(
            settings.destination, settings.schema, duckdb_memory_limit=settings.duckdb_memory_limit
        )
    except Exception:
        return {}
    try:
        return {s.endpoint: s.last_success_at for s in warehouse_status(warehouse, _now())}
    except Exception:
        return {}
    finally:
        warehouse.close()


def _now() -> datetime:
    return datetime.now(UTC)


@app.command()
def backfill(
    start: str = typer.Option(..., help="First day to load (ISO date, in the API's zone)."),
    end: str | None = typer.Option(None, help="Last moment to load (default: up to now)."),
    window: WindowSize = typer.Option(WindowSize.MONTH, help="Size of each window."),
    endpoints: str | None = typer.Option(
        None, help="Comma-separated endpoints, or 'all'. Default: the seven the guide names."
    ),
    slow_page_seconds: float = typer.Option(
        20.0, min=0.001, help="A page slower than this splits the rest of its window in two."
    ),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
    log_format: LogFormat = "text",
) -> None:
    """Load history in windows; started again after a stop, it resumes where it was."""
    settings = _settings(
        destination=destination, schema=schema, env=env, base_url=base_url, config=config
    )
    try:
        chosen = select(endpoints)
    except ValueError as exc:
        raise fail(str(exc)) from None
    first = _instant(start, settings.tz, "--start")
    assert first is not None
    try:
        spec = Backfill(
            start=first,
            end=_instant(end, settings.tz, "--end"),
            size=window,
            slow_page_seconds=slow_page_seconds,
        )
        options = SyncOptions.from_settings(settings, chosen, backfill=spec)
    except ValueError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(_run_logged(settings, options, log_format)[0])


@app.command()
def schedule(
    cron: str | None = typer.Option(
        None, help=f"When to sync (cron, in --timezone; settings: schedule; '{DEFAULT_CRON}')."
    ),
    timezone: str | None = typer.Option(
        None, help=f"Zone the cron is read in (settings: schedule_timezone; {DEFAULT_ZONE})."
    ),
    with_webhooks: bool = typer.Option(False, help="Also receive webhooks in this process."),
    webhooks_host: str = typer.Option("127.0.0.1", help="Address of the webhook receiver."),
    webhooks_port: int = typer.Option(8766, help="Port of the webhook receiver."),
    endpoints: str | None = typer.Option(
        None, help="Comma-separated endpoints, or 'all'. Default: the seven the guide names."
    ),
    reconcile: bool = typer.Option(False, help="Reconcile after each sync."),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
    log_format: LogFormat = "text",
) -> None:
    """Run `sync` on a schedule until stopped (SIGTERM or Ctrl-C finish the run in flight).

    With several merchants in the settings file, each run syncs each of them in turn.
    """
    from ogsync.schedule import Scheduler, validate_cron

    try:
        chosen = select(endpoints)
        names = merchant_names(config_path=config) or [None]
        runs = []
        for name in names:
            settings = _settings(destination=destination, schema=schema, env=env,
                                 base_url=base_url, config=config, merchant=name)  # fmt: skip
            settings.require_api_key()
            options = SyncOptions.from_settings(settings, chosen, reconcile=reconcile)
            runs.append((settings, options))
        cron = validate_cron(cron or runs[0][0].schedule)
        tz = zone(timezone or runs[0][0].schedule_timezone)
    except (ValueError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if log_format not in ("text", "json"):
        raise fail(f"--log-format {log_format!r}: use text or json")
    configure_logging(log_format)
    listener = LogListener()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    jobs = [_scheduled_sync(settings, options, listener) for settings, options in runs]
    scheduler = Scheduler(cron, tz, lambda event: max(job(event) for job in jobs))
    with contextlib.ExitStack() as stack:
        if with_webhooks:
            stack.enter_context(_webhook_receiver(runs[0][0], webhooks_host, webhooks_port))
        scheduler.run(stop)
    raise typer.Exit(EXIT_OK)


def _scheduled_sync(settings: Settings, options: SyncOptions, listener: LogListener):
    """One scheduled run; every outcome is an exit status for the log, never an exit."""
    log = logging.getLogger("ogsync.schedule")

    def job(stop: threading.Event) -> int:
        try:
            return run_sync(settings, options, listener, stop).exit_code
        except AlreadyRunning as exc:
            log.error("%s", exc)
            return EXIT_ENDPOINT_FAILED
        except (DestinationError, ConfigError) as exc:
            log.error("%s", exc)
            return EXIT_CONFIG
        except AuthError as exc:
            log.error("%s", exc)
            return EXIT_AUTH
        except ApiError as exc:
            log.error("%s", exc)
            return EXIT_ENDPOINT_FAILED

    return job


@contextlib.contextmanager
def _webhook_receiver(settings: Settings, host: str, port: int):
    from ogsync.webhooks.inbox import open_inbox
    from ogsync.webhooks.receiver import receiver_in_thread

    keys = settings.webhook_secrets
    if not keys:
        raise fail("no webhook secret: set OGSYNC_WEBHOOK_SECRET (the verification key)")
    with open_inbox(settings) as inbox, receiver_in_thread(inbox, keys, host, port) as running:
        err.print(f"ogsync webhooks: listening on {running.url}/webhooks/ordergroove")
        yield


@app.command("reconcile")
def reconcile_command(
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
    log_format: LogFormat = "text",
) -> None:
    """Catch deletions whose webhooks never arrived: unsent orders and items the API lost."""
    settings = _settings(
        destination=destination, schema=schema, env=env, base_url=base_url, config=config
    )
    options = SyncOptions.from_settings(settings, (), reconcile=True)
    raise typer.Exit(_run_logged(settings, options, log_format)[0])


@app.command()
def status(
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
    endpoints: str | None = typer.Option(
        None,
        help="Comma-separated endpoints, or 'all'. Default: the seven the guide names, and "
        "any other the warehouse has synced.",
    ),
    json_output: bool = typer.Option(False, "--json", help="A JSON list, for machines."),
    max_lag: str | None = typer.Option(
        None,
        help="Exit 1 if any endpoint is further behind now than this (26h, 90m, 2d); one "
        "never synced always is.",
    ),
) -> None:
    """Per endpoint: watermark, lag, last run and rows (exit 1 when staler than --max-lag)."""
    import json

    from ogsync.destinations import open_destination
    from ogsync.status import parse_duration, shown, stale, warehouse_status

    limit = None
    if max_lag is not None:
        try:
            limit = parse_duration(max_lag)
        except ValueError as exc:
            raise fail(f"--max-lag: {exc}") from None
    settings = _settings(destination=destination, schema=schema, config=config)
    try:
        chosen = {ep.name for ep in select(endpoints)} if endpoints else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    tolerance = timedelta(minutes=settings.clock_tolerance_minutes)
    try:
        warehouse = open_destination(settings.destination, settings.schema, read_only=True)
    except AlreadyRunning as exc:
        statuses = _running_sync_snapshot(exc).statuses
    except DestinationError as exc:
        raise fail(str(exc)) from None
    else:
        try:
            statuses = warehouse_status(warehouse, _now(), tolerance=tolerance)
        except Exception as exc:
            raise fail(f"cannot read the warehouse: {exc}".splitlines()[0]) from None
        finally:
            warehouse.close()
    statuses = shown(statuses, chosen)
    behind = set(stale(statuses, limit)) if limit is not None else set()
    if json_output:
        rows = [
            {**s.as_json(), "stale": None if limit is None else s.endpoint in behind}
            for s in statuses
        ]
        typer.echo(json.dumps(rows, indent=2))
    else:
        Console().print(_status_table(statuses, behind))
    if behind:
        named = ", ".join(f"{s.endpoint} ({_behind(s)})" for s in statuses if s.endpoint in behind)
        raise fail(f"staler than {max_lag}: {named}", EXIT_ENDPOINT_FAILED)


def _running_sync_snapshot(held: AlreadyRunning) -> Snapshot:
    """What the run holding the warehouse last wrote for readers; failing that, why the
    warehouse can't be read (exit 1)."""
    from ogsync.status_snapshot import read_snapshot

    snapshot = read_snapshot(held.snapshot, _now()) if held.snapshot else None
    if snapshot is None:
        raise fail(str(held), EXIT_ENDPOINT_FAILED)
    age = max((_now() - snapshot.taken_at).total_seconds(), 0)
    err.print(
        f"a sync (PID {snapshot.pid}) holds the warehouse: as it stood {age:.0f}s ago",
        highlight=False,
    )
    return snapshot


def _behind(s: EndpointStatus) -> str:
    if s.future_watermark:
        return "watermark in the future"
    return "never synced" if s.lag is None else _age(s.lag) + " behind"


def _status_table(statuses: list, behind: set[str]) -> Table:
    table = Table(title="ogsync status", title_justify="left")
    table.add_column("endpoint", no_wrap=True)
    for name in ("watermark", "lag", "last run", "status", "finished"):
        table.add_column(name)
    table.add_column("live", justify="right")
    table.add_column("deleted", justify="right")
    for s in statuses:
        run = s.last_run
        state = "" if run is None else run.status
        colour = {"success": "green", "failed": "red"}.get(state, "yellow")
        lag = "never synced" if s.lag is None else _age(s.lag)
        if s.future_watermark:
            lag = "watermark in the future: repaired next sync"
        table.add_row(
            s.endpoint,
            _when(s.watermark if s.incremental else s.fresh_as_of),
            f"[red]{lag}[/]" if s.endpoint in behind else lag,
            "" if run is None else run.kind,
            f"[{colour}]{state}[/]" if state else "",
            "" if run is None else _when(run.finished_at),
            f"{s.live:,}",
            f"{s.deleted:,}",
        )
    return table


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M}Z"


def _age(lag: timedelta) -> str:
    seconds = int(lag.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    return f"{sign}{minutes}m {secs}s" if minutes else f"{sign}{secs}s"


@app.command()
def check(
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Check the key: one /customers/?page_size=1 call (exit 0 ok, 3 refused)."""
    settings = _settings(env=env, base_url=base_url, config=config)
    try:
        api_key = settings.require_api_key()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    with api_client(settings, api_key, max_attempts=3) as client:
        try:
            clock = client.server_time(RequestStats())
        except AuthError as exc:
            raise fail(str(exc), EXIT_AUTH) from None
        except ApiError as exc:
            raise fail(str(exc), EXIT_ENDPOINT_FAILED) from None
    told = "no readable Date header" if clock is None else f"API clock {clock.isoformat()}"
    Console().print(
        f"[green]OK[/]: {settings.base_url} accepts the key and lists across customers ({told})"
    )


@app.command()
def demo(
    records: int = typer.Option(5_000, min=10, help="Size of the simulated merchant."),
    path: Path = typer.Option(Path("ogsync-demo.duckdb"), help="The DuckDB file to fill."),
) -> None:
    """Sync a simulated merchant into DuckDB, change it, and sync again."""
    from ogsync.demo import run_demo

    configure_logging("text")
    logging.getLogger("ogsync").setLevel(logging.WARNING)
    run_demo(records, path, Console())


def main() -> None:
    from ogsync.private import owner_only_umask

    owner_only_umask()  # the files a run creates hold customers' personal data
    # Arrow's default allocators keep freed memory for reuse; batches come and go, so the
    # system allocator keeps the process's footprint flat instead.
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    app()
