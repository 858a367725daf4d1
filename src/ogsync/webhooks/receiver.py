"""The webhook receiver: verify, store durably, then answer.

`POST /webhooks/ordergroove` answers 2xx only once the event is committed to the inbox, so an
event the sender saw accepted survives a crash right after; anything else is a non-2xx and the
sender delivers it again (duplicates are stored once). `GET /healthz` and `GET /metrics`
(Prometheus text) go with it.

Statuses: 200 stored (or already stored); 401 missing, malformed, wrong or (when a maximum age
is set) stale signature, checked before the body is read; 413 body over 1 MiB; 408 a body
that did not arrive in time; 400 a signed body that is not a JSON object with
an `id` and a `type`; 503 the inbox could not commit in time (the sender retries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ogsync.governance import NONE, Governance
from ogsync.serving import serve_until_stopped, uvicorn_config, uvicorn_in_thread
from ogsync.webhooks.deadlines import HEADER_TIMEOUT_SECONDS, with_header_deadline
from ogsync.webhooks.inbox import Inbox, InboxEvent, InvalidEvent, NotJSON
from ogsync.webhooks.signature import HEADER, SignatureError, parse, verify

log = logging.getLogger("ogsync.webhooks.receiver")

PATH = "/webhooks/ordergroove"
MAX_BODY = 1024 * 1024  # 1 MiB
DEFAULT_TYPES = frozenset({"order.delete", "item.remove"})
# Well inside the sender's 5-second timeout: past this, answer 503 and let it retry.
COMMIT_TIMEOUT_SECONDS = 3.0
# A body of at most 1 MiB that takes longer than this is not a sender's: drop it.
BODY_TIMEOUT_SECONDS = 15.0
# Connections at once; past this uvicorn answers 503 (the sender retries) rather than running
# out of file descriptors. Slow ones are closed by their deadlines (ogsync.webhooks.deadlines).
MAX_CONNECTIONS = 1000
REASONS = (
    "missing_signature",
    "malformed_signature",
    "bad_signature",
    "stale_signature",
    "too_large",
    "not_json",
    "invalid_event",
    "disconnected",
    "slow_body",
    "inbox_error",
)


class ReceiverMetrics:
    """The receiver's counters, in a registry of their own (one per app)."""

    def __init__(self, inbox: Inbox) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        prefix = "ogsync_webhook"
        self.received = Counter(
            f"{prefix}_events_received", "POSTs to the webhook path", registry=self.registry
        )
        self.rejected = Counter(
            f"{prefix}_events_rejected",
            "Requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in REASONS:
            self.rejected.labels(reason)
        self.stored = Counter(
            f"{prefix}_events_stored", "New events committed to the inbox", registry=self.registry
        )
        self.duplicates = Counter(
            f"{prefix}_events_duplicate",
            "Events already in the inbox (answered 2xx, not stored again)",
            registry=self.registry,
        )
        self.ignored = Counter(
            f"{prefix}_events_ignored",
            "Stored events of a type that acts on no rows (they still reach the events table)",
            registry=self.registry,
        )
        # Applying happens in another process (a sync, `webhooks apply`): read from the inbox.
        self.applied = Gauge(
            f"{prefix}_events_applied",
            "Inbox events the warehouse has taken in",
            registry=self.registry,
        )
        self.applied.set_function(lambda: _count(inbox.applied, "applied"))
        self.backlog = Gauge(
            f"{prefix}_inbox_backlog", "Inbox events not applied yet", registry=self.registry
        )
        self.backlog.set_function(lambda: _count(inbox.backlog, "backlog"))
        self.commits = Gauge(
            f"{prefix}_inbox_commits",
            "Transactions the inbox writer committed (each may hold many events)",
            registry=self.registry,
        )
        self.commits.set_function(lambda: float(inbox.commits))
        self.latency = Histogram(
            f"{prefix}_request_seconds",
            "Time to answer a webhook POST",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )


def _count(count: Callable[[], int], what: str) -> float:
    """An inbox count for a gauge; NaN (not a failed scrape) when the inbox cannot say."""
    try:
        return float(count())
    except Exception as exc:
        log.warning("inbox %s unavailable: %s", what, exc)
        return float("nan")


@dataclass
class _Refusal(Exception):
    status: int
    reason: str
    detail: str


async def _read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The body, within `seconds`: a body that never finishes is a 408 refusal."""
    try:
        return await asyncio.wait_for(_read_limited(request, limit), seconds)
    except TimeoutError:
        raise _Refusal(408, "slow_body", f"body not received within {seconds:g}s") from None


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, reading no more than `limit` + 1 bytes: more is a 413 refusal."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise _Refusal(400, "invalid_event", "bad Content-Length")
        if int(declared) > limit:
            raise _Refusal(413, "too_large", f"body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Refusal(413, "too_large", f"body over {limit} bytes")
    except ClientDisconnect:
        raise _Refusal(400, "disconnected", "client went away mid-body") from None
    return bytes(body)


def build_receiver(
    inbox: Inbox,
    secrets: list[str],
    max_age_seconds: int | None = None,
    accepted_types: set[str] | frozenset[str] | None = None,
    *,
    max_body: int = MAX_BODY,
    commit_timeout: float = COMMIT_TIMEOUT_SECONDS,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
    close_inbox: bool = False,
    governance: Governance = NONE,
) -> Starlette:
    """The ASGI app. `accepted_types` are the event types that act on the warehouse (default:
    the deletions); events of other types are stored too, and reach its `events` table.
    With `close_inbox`, the server's shutdown (lifespan) closes the inbox after the last
    request has been answered. The inbox keeps each body with `governance`'s field rules
    applied (the signature was checked on the body as sent)."""
    keys = [s for s in secrets if s]
    if not keys:
        raise ValueError("the receiver needs at least one webhook secret")
    if max_age_seconds is not None and max_age_seconds <= 0:
        raise ValueError("max_age_seconds must be above 0")
    receiver = _Receiver(
        inbox,
        keys,
        max_age_seconds,
        DEFAULT_TYPES if accepted_types is None else frozenset(accepted_types),
        max_body=max_body,
        commit_timeout=commit_timeout,
        body_timeout=body_timeout,
        governance=governance,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if close_inbox:
            await run_in_threadpool(inbox.close)

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route(PATH, receiver.receive, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/metrics", receiver.scrape, methods=["GET"]),
        ],
    )
    app.state.inbox = inbox
    app.state.metrics = receiver.metrics
    return app


@dataclass
class _Receiver:
    """The receiver's endpoints; `build_receiver` checks its settings and routes to them."""

    inbox: Inbox
    keys: list[str]
    max_age_seconds: int | None
    types: frozenset[str]
    max_body: int
    commit_timeout: float
    body_timeout: float
    governance: Governance

    def __post_init__(self) -> None:
        self.metrics = ReceiverMetrics(self.inbox)

    async def receive(self, request: Request) -> Response:
        started = time.perf_counter()
        self.metrics.received.inc()
        try:
            event = await self._verified_event(request)
            return await self._stored(event)
        except _Refusal as refusal:
            return self._refuse(refusal, request)
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)

    async def _verified_event(self, request: Request) -> InboxEvent:
        # The header is checked before a byte of the body is read: an unsigned sender gets
        # nothing of ours but a 401.
        headers = request.headers.getlist(HEADER)
        if not headers or not any(h.strip() for h in headers):
            raise _Refusal(401, "missing_signature", f"no {HEADER} header")
        header = ",".join(headers)
        try:
            parse(header)
        except SignatureError as exc:
            raise _Refusal(401, "malformed_signature", str(exc)) from None
        body = await _read_body(request, self.max_body, self.body_timeout)
        try:
            timestamp = verify(header, body, self.keys)
        except SignatureError:
            raise _Refusal(401, "bad_signature", "signature does not match the body") from None
        limit = self.max_age_seconds
        if limit is not None and abs(time.time() - timestamp) > limit:
            raise _Refusal(401, "stale_signature", f"ts is more than {limit}s off")
        try:
            event = InboxEvent.from_body(body)
        except (InvalidEvent, UnicodeDecodeError) as exc:
            not_json = isinstance(exc, NotJSON | UnicodeDecodeError)
            reason = "not_json" if not_json else "invalid_event"
            raise _Refusal(400, reason, str(exc)) from None
        if self.governance.changes_records:
            event = replace(event, payload=self.governance.payload(event.payload))
        return event

    async def _stored(self, event: InboxEvent) -> Response:
        try:
            # Wait on the inbox's future, not on a thread: a timeout cancels the write if it
            # has not begun.
            future = asyncio.wrap_future(self.inbox.submit(event))
            fresh = await asyncio.wait_for(future, self.commit_timeout)
        except Exception as exc:
            detail = "inbox commit timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.error("webhook %s not stored: %s", event.event_id, detail or type(exc).__name__)
            self.metrics.rejected.labels("inbox_error").inc()
            return JSONResponse({"error": "inbox_error"}, 503, headers={"Retry-After": "5"})
        if fresh:
            self.metrics.stored.inc()
            # Every event goes to the warehouse's `events` table; only these types act on rows.
            if event.type not in self.types:
                self.metrics.ignored.inc()
        else:
            self.metrics.duplicates.inc()
        status = "stored" if fresh else "duplicate"
        return JSONResponse({"status": status, "id": event.event_id})

    def _refuse(self, refusal: _Refusal, request: Request) -> Response:
        self.metrics.rejected.labels(refusal.reason).inc()
        client = request.client.host if request.client else "?"
        log.warning(
            "webhook refused: %d %s (%s) from %s",
            refusal.status,
            refusal.reason,
            refusal.detail,
            client,
        )
        return JSONResponse({"error": refusal.reason, "detail": refusal.detail}, refusal.status)

    async def healthz(self, request: Request) -> Response:
        healthy = self.inbox.healthy()
        return JSONResponse({"status": "ok" if healthy else "inbox down"}, 200 if healthy else 503)

    async def scrape(self, request: Request) -> Response:
        text = await run_in_threadpool(generate_latest, self.metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


def receiver_config(
    app: Any,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
) -> uvicorn.Config:
    return uvicorn_config(
        app,
        host,
        port,
        timeout_keep_alive=30,  # senders keep connections
        limit_concurrency=max_connections,
        http=with_header_deadline(header_timeout),
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
    )


def serve_webhooks(
    inbox: Inbox,
    secrets: list[str],
    host: str = "127.0.0.1",
    port: int = 8766,
    *,
    max_age_seconds: int | None = None,
    accepted_types: Iterable[str] | None = None,
    governance: Governance = NONE,
) -> None:
    """Serve the receiver under uvicorn until interrupted; close the inbox afterwards."""
    app = build_receiver(
        inbox,
        secrets,
        max_age_seconds,
        set(accepted_types) if accepted_types is not None else None,
        close_inbox=True,
        governance=governance,
    )
    try:
        serve_until_stopped(receiver_config(app, host, port))
    finally:
        inbox.close()


@dataclass
class RunningReceiver:
    url: str  # base URL; the webhook path is `url + PATH`
    app: Starlette
    server: uvicorn.Server

    @property
    def webhook_url(self) -> str:
        return self.url + PATH


@contextmanager
def receiver_in_thread(
    inbox: Inbox,
    secrets: list[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    **kwargs: Any,
) -> Iterator[RunningReceiver]:
    """The receiver serving from a thread of this process (for tests); the inbox stays open."""
    app = build_receiver(inbox, secrets, **kwargs)
    config = receiver_config(
        app, host, port, max_connections=max_connections, header_timeout=header_timeout
    )
    with uvicorn_in_thread(config, "ogsync-receiver") as server:
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield RunningReceiver(f"http://{host}:{bound}", app, server)
