"""Helpers for the webhook tests: events, signatures, raw HTTP, reading an inbox file."""

from __future__ import annotations

import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from ogsync.webhooks.signature import HEADER, sign

SECRET = "whsec-test-key-0123456789"


def event(kind: str = "order.delete", event_id: str | None = None, **obj: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind.partition(".")[0], "public_id": uuid.uuid4().hex}
    body.update(obj)
    return {
        "id": event_id or uuid.uuid4().hex,
        "type": kind,
        "created": int(time.time()),
        "data": {"object": body},
        "context": None,
        "snapshot": {},
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def signed(body: bytes, secrets: list[str] | None = None, ts: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if ts is None else ts
    return {"content-type": "application/json", HEADER: sign(secrets or [SECRET], stamp, body)}


def inbox_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a SQLite inbox file, read with a connection of its own."""
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = '_ogsync_inbox'")
        if tables.fetchone() is None:
            return []
        return [dict(r) for r in conn.execute("SELECT * FROM _ogsync_inbox ORDER BY event_id")]
    finally:
        conn.close()


def raw_request(port: int, data: bytes, *, half_close: bool = False, timeout: float = 5) -> bytes:
    """Send raw bytes over one connection; return what comes back until it closes or stalls."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and not half_close:
                    head, _, rest = received.partition(b"\r\n\r\n")
                    length = _content_length(head)
                    if length is not None and len(rest) >= length:
                        break
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response.split(b" ", 2)[1])
