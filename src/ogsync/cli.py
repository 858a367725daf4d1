"""The `ogsync` command: a thin Typer layer over the library (`ogsync.runner`)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ogsync import __version__, runner
from ogsync.allocators import use_lean_allocators
from ogsync.apitime import from_local_naive, zone
from ogsync.config import CONFIG_FILE, ConfigError, Settings
from ogsync.destinations import EXAMPLES
from ogsync.endpoints import select
from ogsync.exit_codes import EXIT_CONFIG, EXIT_ENDPOINT_FAILED, EXIT_OK
from ogsync.options import Backfill, SyncOptions
from ogsync.outcome import Listener, SyncResult
from ogsync.output import (
    STDERR,
    LogListener,
    ProgressListener,
    configure_logging,
    summary_table,
)
from ogsync.plan import WindowSize
from ogsync.runner import Merchant
from ogsync.schedule import DEFAULT_CRON, DEFAULT_ZONE
from ogsync.simulator.cli import simulator_app

# What `ogsync --help` shows: written for someone meeting ogsync for the first time. Help is
# Markdown (paragraphs reflow to the terminal's width; brackets in text stay as written).
HELP = "\n\n".join(
    [
        "Keep a data warehouse in step with a merchant's Ordergroove subscription data.",
        "ogsync copies Ordergroove's customers, subscriptions, orders, items, addresses and "
        "more into DuckDB (a local file, the default) or PostgreSQL. The first sync loads "
        "everything, later ones only what changed; deletions arrive by Ordergroove's webhooks.",
        "**First steps**",
        "\n".join(
            [
                "    ogsync demo                see it work on a simulated merchant",
                "    ogsync init                write ogsync.toml, every setting explained",
                "    export OGSYNC_API_KEY=...  a key with Bulk Operations permission",
                "    ogsync check               does the API accept the key?",
                "    ogsync sync                bring the warehouse up to date",
                "    ogsync status              how far behind each endpoint is",
            ]
        ),
        "Flags beat environment variables (OGSYNC_...), which beat ogsync.toml. Exit codes: "
        "0 ok, 1 an endpoint failed, 2 bad usage or settings, 3 the API refused the key. "
        "Add -h to any command for its options.",
    ]
)

START, RUN, TRY = "Start here", "Keep it running", "Try it without an account"
# The order commands are listed in: as a newcomer meets them (others come last).
ORDER = ("init", "check", "sync", "status", "schema", "backfill", "reconcile", "schedule",
         "webhooks", "rewrite", "maintain", "demo", "simulator")  # fmt: skip


class _InOrder(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


# Tracebacks never show local variables: an API key is a local somewhere.
app = typer.Typer(
    cls=_InOrder,
    no_args_is_help=True,
    add_completion=False,
    help=HELP,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"ogsync {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """The options before any command."""


app.add_typer(simulator_app, name="simulator", rich_help_panel=TRY)

err = STDERR  # one Console for errors, progress bars and the log, so they never collide


# Options most commands share.
DestinationOpt = Annotated[str | None, typer.Option(help=f"{EXAMPLES} (OGSYNC_DESTINATION).")]
SchemaOpt = Annotated[str | None, typer.Option(help="Warehouse schema (OGSYNC_SCHEMA).")]
EnvOpt = Annotated[str | None, typer.Option(help="production or staging.")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="API base URL (OGSYNC_BASE_URL).")]
ConfigOpt = Annotated[Path | None, typer.Option(help="Settings file (default ./ogsync.toml).")]
MerchantOpt = Annotated[
    str | None,
    typer.Option(help="Only this merchant of the settings file (default: each in turn)."),
]


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _log_format(value: str) -> LogFormat:
    try:
        return LogFormat(value)
    except ValueError:
        raise fail(f"--log-format {value!r}: use text or json") from None


LogFormatOpt = Annotated[
    str,
    typer.Option(
        "--log-format",
        help="text, or json for one JSON object per event.",
        callback=_log_format,
    ),
]


def fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    """One clear line on stderr, and the exit code the design names."""
    _say_error(message)
    return typer.Exit(code)


webhooks_app = typer.Typer(
    no_args_is_help=True,
    help="Receive Ordergroove's deletion webhooks, and apply them to the warehouse.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(webhooks_app, name="webhooks", rich_help_panel=RUN)


class CliReporter(runner.Reporter):
    """The runner's work as a person at a terminal sees it: progress bars and a summary table
    on a terminal, log lines otherwise, errors as one red line."""

    def __init__(self, log_format: LogFormat = LogFormat.TEXT) -> None:
        self.log_format = log_format
        self.console = err
        self._progress: ProgressListener | None = None

    def merchant(self, merchant: Merchant) -> None:
        err.print(f"merchant {merchant.name} (schema {merchant.settings.schema})")

    def error(self, message: str) -> None:
        _say_error(message)

    def listener(self) -> Listener:
        if self.log_format == LogFormat.TEXT and self.console.is_terminal:
            self._progress = ProgressListener(self.console)
            return self._progress
        return LogListener()

    def synced(self, result: SyncResult) -> None:
        self._close_progress()
        if self.console.is_terminal:
            self.console.print(summary_table(result))

    def error_after_run(self) -> None:
        self._close_progress()

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None


def _say_error(message: str) -> None:
    # The message is text, not markup: "[postgres]" or "[merchants.x]" must show as written.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _merchants(
    only: str | None = None, config: Path | None = None, secrets: bool = True, **flags: object
) -> list[Merchant]:
    try:
        return runner.merchants(flags, config_path=config, only=only, secrets=secrets)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _each(chosen: list[Merchant], operation: Callable[[Merchant], int]) -> typer.Exit:
    """Run `operation` for each merchant; errors become one line and the runner's exit code."""
    return typer.Exit(runner.each_merchant(chosen, operation, CliReporter()))


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """SIGTERM finishes the batch in flight, then the run ends."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sync(
    chosen: list[Merchant],
    options_for: Callable[[Settings], SyncOptions],
    log_format: LogFormat,
    metrics_file: Path | None = None,
) -> typer.Exit:
    configure_logging(log_format)
    reporter = CliReporter(log_format)
    with _stop_on_sigterm() as stop:
        try:
            code = runner.sync_merchants(
                chosen, options_for, reporter, stop=stop, metrics_file=metrics_file
            )
        except ConfigError as exc:
            raise fail(str(exc)) from None
        finally:
            reporter.error_after_run()
    return typer.Exit(code)


@webhooks_app.command("serve")
def webhooks_serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8766, help="Port to listen on."),
    inbox: Path | None = typer.Option(
        None,
        help="SQLite inbox file (OGSYNC_WEBHOOK_INBOX). Default: the warehouse when it can "
        "hold it (PostgreSQL), else ogsync-inbox.sqlite.",
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
    merchant: MerchantOpt = None,
) -> None:
    """Receive signed webhooks at /webhooks/ordergroove into a durable inbox (key from
    OGSYNC_WEBHOOK_SECRET; during a rotation, both keys separated by a comma)."""
    from ogsync.webhooks.inbox import open_inbox
    from ogsync.webhooks.receiver import serve_webhooks

    try:
        chosen = runner.one_merchant(
            {"destination": destination, "schema": schema}, config_path=config, only=merchant,
            what="the webhook receiver",
        )  # fmt: skip
    except ConfigError as exc:
        raise fail(str(exc)) from None
    secrets = chosen.settings.webhook_secrets
    try:
        governance = chosen.settings.governance
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not secrets:
        raise fail("no webhook secret: set OGSYNC_WEBHOOK_SECRET (the verification key)")
    configure_logging("text")
    try:
        opened = open_inbox(chosen.settings, inbox)
    except Exception as exc:
        raise fail(f"cannot open the webhook inbox: {exc}") from None
    types = {t.strip() for t in event_types.split(",") if t.strip()}
    err.print(f"ogsync webhooks: listening on http://{host}:{port}/webhooks/ordergroove")
    serve_webhooks(
        opened, secrets, host, port, max_age_seconds=max_age_seconds, accepted_types=types,
        governance=governance,
    )  # fmt: skip


@webhooks_app.command("apply")
def webhooks_apply(
    inbox: Path | None = typer.Option(None, help="SQLite inbox file (OGSYNC_WEBHOOK_INBOX)."),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
    merchant: MerchantOpt = None,
) -> None:
    """Apply the inbox now: store every event, soft-delete what the deletions name."""
    chosen = _merchants(merchant, config, destination=destination, schema=schema)
    configure_logging("text")

    def apply(m: Merchant) -> int:
        result = runner.apply_webhooks(m, inbox)
        Console().print(
            f"{result.stored} events stored, {result.deletions} deletions recorded, "
            f"{result.soft_deleted} rows soft-deleted"
            + (
                f", {result.rejected} events rejected (see _ogsync_rejected)"
                if result.rejected
                else ""
            )
        )
        return EXIT_OK

    raise _each(chosen, apply)


def _instant(value: str | None, tz: ZoneInfo, name: str) -> datetime | None:
    """A --since/--until value: ISO date or time; without a zone it is the API's zone."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{name} {value!r} is not an ISO date or time (e.g. 2025-01-31T12:00)"
        ) from None
    return parsed if parsed.tzinfo else from_local_naive(parsed, tz)


