"""The API client's own transport (urllib3) over real sockets on loopback: what it sends,
how it decodes, and how each way a connection can fail reaches the client's retries."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from hostile_server import KEY, gzip_bomb, hostile_api, page, records
from ogsync.api_transport import TransportFailure, Urllib3Transport, os_reason, with_query
from ogsync.client import (
    API_VERSION_HEADER,
    ApiError,
    OrdergrooveClient,
    RateBudget,
    RequestStats,
    RetryPolicy,
    TooMuch,
)

FAST_RETRIES = RetryPolicy(base_seconds=0.001, cap_seconds=0.002, max_attempts=2)


def client_for(url: str, **options: object) -> OrdergrooveClient:
    return OrdergrooveClient(url, KEY, retry=FAST_RETRIES, budget=RateBudget(0), **options)  # type: ignore[arg-type]


@contextmanager
def raw_server(answer: Callable[[socket.socket, int], None]) -> Iterator[str]:
    """A loopback server that hands each accepted connection (and its number) to `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so that the loop sees `stop` (closing does not end an accept)
    stop = threading.Event()

    def serve() -> None:
        n = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                answer(conn, n)
            n += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def test_query_is_encoded_as_the_api_reads_it():
    url = with_query("https://api.test/orders/", {"updated_start": "2024-05-01 10:00:00"})
    assert url == "https://api.test/orders/?updated_start=2024-05-01%2010%3A00%3A00"
    assert with_query("https://api.test/o/?a=1", {"b": "x/y"}) == "https://api.test/o/?a=1&b=x%2Fy"
    assert with_query("https://api.test/o/", None) == "https://api.test/o/"


def test_the_key_and_version_go_in_headers_and_a_gzip_page_is_read():
    body = page(records(0, 3), None)
    with hostile_api() as api:
        api.orders = lambda state, query: (200, {"Content-Encoding": "gzip"}, gzip.compress(body))
        with client_for(api.url) as client:
            pages = list(
                client.pages("/orders/", {"updated_start": "2024-05-01 10:00:00"}, RequestStats())
            )
    assert [len(results) for results, _ in pages] == [3]
    (seen,) = api.requests_to("/orders/")
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers[API_VERSION_HEADER.lower()] == "2"
    assert seen.headers["accept-encoding"] == "gzip"
    assert seen.query == {"updated_start": ["2024-05-01 10:00:00"], "page_size": ["100"]}
    assert KEY not in str(seen.query)


def test_a_closed_port_is_named_unreachable_with_the_os_reason():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with client_for(f"http://127.0.0.1:{port}") as client, pytest.raises(ApiError) as info:
        client.get(f"http://127.0.0.1:{port}/orders/", None, RequestStats())
    assert f"cannot reach http://127.0.0.1:{port} (Connection refused), still after 2 attempts" in (
        str(info.value)
    )


def test_a_server_that_never_answers_times_out_and_is_retried():
    held: list[socket.socket] = []

    def silent(conn: socket.socket, n: int) -> None:
        held.append(conn.dup())  # keep it open, say nothing

    with raw_server(silent) as url, client_for(url, timeout_seconds=0.3) as client:
        stats = RequestStats()
        with pytest.raises(ApiError, match=r"/orders/: timed out, still after 2 attempts"):
            client.get(f"{url}/orders/", None, stats)
    assert stats.requests == 2 and stats.retries == 1
    for conn in held:
        conn.close()


def test_a_body_cut_short_is_retried_on_a_new_connection():
    good = page(records(0, 2), None)

    def cut_then_whole(conn: socket.socket, n: int) -> None:
        read_head(conn)
        if n == 0:  # promises 1,000 bytes, sends 10, hangs up
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + good[:10])
            return
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(good)
        conn.sendall(head + good)

    with raw_server(cut_then_whole) as url, client_for(url) as client:
        stats = RequestStats()
        body, _ = client.get(f"{url}/orders/", None, stats)
    assert len(body["results"]) == 2
    assert stats.retries == 1


def test_a_body_refused_at_the_bound_leaves_no_bytes_for_the_next_request():
    """The refused body is left unread on its connection: the next request must get its own
    answer, not the rest of the bomb."""
    bomb = gzip_bomb(64 * 2**20)
    with hostile_api() as api:
        api.orders = lambda state, query: (
            (200, {"Content-Encoding": "gzip"}, bomb)
            if "cursor" not in query
            else (200, {}, page(records(0, 1), None))
        )
        with client_for(api.url, max_page_bytes=2**20) as client:
            with pytest.raises(TooMuch, match="max_page_bytes"):
                client.get(f"{api.url}/orders/", None, RequestStats())
            body, _ = client.get(f"{api.url}/orders/?cursor=2", None, RequestStats())
    assert body["results"][0]["public_id"] == "o000000"


def test_transport_failures_say_how_in_a_few_words():
    with raw_server(lambda conn, n: None) as url:  # accepts, then hangs up at once
        transport = Urllib3Transport({}, timeout_seconds=2)
        with pytest.raises(TransportFailure) as info, transport.get(f"{url}/orders/"):
            pass
        transport.close()
    assert info.value.problem.startswith("connection failed (")
    assert info.value.unreachable is None  # it connected: the host is reachable


def test_os_reason_drops_the_errno():
    assert os_reason(ConnectionRefusedError(111, "Connection refused")) == "Connection refused"
    assert os_reason(Exception("[Errno -2] Name or service not known")) == (
        "Name or service not known"
    )
