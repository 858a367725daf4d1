"""Serving an ASGI app under uvicorn (as the process's main job, or in a thread of it), and
starting and stopping such a server as a child process."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def uvicorn_config(app: Any, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """How our servers run: quiet, no access log, no server header."""
    settings: dict[str, Any] = dict(
        log_level="warning", access_log=False, server_header=False, lifespan="on"
    )
    return uvicorn.Config(app, host=host, port=port, **(settings | overrides))


def wait_until_answering(proc: subprocess.Popen[Any], url: str, timeout: float) -> bool:
    """True once `url` answers; False if the process exited first. Killed when too slow."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{url} did not answer in time") from None
            time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[Any], grace: float = 10) -> str:
    """SIGTERM, then SIGKILL if it is still running after `grace` seconds; its stderr, when
    that is a pipe."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if isinstance(err, bytes):
        return err.decode(errors="replace")
    return err or ""


class _AnnouncingServer(uvicorn.Server):
    """A server that says when it is listening, and on which port (the one asked for, or the
    one the system chose for port 0)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[int], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_ready(self.servers[0].sockets[0].getsockname()[1])


def serve_until_stopped(
    config: uvicorn.Config, on_ready: Callable[[int], None] | None = None
) -> None:
    """Serve until SIGTERM or Ctrl-C, then return, so that the caller's clean-up runs.
    `on_ready` is called with the port once the server listens.

    uvicorn shuts down on SIGTERM and then raises it again, which would end the process
    before any `finally` of ours (the simulator's temporary database stayed behind); here
    that second SIGTERM ends the process as an ordinary exit instead.
    """
    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        server = uvicorn.Server(config) if on_ready is None else _AnnouncingServer(config, on_ready)
        server.run()
    except SystemExit as stop:
        if stop.code != 0:
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@contextmanager
def uvicorn_in_thread(config: uvicorn.Config, name: str) -> Iterator[uvicorn.Server]:
    """Serve until the block ends; the server is listening when the block starts."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
