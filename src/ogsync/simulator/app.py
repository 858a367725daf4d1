"""The simulator's HTTP face: the nine list endpoints as documented, and `/__sim__/` controls."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ogsync.apitime import from_local_naive, parse_filter
from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint, FieldType
from ogsync.simulator.changes import Changer
from ogsync.simulator.clock import SimClock
from ogsync.simulator.deliver import WebhookDeliverer
from ogsync.simulator.faults import FaultDice, Faults, RateLimiter
from ogsync.simulator.store import Row, Store

log = logging.getLogger("ogsync.simulator")

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
BOOLEANS = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


class BadRequest(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        self.status = status
        self.payload = payload


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight: Counter[str] = field(default_factory=Counter)
    max_in_flight_total: int = 0

    def enter(self, endpoint: str) -> None:
        self.requests[endpoint] += 1
        self.in_flight[endpoint] += 1
        self.max_in_flight[endpoint] = max(self.max_in_flight[endpoint], self.in_flight[endpoint])
        total = sum(self.in_flight.values())
        self.max_in_flight_total = max(self.max_in_flight_total, total)

    def leave(self, endpoint: str, status: int) -> None:
        self.in_flight[endpoint] -= 1
        self.statuses[str(status)] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "statuses": dict(self.statuses),
            "faults": dict(self.faults),
            "max_concurrent": dict(self.max_in_flight),
            "max_concurrent_per_endpoint": max(self.max_in_flight.values(), default=0),
            "max_concurrent_total": self.max_in_flight_total,
        }


@dataclass
class Simulator:
    """Everything a request handler needs; one per running simulator."""

    store: Store
    clock: SimClock
    tz: ZoneInfo
    changer: Changer
    deliverer: WebhookDeliverer
    faults: Faults
    dice: FaultDice
    api_key: str
    limited_key: str | None = None
    stats: Stats = field(default_factory=Stats)
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.faults)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None):
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


# -- cursors -------------------------------------------------------------------------------


def encode_cursor(sort_ts: int, record_id: str, reverse: bool) -> str:
    raw = urlencode({"p": sort_ts, "i": record_id, **({"r": 1} if reverse else {})})
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(token: str) -> tuple[int, str, bool]:
    try:
        parts = dict(parse_qsl(base64.b64decode(token, validate=True).decode()))
        return int(parts["p"]), parts["i"], parts.get("r") == "1"
    except (binascii.Error, UnicodeDecodeError, KeyError, ValueError):
        raise BadRequest(404, {"detail": "Invalid cursor"}) from None


# -- filters -------------------------------------------------------------------------------


def _range_bound(sim: Simulator, param: str, value: str, *, end: bool) -> int:
    try:
        local = parse_filter(value, end=end)
    except ValueError:
        raise BadRequest(400, {param: ["Enter a valid date/time."]}) from None
    return int(from_local_naive(local, sim.tz).timestamp())


def _typed(ep: Endpoint, param: str, field_name: str, value: str) -> Any:
    kind = ep.field_named(field_name).type if field_name in ep.field_names else FieldType.INTEGER
    if kind == FieldType.INTEGER:
        try:
            return int(value)
        except ValueError:
            raise BadRequest(400, {param: ["A valid integer is required."]}) from None
    if kind == FieldType.BOOLEAN:
        if value not in BOOLEANS:
            raise BadRequest(400, {param: ["Must be a valid boolean."]})
        return int(BOOLEANS[value])
    return value


def _choice(params: dict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        choices = ", ".join(allowed)
        raise BadRequest(400, {name: [f"Select a valid choice. {value} is not one of {choices}."]})
    return value


def build_filters(sim: Simulator, ep: Endpoint, params: dict[str, str]) -> tuple[list[str], list]:
    """SQL conditions for a request's filters; unknown parameters are ignored, as by the API."""
    where: list[str] = []
    args: list[Any] = []
    if ep.range_filter:
        for param, end, op in ((ep.start_param, False, ">="), (ep.end_param, True, "<=")):
            if param and param in params:
                where.append(f"sort_ts {op} ?")
                args.append(_range_bound(sim, param, params[param], end=end))
    for param, field_name in ep.equality_filters.items():
        if param in params:
            where.append(f"f_{param} = ?")
            args.append(_typed(ep, param, field_name, params[param]))
    if ep.name == "products":
        autoship = _choice(params, "autoship_enabled", ("true", "false", "all"), "true")
        if autoship != "all":
            where.append("json_extract(body, '$.autoship_enabled') = ?")
            args.append(int(autoship == "true"))
        discontinued = _choice(params, "allow_discontinued", ("true", "false", "strict"), "false")
        if discontinued != "true":
            where.append("json_extract(body, '$.discontinued') = ?")
            args.append(int(discontinued == "strict"))
    if ep.name == "offer_profiles":
        status = _choice(params, "status", ("available", "archived", "all"), "available")
        if status != "all":
            where.append("json_extract(body, '$.status') = ?")
            args.append(status)
    return where, args