def _endpoints(names: str | None) -> Any:
    try:
        return select(names)
    except ValueError as exc:
        raise fail(str(exc)) from None


@app.command(rich_help_panel=START)
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
    log_format: LogFormatOpt = "text",
    metrics_file: Path | None = typer.Option(
        None,
        "--metrics-file",
        help="Write the run's Prometheus metrics here (for node_exporter's textfile collector).",
    ),
    merchant: MerchantOpt = None,
) -> None:
    """Bring the warehouse up to date: the first sync loads everything, later ones what changed.

    Exit 0 when every endpoint synced, 1 when one failed (the others still commit).
    """
    chosen_endpoints = _endpoints(endpoints)
    if metrics_file is not None:
        from ogsync.metrics_file import check_writable

        problem = check_writable(metrics_file)
        if problem:
            raise fail(problem)
    chosen = _merchants(
        merchant, config, destination=destination, schema=schema, env=env, base_url=base_url,
        workers=workers,
    )  # fmt: skip

    def options(settings: Settings) -> SyncOptions:
        return SyncOptions.from_settings(
            settings,
            chosen_endpoints,
            since=_instant(since, settings.tz, "--since"),
            until=_instant(until, settings.tz, "--until"),
            full_refresh=full_refresh,
            reconcile=reconcile,
        )

    raise _sync(chosen, options, log_format, metrics_file)


