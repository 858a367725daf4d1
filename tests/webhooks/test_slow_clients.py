"""The receiver protects itself: slow or idle clients are cut off, and signed deliveries go on
being answered while many of them hold connections."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_support import body_of, event, signed, status_of

from ogsync.webhooks.signature import HEADER

HEAD = "POST /webhooks/ordergroove HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def answer_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent (up to its closing, or a pause of `seconds`), or None if it sent
    nothing and kept the connection open."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received or None
    except ConnectionResetError:
        pass
    return received


@pytest.mark.slow
def test_headers_dribbled_a_byte_at_a_time_are_cut_off(make_receiver):
    with make_receiver(header_timeout=1.0) as receiver:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
            try:
                for byte in HEAD.encode():  # a byte every 0.1 s: it would take 8 s
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
            else:
                assert answer_within(sock, 3.0) is not None
        assert time.monotonic() - started < 4, "a dribbling client kept its connection"
        body = body_of(event())
        assert receiver.post(body, signed(body)).status_code == 200


@pytest.mark.slow
def test_a_connection_that_sends_nothing_is_closed(make_receiver):
    with (
        make_receiver(header_timeout=1.0) as receiver,
        socket.create_connection(("127.0.0.1", receiver.port)) as sock,
    ):
        assert answer_within(sock, 3.0) == b""


@pytest.mark.slow
def test_a_body_that_never_finishes_is_dropped(make_receiver):
    body = body_of(event())
    header = signed(body)[HEADER]
    with make_receiver(body_timeout=1.0) as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
            head = f"{HEAD}{HEADER}: {header}\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body[:10])
            answer = answer_within(sock, 5.0)
        assert answer is not None and status_of(answer) == 408
        assert receiver.post(body, signed(body)).status_code == 200


@pytest.mark.slow
def test_an_unsigned_body_is_refused_before_it_is_read(receiver):
    """401 comes back on the headers alone, while the client still holds most of its body."""
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        sock.sendall(f"{HEAD}Content-Length: 1000000\r\n\r\n".encode() + b'{"id": "x",')
        answer = answer_within(sock, 5.0)
    assert answer is not None and status_of(answer) == 401


@pytest.mark.slow
def test_signed_deliveries_are_answered_while_slow_clients_hold_connections(make_receiver):
    body = body_of(event())
    with make_receiver(header_timeout=2.0, max_connections=50) as receiver:
        attackers = []
        try:
            for _ in range(60):  # more than the receiver takes at once
                sock = socket.create_connection(("127.0.0.1", receiver.port))
                sock.sendall(b"POST /webhooks/ordergroove HTTP/1.1\r\nHo")
                attackers.append(sock)
            answers = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                fresh = body_of(event())
                answers.append(receiver.post(fresh, signed(fresh)).status_code)
                if answers[-1] == 200:
                    break
                time.sleep(0.2)
        finally:
            for sock in attackers:
                sock.close()
        assert answers[-1] == 200, answers
        assert set(answers) <= {200, 503}  # turned away politely, never hung or broken
        assert receiver.post(body, signed(body)).status_code == 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ts=st.one_of(
        st.text(alphabet="0123456789", min_size=19, max_size=5000),
        st.text(alphabet="-+e.٠١٢ ", min_size=1, max_size=40),
        st.integers(max_value=-1).map(str),
    )
)
def test_an_absurd_ts_is_401_never_500(receiver, ts):
    body = body_of(event())
    good = signed(body)[HEADER]
    header = f"ts={ts}," + good.split(",", 1)[1]
    raw = {"content-type": "application/json", HEADER: header.encode()}  # as sent, in UTF-8
    response = receiver.post(body, raw)  # type: ignore[arg-type]
    assert response.status_code == 401