def page_size(params: dict[str, str]) -> int:
    """As Django REST framework: a bad or missing size means the default, a big one the cap."""
    try:
        size = int(params.get("page_size", DEFAULT_PAGE_SIZE))
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)


def page_url(request: Request, params: dict[str, str], **replace: Any) -> str:
    query = {k: v for k, v in params.items() if k not in ("cursor", "page")}
    query.update({k: str(v) for k, v in replace.items() if v is not None})
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
    return f"{base}?{urlencode(sorted(query.items()))}"


def cursor_page(sim: Simulator, request: Request, ep: Endpoint, params, where, args) -> bytes:
    size = page_size(params)
    after = before = None
    if "cursor" in params:
        sort_ts, record_id, reverse = decode_cursor(params["cursor"])
        if reverse:
            before = (sort_ts, record_id)
        else:
            after = (sort_ts, record_id)
    rows = sim.store.page(ep, where, args, after=after, before=before, limit=size + 1)
    more = len(rows) > size
    if before is not None:
        rows = rows[1:] if more else rows  # the extra row is the earliest one
        has_next, has_previous = True, more
    else:
        rows = rows[:size]
        has_next, has_previous = more, after is not None
    next_url = prev_url = None
    if rows and has_next:
        last = rows[-1]
        next_url = page_url(request, params, cursor=encode_cursor(last.sort_ts, last.id, False))
    if rows and has_previous:
        first = rows[0]
        prev_url = page_url(request, params, cursor=encode_cursor(first.sort_ts, first.id, True))
    return page_body(next_url, prev_url, rows)


def page_body(
    next_url: str | None, prev_url: str | None, rows: list[Row], count: int | None = None
):
    """The page's JSON, assembled from the stored record bodies without parsing them."""
    head = b'{"count":' + str(count).encode() + b"," if count is not None else b"{"
    return b"".join(
        [
            head,
            b'"next":',
            orjson.dumps(next_url),
            b',"previous":',
            orjson.dumps(prev_url),
            b',"results":[',
            b",".join(r.body for r in rows),
            b"]}",
        ]
    )


