"""How the API client sends a GET and reads the answer: the one seam under `ogsync.client`.

A sync's fetchers spend most of their own CPU in the HTTP library, once per page of a hundred
records. urllib3 carries the requests: it costs less per request than httpx's client, whose
URL, request and response models are rebuilt for every page (bench/http_client.py measures
both). Any httpx transport can stand in for it through `HttpxTransport`: the tests' mock
transports shape errors and answers the simulator can't.

Whatever the library, a failure comes out as one `TransportFailure`, and the body comes out
decoded (gzip and the like) a chunk at a time, so the client can refuse it at a bound.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode, urlsplit

import httpx
import urllib3
from urllib3 import exceptions as u3

CHUNK_BYTES = 64 * 1024


class TransportFailure(Exception):
    """A request that got no whole answer. `problem` says how, in a few words;
    `unreachable` why no connection could be made at all, if that is what happened."""

    def __init__(self, problem: str, unreachable: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.unreachable = unreachable


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # names case-insensitive
    chunks: Iterator[bytes]  # the body, decoded


class Transport(Protocol):
    def get(self, url: str) -> contextlib.AbstractContextManager[Answer]:
        """GET `url` (query included) with the transport's headers; no redirect followed."""
        ...

    def close(self) -> None: ...


def with_query(url: str, params: Mapping[str, str] | None) -> str:
    """`url` with `params` added to its query, encoded as httpx would (spaces as %20)."""
    if not params:
        return url
    joiner = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{joiner}{urlencode(params, quote_via=quote)}"


def os_reason(exc: BaseException) -> str:
    """Why a connection failed, in the OS's own words without the errno."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and isinstance(seen.strerror, str) and seen.strerror:
            return seen.strerror[:120]
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip() or type(exc).__name__
    found = re.search(r"\[Errno -?\d+\]\s*([^)\]]+)", text)
    return (found.group(1) if found else text).splitlines()[0].strip()[:120]


def _failure(exc: u3.HTTPError) -> TransportFailure:
    if isinstance(exc, u3.NewConnectionError):  # before its base class, the connect timeout
        return TransportFailure(f"connection failed ({type(exc).__name__})", os_reason(exc))
    if isinstance(exc, u3.ConnectTimeoutError):
        return TransportFailure("timed out", "no answer to connect")
    if isinstance(exc, u3.TimeoutError):
        return TransportFailure("timed out")
    if isinstance(exc, u3.DecodeError):
        return TransportFailure("a body that does not decode")
    # urllib3 wraps what went wrong (a reset, an incomplete read) in its own error: name that.
    inner = next((a for a in exc.args if isinstance(a, BaseException)), exc.__cause__)
    return TransportFailure(f"connection failed ({type(inner or exc).__name__})")


class Urllib3Transport:
    """A pool of kept-alive connections shared by the workers (urllib3's pool is thread-safe)."""

    def __init__(self, headers: Mapping[str, str], timeout_seconds: float) -> None:
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=20,
            # gzip only: the API's answers compress well, and one decoder is one to trust.
            headers={"accept-encoding": "gzip", **headers},
            timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds),
            retries=False,
        )

    @contextlib.contextmanager
    def get(self, url: str) -> Iterator[Answer]:
        try:
            response = self._pool.request(
                "GET", url, preload_content=False, redirect=False, retries=False
            )
        except u3.HTTPError as exc:
            raise _failure(exc) from None
        done = False

        def chunks() -> Iterator[bytes]:
            nonlocal done
            try:
                yield from response.stream(CHUNK_BYTES, decode_content=True)
            except u3.HTTPError as exc:
                raise _failure(exc) from None
            done = True

        try:
            yield Answer(response.status, response.headers, chunks())
        finally:
            if not done:  # a body left unread (refused at a bound, say) must not be reused
                response.close()
            response.release_conn()

    def close(self) -> None:
        self._pool.clear()


class HttpxTransport:
    """Any httpx transport (a mock, in the tests) behind the same seam, its errors mapped
    as urllib3's are."""

    def __init__(
        self, transport: httpx.BaseTransport, headers: Mapping[str, str], timeout_seconds: float
    ) -> None:
        self._http = httpx.Client(
            headers=dict(headers),
            timeout=timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )

    @contextlib.contextmanager
    def get(self, url: str) -> Iterator[Answer]:
        try:
            with self._http.stream("GET", url) as response:
                yield Answer(response.status_code, response.headers, response.iter_bytes())
        except httpx.ConnectTimeout:
            raise TransportFailure("timed out", "no answer to connect") from None
        except httpx.TimeoutException:
            raise TransportFailure("timed out") from None
        except httpx.ConnectError as exc:
            raise TransportFailure(
                f"connection failed ({type(exc).__name__})", os_reason(exc)
            ) from None
        except httpx.TransportError as exc:
            raise TransportFailure(f"connection failed ({type(exc).__name__})") from None
        except httpx.DecodingError:
            raise TransportFailure("a body that does not decode") from None

    def close(self) -> None:
        self._http.close()
