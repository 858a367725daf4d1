"""A local S3 stand-in for tests: moto's S3 in a thread, on 127.0.0.1 only.

    with s3_server() as s3:
        bucket = s3.new_bucket()
        os.environ.update(s3.env())  # botocore and delta-rs read the endpoint and keys from it

The server is moto's own S3 application (`moto.server.ThreadedMotoServer` dispatches to the
same one) with one change: requests that write (anything but GET and HEAD) run one at a time.
moto checks `If-None-Match` and `If-Match` and then stores the object as two steps, so two
conditional puts arriving together could both succeed (seen: 2 rounds in 200 of eight racing
puts), which real S3 never allows; the lakehouse lock depends on it. Reads still run in parallel.

The server runs in a child process (see `s3_server`); give each test its own bucket with
`new_bucket()`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from ogsync.destinations.s3_client import s3_client

__all__ = ["S3Server", "s3_server"]

HOST = "127.0.0.1"
REGION = "us-east-1"
# Methods that only read; every other request takes the write lock.
READS = frozenset({"GET", "HEAD"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class S3Server:
    """A running local S3: where it is, and the (made up) keys any client may use."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def env(self) -> dict[str, str]:
        """The environment variables botocore and delta-rs read to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",  # delta-rs refuses an http:// endpoint without it
        }

    def client(self) -> Any:
        """An S3 client for this server, safe to use from any thread."""
        return s3_client(
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def new_bucket(self) -> str:
        """Create a bucket no other test uses, and return its name."""
        name = f"ogsync-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


def _one_writer_at_a_time(app: WSGIApp) -> WSGIApp:
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") in READS:
            return app(environ, start_response)
        # The body is read before the lock: a client stopped between its request's head and
        # its body (the lock tests stop one at any moment) would otherwise hold up every
        # other writer, which S3 never does.
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit():
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(length)))
        with lock:
            # The body is built inside the lock too: moto may compute it lazily.
            result = app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    return serialised


def _quiet_request_log() -> None:
    # werkzeug logs every request at INFO to stderr unless someone configured its logger.
    logger = logging.getLogger("werkzeug")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def serve() -> None:
    """Run the server in this process until stdin closes; print its port first."""
    _quiet_request_log()
    # S3's own application, not moto's dispatcher among all its services: the dispatcher
    # lists moto's service packages on disk for every request, a large share of the
    # server's CPU.
    app = _one_writer_at_a_time(create_backend_app("s3"))
    # Port 0: the OS picks a free port as it binds, so no other process can take it first.
    server: BaseWSGIServer = make_server(
        HOST, 0, app, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="ogsync-s3", daemon=True)
    thread.start()
    print(server.server_port, flush=True)
    sys.stdin.read()  # the parent closes it on exit, or dies
    server.shutdown()


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start a local S3 on 127.0.0.1 (a free port) in a child process; stop it on exit.

    A process of its own, not a thread: delta-rs holds Python's lock while it waits for S3,
    so a server thread in the same process would never answer it."""
    child = subprocess.Popen(
        [sys.executable, "-c", "from ogsync.testing.s3 import serve; serve()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the local S3 server did not start (exit {child.poll()})")
        yield S3Server(
            endpoint_url=f"http://{HOST}:{port}",
            access_key=f"OGSYNCTEST{secrets.token_hex(5).upper()}",
            secret_key=secrets.token_urlsafe(30),
            region=REGION,
        )
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
