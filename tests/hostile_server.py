"""A hostile (or broken) Ordergroove API for the tests: real HTTP on loopback.

It answers `/customers/` (the run's clock and key check) and lists `/orders/` in the shape the
real API uses, but each page can be made to misbehave: a `next` link to another origin, a gzip
bomb, a cursor that never ends, a long `Retry-After`, a `Date` of our choosing. Every request
it receives is recorded with its headers, so a test can tell where the key went.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

KEY = "sk-HOSTILE-TEST-7c1e55aa-KEY"


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


# What a listing page answers: (status, headers, body) from the request's query.
Page = Callable[["Hostile", dict[str, list[str]]], tuple[int, dict[str, str], bytes]]


@dataclass
class Hostile:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    date: Callable[[], str | None] = lambda: format_datetime(datetime.now(UTC), usegmt=True)
    orders: Page | None = None

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def records(first: int, count: int) -> list[dict[str, object]]:
    return [
        {"public_id": f"o{n:06d}", "updated": "2024-05-01 10:00:00", "status": 1}
        for n in range(first, first + count)
    ]


def page(results: list[dict[str, object]], next_url: str | None) -> bytes:
    return orjson.dumps({"next": next_url, "previous": None, "results": results})


def gzip_bomb(decoded: int) -> bytes:
    """`decoded` bytes of JSON-looking zeros, gzip-compressed (about a thousandth the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"0" * 2**20
    parts = [packer.compress(b'{"next": null, "results": [], "pad": "')]
    parts += [packer.compress(chunk) for _ in range(decoded // len(chunk))]
    parts.append(packer.compress(b'"}') + packer.flush())
    return b"".join(parts)


def _handler(state: Hostile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            state.seen.append(
                Seen(parts.path, query, {k.lower(): v for k, v in self.headers.items()})
            )
            if parts.path == "/customers/":
                status, headers, body = 200, {}, page([], None)
            elif parts.path == "/orders/" and state.orders is not None:
                status, headers, body = state.orders(state, query)
            else:
                status, headers, body = 404, {}, b'{"detail": "Not found."}'
            self.send_response(status)
            date = state.date()
            if date is not None:
                self.send_header("Date", date)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def send_response(self, code: int, message: str | None = None) -> None:
            # http.server adds its own Date; the hostile one sends (or withholds) its own.
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Server", "hostile")

    return Handler


@contextmanager
def hostile_api(host: str = "127.0.0.1") -> Iterator[Hostile]:
    state = Hostile()
    server = ThreadingHTTPServer((host, 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