@app.command(rich_help_panel=RUN)
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
    log_format: LogFormatOpt = "text",
    merchant: MerchantOpt = None,
) -> None:
    """Load history window by window; stopped and started again, it resumes where it was."""
    chosen = _merchants(
        merchant, config, destination=destination, schema=schema, env=env, base_url=base_url
    )
    chosen_endpoints = _endpoints(endpoints)

    def options(settings: Settings) -> SyncOptions:
        first = _instant(start, settings.tz, "--start")
        assert first is not None
        spec = Backfill(
            start=first,
            end=_instant(end, settings.tz, "--end"),
            size=window,
            slow_page_seconds=slow_page_seconds,
        )
        return SyncOptions.from_settings(settings, chosen_endpoints, backfill=spec)

    raise _sync(chosen, options, log_format)


@app.command(rich_help_panel=RUN)
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
    log_format: LogFormatOpt = "text",
    merchant: MerchantOpt = None,
) -> None:
    """Sync on a schedule (the settings' cron, 13:00 Chicago by default) until stopped.

    SIGTERM or Ctrl-C let the run in flight finish its batch. With several merchants in the
    settings file, each run syncs each of them in turn.
    """
    from ogsync.schedule import Scheduler, validate_cron

    chosen_endpoints = _endpoints(endpoints)
    chosen = _merchants(
        merchant, config, destination=destination, schema=schema, env=env, base_url=base_url
    )

    def options(settings: Settings) -> SyncOptions:
        return SyncOptions.from_settings(settings, chosen_endpoints, reconcile=reconcile)

    try:
        for m in chosen:  # a missing key or bad options stop the scheduler before it starts
            m.settings.require_api_key()
            options(m.settings)
        first = chosen[0].settings
        cron = validate_cron(cron or first.schedule)
        tz = zone(timezone or first.schedule_timezone)
    except (ValueError, ConfigError) as exc:
        raise fail(str(exc)) from None
    configure_logging(log_format)
    reporter = runner.Reporter()  # the log only: nobody watches a scheduler's terminal
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def job(stop: threading.Event) -> int:
        try:
            return runner.sync_merchants(chosen, options, reporter, stop=stop)
        except ConfigError as exc:
            reporter.error(str(exc))
            return EXIT_CONFIG

    scheduler = Scheduler(cron, tz, job)
    with contextlib.ExitStack() as stack:
        if with_webhooks:
            stack.enter_context(_webhook_receiver(chosen[0].settings, webhooks_host, webhooks_port))
        scheduler.run(stop)
    raise typer.Exit(EXIT_OK)


