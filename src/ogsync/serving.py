"""Running an ASGI app under uvicorn: as the process's main job, or in a thread of it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


def serve_until_stopped(config: uvicorn.Config) -> None:
    """Serve until SIGTERM or Ctrl-C, then return, so that the caller's clean-up runs.

    uvicorn shuts down on SIGTERM and then raises it again, which would end the process
    before any `finally` of ours (the simulator's temporary database stayed behind); here
    that second SIGTERM ends the process as an ordinary exit instead.
    """
    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        uvicorn.Server(config).run()
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