def number_page(sim: Simulator, request: Request, ep: Endpoint, params, where, args) -> bytes:
    """The deprecated page-number mode, served when X-OG-API-VERSION: 2 is absent."""
    size = page_size(params)
    try:
        number = int(params.get("page", "1"))
    except ValueError:
        number = 0
    count = sim.store.count_where(ep, where, args)
    last_page = max(1, -(-count // size))
    if not 1 <= number <= last_page:
        raise BadRequest(404, {"detail": "Invalid page."})
    rows = sim.store.page(ep, where, args, offset=(number - 1) * size, limit=size)
    next_url = page_url(request, params, page=number + 1) if number < last_page else None
    prev_url = page_url(request, params, page=number - 1) if number > 1 else None
    return page_body(next_url, prev_url, rows, count)


# -- responses that go wrong on purpose ----------------------------------------------------


class DroppedResponse(Response):
    """Headers promise the whole body; half of it is sent and the connection is cut."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        body = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": body, "more_body": True})
        raise ConnectionAbortedError("simulated connection drop")


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionAbortedError)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


# -- handlers ------------------------------------------------------------------------------


def http_date(sim: Simulator) -> str:
    return format_datetime(sim.clock.now_datetime().replace(microsecond=0), usegmt=True)


Body = Callable[[Simulator, Request, Endpoint, str], bytes]


def endpoint_handler(ep: Endpoint, body: Body, name: str):
    """A handler that counts the request, passes it through the faults and auth, and answers
    with `body(sim, request, ep, key)` (which may raise BadRequest)."""

    async def handler(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        sim.stats.enter(ep.name)
        status = 500
        try:
            response = await _serve(sim, request, ep, body)
            status = response.status_code
            response.headers["date"] = http_date(sim)
            return response
        finally:
            sim.stats.leave(ep.name, status)

    handler.__name__ = f"{name}_{ep.name}"
    return handler


async def _serve(sim: Simulator, request: Request, ep: Endpoint, body_for: Body) -> Response:
    """The answer, given when the simulated latency is up.

    The latency stands for all the time the real API takes to answer, its own work
    included, so the simulator's work on the answer is counted in it, not added to it.
    """
    loop = asyncio.get_running_loop()
    answer_at = loop.time() + sim.dice.latency_seconds()
    response = _answer(sim, request, ep, body_for)
    wait = answer_at - loop.time()
    if wait > 0:
        await asyncio.sleep(wait)
    return response


def _answer(sim: Simulator, request: Request, ep: Endpoint, body_for: Body) -> Response:
    client = request.client.host if request.client else "unknown"
    if not sim.limiter.allow(client):
        sim.stats.faults["rate_limit"] += 1
        return json_response({"detail": "Request was throttled."}, 429)
    key = request.headers.get("x-api-key")
    if key not in {sim.api_key, sim.limited_key} - {None}:
        return json_response({"detail": "Authentication credentials were not provided."}, 401)
    refusal = sim.dice.refusal(ep.name)
    if refusal:
        sim.stats.faults[refusal] += 1
        if refusal == "429":
            retry = sim.faults.retry_after
            headers = {"retry-after": str(retry)} if retry is not None else None
            return json_response({"detail": "Request was throttled."}, 429, headers)
        if refusal == "423":
            return json_response({"detail": "Resource is locked by another request."}, 423)
        return json_response({"detail": "Server error."}, sim.dice.server_error())
    try:
        body = body_for(sim, request, ep, key or "")
    except BadRequest as exc:
        return json_response(exc.payload, exc.status)
    spoiler = sim.dice.spoiler(ep.name)
    if spoiler:
        sim.stats.faults[spoiler] += 1
        if spoiler == "drop":
            return DroppedResponse(body, media_type="application/json")
        return Response(body[: len(body) // 2], media_type="application/json")
    return Response(body, media_type="application/json")


def list_body(sim: Simulator, request: Request, ep: Endpoint, key: str) -> bytes:
    params = dict(request.query_params)
    scoped = "customer" in params and "customer" in ep.equality_filters
    if key == sim.limited_key and not scoped:
        raise BadRequest(403, {"detail": "Authentication Failed"})
    where, args = build_filters(sim, ep, params)
    cursor_mode = request.headers.get("x-og-api-version") == "2"
    render = cursor_page if cursor_mode else number_page
    return render(sim, request, ep, params, where, args)


def retrieve_body(sim: Simulator, request: Request, ep: Endpoint, key: str) -> bytes:
    """GET /<endpoint>/<id>/: one record, or 404 once it is gone."""
    found = sim.store.body(ep, request.path_params["record_id"])
    if found is None:
        raise BadRequest(404, {"detail": "Not found."})
    return found


def _endpoint_or_404(request: Request) -> Endpoint:
    name = request.path_params["endpoint"]
    if name not in BY_NAME:
        raise BadRequest(404, {"detail": f"unknown endpoint {name}"})
    return BY_NAME[name]


async def truth(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    try:
        ep = _endpoint_or_404(request)
    except BadRequest as exc:
        return json_response(exc.payload, exc.status)

    async def chunks():
        yield b"["
        first = True
        for body in sim.store.iter_bodies(ep):
            yield body if first else b"," + body
            first = False
        yield b"]"

    return StreamingResponse(chunks(), media_type="application/json")


async def versions(request: Request) -> Response:
    """Every version each record of the endpoint has had since the merchant was generated,
    oldest first: `{"id", "record", "current"}` (current: the version served now; a deleted
    record has none)."""
    sim: Simulator = request.app.state.sim
    try:
        ep = _endpoint_or_404(request)
    except BadRequest as exc:
        return json_response(exc.payload, exc.status)
    return json_response(
        [
            {"id": record_id, "record": orjson.loads(body), "current": bool(current)}
            for record_id, _, body, current in sim.store.versions(ep)
        ]
    )


async def deleted(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    try:
        ep = _endpoint_or_404(request)
    except BadRequest as exc:
        return json_response(exc.payload, exc.status)
    return json_response([record_id for record_id, _ in sim.store.deleted(ep)])


async def advance(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    try:
        spec = orjson.loads(await request.body() or b"{}")
        minutes = float(spec.get("minutes", 0))
        changes = int(spec.get("changes", 0))
        if minutes < 0 or changes < 0:
            raise ValueError
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return json_response({"detail": "expected {'minutes': M >= 0, 'changes': K >= 0}"}, 400)
    start = sim.clock.now()
    sim.clock.advance(minutes * 60)
    end = sim.clock.now()
    before = Counter(sim.changer.counts)
    events = sim.changer.apply(start, end, changes)
    sim.deliverer.enqueue(events)
    made = Counter(sim.changer.counts)
    made.subtract(before)
    return json_response(
        {
            "clock": sim.clock.now_datetime().isoformat(),
            "changes": {k: v for k, v in made.items() if v},
            "events": Counter(e["type"] for e in events),
        }
    )


async def clock(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    if request.method == "POST":
        try:
            spec = orjson.loads(await request.body() or b"{}")
            if "set" in spec:
                sim.clock.set(datetime.fromisoformat(spec["set"]))
            if "frozen" in spec:
                sim.clock.frozen = bool(spec["frozen"])
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return json_response(
                {"detail": "expected {'set': ISO time with zone, 'frozen': bool}"}, 400
            )
    now = sim.clock.now_datetime()
    return json_response(
        {
            "now": now.isoformat(),
            "local": now.astimezone(sim.tz).strftime("%Y-%m-%d %H:%M:%S"),
            "timezone": str(sim.tz),
            "frozen": sim.clock.frozen,
        }
    )


async def stats(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    if request.method == "POST":
        sim.stats = Stats()
    return json_response(sim.stats.as_json())


async def faults(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    if request.method == "POST":
        try:
            sim.faults.update(orjson.loads(await request.body() or b"{}"))
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            return json_response({"detail": str(exc)}, 400)
    return json_response(asdict(sim.faults))


async def webhooks(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    payload = asdict(sim.deliverer.stats)
    payload["pending"] = sim.deliverer.pending
    payload["delivered_ids"] = sim.deliverer.sent_ids
    return json_response(payload)


def build_app(sim: Simulator) -> Starlette:
    routes = [
        Route(ep.path, endpoint_handler(ep, list_body, "list"), methods=["GET"]) for ep in ENDPOINTS
    ]
    routes += [
        Route(
            ep.path + "{record_id}/",
            endpoint_handler(ep, retrieve_body, "retrieve"),
            methods=["GET"],
        )
        for ep in ENDPOINTS
    ]
    routes += [
        Route("/__sim__/truth/{endpoint}", truth, methods=["GET"]),
        Route("/__sim__/deleted/{endpoint}", deleted, methods=["GET"]),
        Route("/__sim__/versions/{endpoint}", versions, methods=["GET"]),
        Route("/__sim__/advance", advance, methods=["POST"]),
        Route("/__sim__/clock", clock, methods=["GET", "POST"]),
        Route("/__sim__/stats", stats, methods=["GET"]),
        Route("/__sim__/stats/reset", stats, methods=["POST"]),
        Route("/__sim__/faults", faults, methods=["GET", "POST"]),
        Route("/__sim__/webhooks", webhooks, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sim.deliverer.start()
        yield
        await sim.deliverer.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = sim
    return app