@contextlib.contextmanager
def _webhook_receiver(settings: Settings, host: str, port: int) -> Iterator[None]:
    from ogsync.webhooks.inbox import open_inbox
    from ogsync.webhooks.receiver import receiver_in_thread

    keys = settings.webhook_secrets
    if not keys:
        raise fail("no webhook secret: set OGSYNC_WEBHOOK_SECRET (the verification key)")
    with (
        open_inbox(settings) as inbox,
        receiver_in_thread(inbox, keys, host, port, governance=settings.governance) as running,
    ):
        err.print(f"ogsync webhooks: listening on {running.url}/webhooks/ordergroove")
        yield


@app.command("reconcile", rich_help_panel=RUN)
def reconcile_command(
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    config: ConfigOpt = None,
    log_format: LogFormatOpt = "text",
    merchant: MerchantOpt = None,
) -> None:
    """Catch deletions whose webhooks never arrived: unsent orders and items the API lost."""
    chosen = _merchants(
        merchant, config, destination=destination, schema=schema, env=env, base_url=base_url
    )

    def options(settings: Settings) -> SyncOptions:
        return SyncOptions.from_settings(settings, (), reconcile=True)

    raise _sync(chosen, options, log_format)


@app.command(rich_help_panel=START)
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
    merchant: MerchantOpt = None,
) -> None:
    """How far behind each endpoint is: watermark, lag, last run and rows.

    With --max-lag, exit 1 when an endpoint is staler than that (for monitoring).
    """
    import json

    from ogsync.status import parse_duration, stale
    from ogsync.status_render import how_far_behind, status_rows, status_table

    limit = None
    if max_lag is not None:
        try:
            limit = parse_duration(max_lag)
        except ValueError as exc:
            raise fail(f"--max-lag: {exc}") from None
    chosen = _merchants(merchant, config, destination=destination, schema=schema, secrets=False)
    chosen_endpoints = _endpoints(endpoints) if endpoints else None
    rows: list[dict[str, Any]] = []

    def show(m: Merchant) -> int:
        report = runner.status(m, chosen_endpoints)
        if report.snapshot_pid is not None and report.snapshot_age is not None:
            err.print(
                f"a sync (PID {report.snapshot_pid}) holds the warehouse: as it stood "
                f"{report.snapshot_age.total_seconds():.0f}s ago",
                highlight=False,
            )
        statuses = report.statuses
        behind = set(stale(statuses, limit)) if limit is not None else set()
        if json_output:
            rows.extend(status_rows(statuses, behind if limit is not None else None, m.name))
        else:
            title = "ogsync status" + (f": {m.name} (schema {m.settings.schema})" if m.name else "")
            Console().print(status_table(statuses, behind, title))
        if not behind:
            return EXIT_OK
        named = ", ".join(
            f"{s.endpoint} ({how_far_behind(s)})" for s in statuses if s.endpoint in behind
        )
        _say_error(f"staler than {max_lag}: {named}")
        return EXIT_ENDPOINT_FAILED

    code = runner.each_merchant(chosen, show, _QuietHeaders())
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
    raise typer.Exit(code)


class _QuietHeaders(CliReporter):
    """Status names each merchant in its table's title, not on a line of its own."""

    def merchant(self, merchant: Merchant) -> None:
        return


