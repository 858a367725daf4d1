"""The Ordergroove HTTP client: auth, cursor pagination, retries with backoff, one rate budget.

The key travels only in the `x-api-key` header: never in a URL, a log line or an error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from urllib3.util import parse_url

from ogsync.api_transport import (
    HttpxTransport,
    Transport,
    TransportFailure,
    Urllib3Transport,
    with_query,
)
from ogsync.plain_http import insecure_reason

log = logging.getLogger("ogsync.client")

API_VERSION_HEADER = "X-OG-API-VERSION"
PAGE_SIZE = 100
RETRYABLE_STATUSES = frozenset({423, 429, 500, 502, 503, 504})


class ApiError(Exception):
    """A request the API refused for good, or that kept failing after every retry."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ApiError):
    """401/403: the key is wrong, or lacks the Bulk Operations permission."""


class MalformedPage(ApiError):
    """A 200 whose body is not the documented page shape."""


class ForeignLink(ApiError):
    """A link (`next`, or a checkpoint read back) that points away from the API's origin."""


class TooMuch(ApiError):
    """The API sent more than any real page or listing holds: a body or a listing past a bound."""


class Interrupted(ApiError):
    """A stop was asked for while the client waited to retry."""


class InsecureUrl(ValueError):
    """A plain-http base URL to a host that is not this machine."""


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in, read by the parser
    the transport connects with (urllib3's), so that the origin checked is the one reached."""
    parsed = parse_url(url)
    scheme = (parsed.scheme or "").lower()
    port = parsed.port or {"https": 443, "http": 80}.get(scheme, 0)
    return scheme, (parsed.host or "").lower(), port


def _shown(where: tuple[str, str, int]) -> str:
    scheme, host, port = where
    return f"{scheme}://{host}:{port}"


@dataclass
class RequestStats:
    """Counted per endpoint; the run log stores them."""

    requests: int = 0
    pages: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    last_page_seconds: float = 0.0  # how long the latest page took, retries included


class RateBudget:
    """Spaces requests from every worker so that together they stay under N a minute."""

    def __init__(self, per_minute: int) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for this request's slot; return the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return wait


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    retry_after_cap_seconds: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """A positive Retry-After (seconds or an HTTP date), capped; None when absent or not > 0."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(seconds, cap) if seconds > 0 else None


def _detail(content: bytes, secret: str) -> str:
    """The API's own explanation, with our key blotted out should the server echo it."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(body, dict):
        return ""
    text = "; ".join(f"{k}: {v}" for k, v in body.items())
    return (text.replace(secret, "***") if secret else text)[:300]


class OrdergrooveClient:
    """One client shared by all workers (the transport's connection pool is thread-safe)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
        budget: RateBudget | None = None,
        transport: httpx.BaseTransport | None = None,  # in place of urllib3 (tests' mocks)
        seed: int | None = None,
        allow_insecure_http: bool = False,
        max_page_bytes: int = 64 * 2**20,
        max_pages: int = 1_000_000,
        stop: threading.Event | None = None,
    ) -> None:
        reason = insecure_reason(base_url)
        if reason and not allow_insecure_http:
            raise InsecureUrl(reason)
        self.base_url = base_url.rstrip("/")
        self.origin = origin(self.base_url)
        self.max_page_bytes = max_page_bytes
        self.max_pages = max_pages
        self.stop = stop
        self.retry = retry or RetryPolicy()
        self.budget = budget or RateBudget(5000)
        self._rng = random.Random(seed)
        self._key = api_key
        headers = {"x-api-key": api_key, API_VERSION_HEADER: "2", "accept": "application/json"}
        self._http: Transport = (
            Urllib3Transport(headers, timeout_seconds)
            if transport is None
            else HttpxTransport(transport, headers, timeout_seconds)
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OrdergrooveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def get(
        self, url: str, params: Mapping[str, str] | None, stats: RequestStats
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """One page, retried as the API documents; returns the parsed body and its headers."""
        attempt = 0
        while True:
            waited = self.budget.acquire()
            if waited > 0.5:
                log.debug("rate budget held a request for %.1fs", waited)
            stats.requests += 1
            problem: str
            delay: float | None = None
            unreachable: str | None = None  # why no connection could be made, if so
            try:
                status, headers, content = self._fetch(with_query(url, params))
            except TransportFailure as exc:
                problem, unreachable = exc.problem, exc.unreachable
            else:
                if status == 200:
                    try:
                        body = orjson.loads(content)
                    except orjson.JSONDecodeError:
                        problem = "a truncated or invalid JSON body"
                    else:
                        if not isinstance(body, dict):
                            raise MalformedPage(f"{_where(url)}: the page is not a JSON object")
                        return body, headers
                elif status in RETRYABLE_STATUSES:
                    problem = f"HTTP {status}"
                    if status == 429:
                        stats.rate_limit_waits += 1
                    delay = retry_after_seconds(
                        headers.get("retry-after"), self.retry.retry_after_cap_seconds
                    )
                else:
                    raise _refusal(url, status, content, self._key)
            attempt += 1
            if attempt >= self.retry.max_attempts:
                if unreachable is not None:  # say which host, and which setting names it
                    raise ApiError(
                        f"{_where(url)}: cannot reach {_shown(self.origin)} ({unreachable}), "
                        f"still after {attempt} attempts: check the API's address, base_url "
                        "(OGSYNC_BASE_URL, --base-url) or env (OGSYNC_ENV, --env), and this "
                        "machine's network"
                    )
                raise ApiError(f"{_where(url)}: {problem}, still after {attempt} attempts")
            stats.retries += 1
            if delay is None:
                delay = self.retry.backoff(attempt, self._rng)
            log.info("%s: %s; retry %d in %.2fs", _where(url), problem, attempt, delay)
            self._wait(delay, url)

    def _wait(self, seconds: float, url: str) -> None:
        """Sleep before a retry; a stop asked for meanwhile ends the wait at once."""
        if self.stop is None:
            time.sleep(seconds)
        elif self.stop.wait(seconds):
            raise Interrupted(f"{_where(url)}: stopped while waiting to retry")

    def _fetch(self, url: str) -> tuple[int, Mapping[str, str], bytes]:
        """One request; the body read decoded, but never past `max_page_bytes` (a gzip bomb
        inflates chunk by chunk and is dropped at the bound, not decompressed whole)."""
        with self._http.get(url) as answer:
            limit = self.max_page_bytes
            declared = answer.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise self._too_big(url)
            chunks: list[bytes] = []
            size = 0
            for chunk in answer.chunks:
                size += len(chunk)
                if size > limit:
                    raise self._too_big(url)
                chunks.append(chunk)
            return answer.status, answer.headers, b"".join(chunks)

    def _too_big(self, url: str) -> TooMuch:
        return TooMuch(
            f"{_where(url)}: the page is over {self.max_page_bytes:,} bytes decoded "
            "(max_page_bytes); refused unread"
        )

    def _checked(self, url: str, what: str) -> str:
        """`url` if it is on the API's own origin; the key is never sent anywhere else."""
        try:
            where = origin(url)
            userinfo = parse_url(url).auth
        except (TypeError, ValueError):  # urllib3's LocationParseError is a ValueError
            raise ForeignLink(f"{what} is not a URL: refused") from None
        if where != self.origin or userinfo:
            raise ForeignLink(
                f"{what} points to {_shown(where)}, not the API at {_shown(self.origin)}: "
                "refused, nothing was sent there"
            )
        return url

    def pages(
        self,
        path: str,
        params: Mapping[str, str],
        stats: RequestStats,
        resume_url: str | None = None,
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Every page of a listing: (records, next URL). Follows `next` as given, but only on the
        API's own origin (scheme, host and port), and stops a listing past `max_pages` pages."""
        if resume_url:
            self._checked(
                resume_url,
                f"{path}: the checkpoint saved in the warehouse (_ogsync_state.checkpoint_url; "
                "set it to NULL for this endpoint to re-read its window)",
            )
        url = resume_url or self.url(path)
        query: Mapping[str, str] | None = (
            None if resume_url else {**params, "page_size": str(PAGE_SIZE)}
        )
        seen: set[str] = set()
        listed = 0
        while True:
            started = time.monotonic()
            body, _ = self.get(url, query, stats)
            stats.last_page_seconds = time.monotonic() - started
            results = body.get("results")
            next_url = body.get("next")
            if not isinstance(results, list) or not (next_url is None or isinstance(next_url, str)):
                raise MalformedPage(
                    f"{_where(url)}: the page lacks a `results` list or a `next` link"
                )
            stats.pages += 1
            yield results, next_url
            if not next_url:
                return
            if next_url in seen:
                raise ApiError(f"{_where(url)}: the API returned the same cursor twice")
            listed += 1
            if listed >= self.max_pages:
                raise TooMuch(
                    f"{path}: the listing has not ended after {self.max_pages:,} pages "
                    "(max_pages): the API keeps returning new cursors"
                )
            seen.add(next_url)
            url, query = self._checked(next_url, f"{path}: the API's next link"), None

    def retrieve(self, path: str, record_id: str, stats: RequestStats) -> dict[str, Any] | None:
        """One record by its id (`/orders/<id>/`), or None when the API no longer has it."""
        try:
            body, _ = self.get(self.url(f"{path}{quote(record_id, safe='')}/"), None, stats)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return body

    def server_time(self, stats: RequestStats) -> datetime | None:
        """Check the key and read the API's clock: one `/customers/?page_size=1` call.

        None when the API sends no `Date`, or one that can't be read (ogsync.clock decides
        what bounds the run then, and whether a readable one is to be trusted).
        """
        _, headers = self.get(self.url("/customers/"), {"page_size": "1"}, stats)
        date = headers.get("date")
        if not date:
            return None
        try:
            parsed = parsedate_to_datetime(date)
            if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        except (TypeError, ValueError, OverflowError, IndexError):
            log.warning("the API sent an unreadable Date header (%.40r)", date)
            return None


def _where(url: str) -> str:
    """The URL's path, for messages (the query holds only filters and an opaque cursor)."""
    try:
        return parse_url(url).path or "/"
    except ValueError:
        return "/"


def _refusal(url: str, status: int, content: bytes, secret: str) -> ApiError:
    detail = _detail(content, secret)
    suffix = f" ({detail})" if detail else ""
    if status == 401:
        return AuthError(
            f"the API refused the key (401){suffix}: check OGSYNC_API_KEY is a valid Ordergroove "
            "API key for this environment",
            status,
        )
    if status == 403:
        return AuthError(
            f"the API key is not allowed to list {_where(url)} (403){suffix}: a sync needs a key "
            "with the Bulk Operations permission",
            status,
        )
    if status == 400:
        return ApiError(f"{_where(url)}: the API rejected the request (400){suffix}", status)
    if status == 404:
        return ApiError(
            f"{_where(url)}: not found (404){suffix}: check OGSYNC_BASE_URL and the endpoint",
            status,
        )
    return ApiError(f"{_where(url)}: unexpected HTTP {status}{suffix}", status)
