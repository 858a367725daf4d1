"""A local Snowflake for tests: fakesnow's server (an emulator over DuckDB), which the real
`snowflake-connector-python` talks to over HTTP.

    with emulated_snowflake() as sf:
        url = sf.url("OGSYNC")   # snowflake://ogsync@emulator/OGSYNC?host=127.0.0.1&port=...

The server runs in a process of its own (`python -m ogsync.testing.snowflake --port P`), on
127.0.0.1, so that its work runs beside the test's rather than sharing one interpreter. Routes
under `/__ogsync__/` let a test end a session the way Snowflake does when it aborts one (its
open transaction rolls back, and its client must log in again). Any password is accepted.

What the emulator gets wrong is listed in the README (Snowflake); one thing is fixed here:
fakesnow 0.12.1 sends a NULL timestamp back as 1970-01-01 (its Arrow structs carry no null
mask), which would turn every empty checkpoint into a date.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

__all__ = ["SnowflakeEmulator", "emulated_snowflake"]

USER, ACCOUNT = "ogsync", "emulator"
CONTROL = "/__ogsync__"


@dataclass
class SnowflakeEmulator:
    host: str
    port: int

    def url(self, database: str, **options: str | int) -> str:
        query = {"host": self.host, "port": self.port, "protocol": "http", **options}
        return f"snowflake://{USER}@{ACCOUNT}/{database}?{urlencode(query)}"

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method, f"http://{self.host}:{self.port}{CONTROL}{path}", json=body, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def sessions(self) -> set[str]:
        return set(self._control("GET", "/sessions"))

    def end_session(self, token: str) -> bool:
        """End a session as Snowflake does when it aborts one: its transaction rolls back, and
        its client must log in again. False if there was no such session."""
        return bool(self._control("POST", "/end", {"tokens": [token]}))

    def end_sessions_except(self, keep: set[str]) -> int:
        return int(self._control("POST", "/end", {"tokens": sorted(self.sessions() - keep)}))

    def forget_results(self) -> None:
        """fakesnow keeps every result for RESULT_SCAN; a long test session need not."""
        self._control("POST", "/forget")


@contextlib.contextmanager
def emulated_snowflake(timeout: float = 60) -> Iterator[SnowflakeEmulator]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    emulator = SnowflakeEmulator("127.0.0.1", port)
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ogsync.testing.snowflake", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    emulator.sessions()
                    break
                except httpx.HTTPError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        said = output.read().decode(errors="replace")[-2000:]
                        raise RuntimeError(
                            f"the Snowflake emulator did not start:\n{said}"
                        ) from None
                    time.sleep(0.1)
            yield emulator
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the emulator's own process -------------------------------------------------------------


def _with_nulls(original: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

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


def _app() -> Any:
    """fakesnow's server app, its NULL timestamps fixed, with the tests' controls."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    arrow = importlib.import_module("fakesnow.arrow")
    arrow.timestamp_to_sf_struct = _with_nulls(arrow.timestamp_to_sf_struct)
    server = importlib.import_module("fakesnow.server")
    for name in ("fakesnow", "fakesnow.server", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Its translation to DuckDB notes every Snowflake clause it drops (COPY GRANTS, TRANSIENT).
    logging.getLogger("sqlglot").setLevel(logging.ERROR)

    async def sessions(_: Request) -> JSONResponse:
        return JSONResponse(sorted(server.sessions))

    async def end(request: Request) -> JSONResponse:
        ended = 0
        for token in (await request.json())["tokens"]:
            session = server.sessions.pop(token, None)
            if session is not None:
                with contextlib.suppress(Exception):
                    session.close()  # its DuckDB transaction rolls back
                ended += 1
        return JSONResponse(ended)

    async def forget(_: Request) -> JSONResponse:
        server.shared_fs.results_cache.clear()
        return JSONResponse(True)

    server.app.add_route(f"{CONTROL}/sessions", sessions, methods=["GET"])
    server.app.add_route(f"{CONTROL}/end", end, methods=["POST"])
    server.app.add_route(f"{CONTROL}/forget", forget, methods=["POST"])
    return server.app


def main(argv: Sequence[str] | None = None) -> None:
    import warnings

    import uvicorn

    parser = argparse.ArgumentParser(description="fakesnow's server, as ogsync's tests run it")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    uvicorn.run(_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