@app.command(rich_help_panel=RUN)
def rewrite(
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
    merchant: MerchantOpt = None,
) -> None:
    """Bring what the warehouse holds under the settings' field rules, after they changed.

    The rules are the `[endpoints.NAME]` tables' exclude and hash lists; rewritten are the
    current and history tables, _raw and the stored webhooks.
    """
    chosen = _merchants(merchant, config, destination=destination, schema=schema)
    configure_logging("text")

    def rewrite_one(m: Merchant) -> int:
        done = runner.rewrite(m)
        for line in done or ["nothing to rewrite: the warehouse follows the settings' rules"]:
            Console().print(line, highlight=False)
        return EXIT_OK

    raise _each(chosen, rewrite_one)


@app.command(rich_help_panel=RUN)
def maintain(
    retention: str = typer.Option(
        "7d",
        help="Delete only the files replaced longer ago than this, so a reader that began "
        "before still finds them (12h, 2d; 0h: every file no longer read).",
    ),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
    merchant: MerchantOpt = None,
) -> None:
    """Compact a lakehouse's (Delta Lake, Iceberg) small files, and delete the files no recent
    commit reads; a line per table. Other warehouses keep their own files.

    Run it when no sync is writing: one that is makes it exit 1.
    """
    from ogsync.maintenance import maintain_settings
    from ogsync.status import parse_duration

    try:
        keep = parse_duration(retention)
    except ValueError as exc:
        raise fail(f"--retention: {exc}") from None
    chosen = _merchants(merchant, config, destination=destination, schema=schema, secrets=False)
    configure_logging("text")

    def maintain_one(m: Merchant) -> int:
        done = maintain_settings(m.settings, keep)
        for line in done.lines():
            Console().print(line, highlight=False, markup=False, soft_wrap=True)
        return EXIT_OK

    raise _each(chosen, maintain_one)


class SchemaFormat(StrEnum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"


@app.command(rich_help_panel=START)
def schema(
    table: str | None = typer.Argument(None, help="One table or view (default: all)."),
    output: SchemaFormat = typer.Option(
        SchemaFormat.TABLE, "--format", help="table (for a terminal), markdown or json."
    ),
    config: ConfigOpt = None,
    merchant: MerchantOpt = None,
) -> None:
    """Print the data dictionary: every table ogsync writes and what each column means,
    following the settings' history and field rules."""
    import json

    from ogsync import dictionary, schema_render
    from ogsync.destinations import kind_of

    chosen = _merchants(merchant, config, secrets=False)
    try:
        rules = chosen[0].settings.rules  # history and field rules are the file's, not a merchant's
    except ConfigError as exc:
        raise fail(str(exc)) from None
    # With the tables only some warehouses write (the inbox, leases), where a merchant's does.
    own = {name for m in chosen for name in kind_of(m.settings.destination).own_tables}
    docs = dictionary.tables(rules, also=sorted(own))
    if table is not None:
        try:
            docs = [dictionary.table(table, rules)]
        except KeyError:
            raise fail(
                f"no table {table!r}: ogsync writes {', '.join(d.name for d in docs)}"
            ) from None
    if output == SchemaFormat.JSON:
        shown = [schema_render.as_json(d) for d in docs]
        typer.echo(json.dumps(shown[0] if table is not None else shown, indent=2))
    elif output == SchemaFormat.MARKDOWN:
        typer.echo(schema_render.markdown(docs), nl=False)
    else:
        console = Console()
        for rendered in schema_render.rich_tables(docs):
            console.print(rendered)
    raise typer.Exit(EXIT_OK)


@app.command(rich_help_panel=START)
def check(
    env: EnvOpt = None,
    base_url: BaseUrlOpt = None,
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
    merchant: MerchantOpt = None,
) -> None:
    """Check that the API accepts the key and lets it list in bulk (exit 3 if not); and, for a
    warehouse that can tell (Snowflake), what its role may do there (exit 2: grants missing).

    One call, /customers/?page_size=1, which also reads the API's clock.
    """
    chosen = _merchants(
        merchant, config, env=env, base_url=base_url, destination=destination, schema=schema
    )

    def check_one(m: Merchant) -> int:
        result = runner.check(m)
        clock = result.api_clock
        told = "no readable Date header" if clock is None else f"API clock {clock.isoformat()}"
        out = Console()
        out.print(
            f"[green]OK[/]: {result.base_url} accepts the key and lists across customers ({told})"
        )
        access = result.warehouse
        if access is not None:
            for line in access.found:
                out.print(f"[green]OK[/]: {escape(f'{access.warehouse}: {line}')}", highlight=False)
            for line in access.missing:
                _say_error(f"{access.warehouse}: {line}")
            if access.grants:
                err.print("An administrator can allow it with:", highlight=False)
                for grant in access.grants:
                    err.print(f"    {escape(grant)}", highlight=False, soft_wrap=True)
        return result.exit_code

    raise _each(chosen, check_one)


@app.command(rich_help_panel=START)
def init(
    path: Path = typer.Argument(Path(CONFIG_FILE), help="Where to write the settings file."),
    force: bool = typer.Option(False, "--force", help="Write over an existing file."),
) -> None:
    """Write ogsync.toml: every setting at its default, with what it does."""
    from ogsync.settings_file import write_settings_file
    from ogsync.shell import runnable

    try:
        write_settings_file(path, force=force)
    except FileExistsError:
        raise fail(f"{path} exists: edit it, or write a new one over it with --force") from None
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}") from None
    where = "" if path == Path(CONFIG_FILE) else f" (ogsync reads it with --config {path})"
    ogsync = runnable("ogsync")
    Console(highlight=False).print(
        f"Wrote {path}: every setting, commented out at its default{where}.\n"
        "The API key is not kept in it. Next:\n"
        "  export OGSYNC_API_KEY=...   # an API key with the Bulk Operations permission\n"
        f"  {ogsync} check\n"
        f"  {ogsync} sync",
        soft_wrap=True,
        markup=False,
    )


