"""A local Snowflake for tests: fakesnow's server (an emulator over DuckDB), which the real
`snowflake-connector-python` talks to over HTTP.

    with emulated_snowflake() as sf:
        url = sf.url("OGSYNC")   # snowflake://ogsync@emulator/OGSYNC?host=127.0.0.1&port=...

The server runs in a thread of this process, on 127.0.0.1 and a free port, so that a test can
end a session the way Snowflake would (`end_session`): the session's open transaction rolls
back and its next request is refused. Any password is accepted.

What the emulator gets wrong is listed in the README (Snowflake); one thing is fixed here:
fakesnow 0.12.1 sends a NULL timestamp back as 1970-01-01 (its Arrow structs carry no null
mask), which would turn every empty checkpoint into a date.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["SnowflakeEmulator", "emulated_snowflake"]

USER, ACCOUNT = "ogsync", "emulator"


def _with_nulls(original: Any) -> Any:
    def timestamp_to_sf_struct(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        struct = original(ts)
        if not ts.null_count:
            return struct
        return pa.StructArray.from_arrays(
            [struct.field(i) for i in range(struct.type.num_fields)],
            fields=list(struct.type),
            mask=pc.is_null(ts),
        )

    return timestamp_to_sf_struct


@dataclass
class SnowflakeEmulator:
    host: str
    port: int
    _server: Any

    def url(self, database: str, **options: str | int) -> str:
        query = {"host": self.host, "port": self.port, "protocol": "http", **options}
        return f"snowflake://{USER}@{ACCOUNT}/{database}?{urlencode(query)}"

    def sessions(self) -> set[str]:
        return set(self._server.sessions)

    def end_session(self, token: str) -> bool:
        """End a session as Snowflake does when it aborts one: its transaction rolls back, and
        its client must log in again. False if there was no such session."""
        session = self._server.sessions.pop(token, None)
        if session is None:
            return False
        with contextlib.suppress(Exception):
            session.close()
        return True

    def end_sessions_except(self, keep: set[str]) -> int:
        ended = 0
        for token in self.sessions() - keep:
            ended += self.end_session(token)
        return ended

    def forget_results(self) -> None:
        """fakesnow keeps every result for RESULT_SCAN; a long test session need not."""
        self._server.shared_fs.results_cache.clear()


@contextlib.contextmanager
def emulated_snowflake() -> Iterator[SnowflakeEmulator]:
    import uvicorn

    arrow = importlib.import_module("fakesnow.arrow")
    server = importlib.import_module("fakesnow.server")
    fixed = _with_nulls(arrow.timestamp_to_sf_struct)
    arrow.timestamp_to_sf_struct = fixed
    for name in ("fakesnow", "fakesnow.server", "uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Its translation to DuckDB notes every Snowflake clause it drops (COPY GRANTS, TRANSIENT).
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(server.app, host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="snowflake emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Snowflake emulator did not start")
        time.sleep(0.05)
    try:
        yield SnowflakeEmulator("127.0.0.1", port, server)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