dbt_app = typer.Typer(
    no_args_is_help=True,
    help="ogsync's dbt package: analytics models (MRR, churn, retention) on the warehouse.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(dbt_app, name="dbt", rich_help_panel=START)


@dbt_app.command("init")
def dbt_init(
    directory: Path = typer.Argument(..., help="Folder for the dbt project (made if missing)."),
    destination: DestinationOpt = None,
    schema: SchemaOpt = None,
    config: ConfigOpt = None,
    merchant: MerchantOpt = None,
    force: bool = typer.Option(False, "--force", help="Overwrite the project's files."),
) -> None:
    """Write a dbt project using ogsync's dbt package, its profile pointing at the warehouse
    (secrets read from the environment, never written)."""
    from rich.markup import escape

    from ogsync.analytics.scaffold import init_project
    from ogsync.extras import install_hint
    from ogsync.shell import runnable

    chosen = _merchants(merchant, config, destination=destination, schema=schema, secrets=False)
    if len(chosen) > 1:
        names = ", ".join(m.label for m in chosen)
        raise fail(f"ogsync dbt init writes one merchant's project: choose --merchant ({names})")
    try:
        made = init_project(directory, chosen[0].settings, force=force)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    # Commands to copy: never wrapped, and [dbt] is the extra's name, not markup.
    out = Console(highlight=False, soft_wrap=True, markup=False)
    for warning in made.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    out.print(f"Wrote a dbt project in {directory} (profile and packages.yml).")
    if made.adapter in ("dbt-duckdb", "dbt-postgres"):
        install = f"{install_hint('dbt')} installs dbt with it"
    else:
        install = f"pip install '{made.adapter}>=1.11,<1.12'"
    out.print(f"It needs dbt with the {made.adapter} adapter ({install}). Then:")
    for name, why in made.environment.items():
        out.print(f"    export {name}=...    # {why}")
    dbt = runnable("dbt")
    out.print(f"    cd {directory} && {dbt} deps && {dbt} build")


@app.command(rich_help_panel=TRY)
def demo(
    records: int = typer.Option(5_000, min=10, help="Size of the simulated merchant."),
    path: Path = typer.Option(Path("ogsync-demo.duckdb"), help="The DuckDB file to fill."),
) -> None:
    """Sync a simulated merchant into DuckDB, change it, sync again; then build ogsync's dbt
    package on it and show MRR and churn by month (when dbt is installed)."""
    from ogsync.demo import run_demo

    configure_logging("text")
    logging.getLogger("ogsync").setLevel(logging.WARNING)
    run_demo(records, path, Console())


def main() -> None:
    from ogsync.private import owner_only_umask

    owner_only_umask()  # the files a run creates hold customers' personal data
    use_lean_allocators()
    app()
