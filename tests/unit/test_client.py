"""The HTTP client against shaped responses (httpx.MockTransport): the one place mocks are used.

The simulator covers real paging; these tests shape what it cannot: exact retry sequences,
Retry-After headers, transport errors, truncated bodies and refusals.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ogsync.client as client_module
from ogsync.client import (
    PAGE_SIZE,
    ApiError,
    AuthError,
    MalformedPage,
    OrdergrooveClient,
    RateBudget,
    RequestStats,
    RetryPolicy,
    retry_after_seconds,
)

BASE = "https://api.test"
KEY = "sk-DISTINCTIVE-0f9e8d7c6b5a-KEY"
NEXT_1 = (
    f"{BASE}/subscriptions/?cursor=cD0yMDI0LTA0LTEwKzEwJTNBMjElM0EwMQ%3D%3D"
    "&updated_end=2024-06-26&updated_start=2024-06-24"
)
NEXT_2 = f"{BASE}/subscriptions/?cursor=cD0yMDI0LTA0LTExKzEwJTNBMjElM0EwMQ%3D%3D&page_size=100"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """Stands in for the `time` module inside ogsync.client: records sleeps, never waits.

    The clock moves a whole second on every reading, so the rate budget never holds a request
    and every recorded sleep is a retry delay.
    """

    def __init__(self, step: float = 1.0) -> None:
        self.now = 1000.0
        self.step = step
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(client_module, "time", fake)
    return fake


def make_client(handler: Handler, **retry: Any) -> OrdergrooveClient:
    policy = RetryPolicy(**{"base_seconds": 0.001, "cap_seconds": 0.01, "max_attempts": 5, **retry})
    return OrdergrooveClient(
        BASE,
        KEY,
        transport=httpx.MockTransport(handler),
        retry=policy,
        budget=RateBudget(10**9),
        seed=1,
    )


def page(results: list[Any] | None = None, next_url: str | None = None) -> httpx.Response:
    return httpx.Response(200, json={"next": next_url, "previous": None, "results": results or []})


def sequence(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving these responses (or raising these errors) in turn; the last repeats."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses[min(len(seen), len(responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def fetch(client: OrdergrooveClient, stats: RequestStats | None = None) -> list[Any]:
    stats = stats if stats is not None else RequestStats()
    return [r for results, _ in client.pages("/subscriptions/", {}, stats) for r in results]


# -- requests and pagination ------------------------------------------------------------------


def test_headers_page_size_and_next_followed_exactly(clock):
    handler, seen = sequence(page([1], NEXT_1), page([2], NEXT_2), page([3], None))
    stats = RequestStats()
    with make_client(handler) as client:
        pages = list(
            client.pages(
                "/subscriptions/",
                {"updated_start": "2024-06-24", "updated_end": "2024-06-26"},
                stats,
            )
        )
    assert pages == [([1], NEXT_1), ([2], NEXT_2), ([3], None)]
    assert len(seen) == 3
    for request in seen:
        assert request.method == "GET"
        assert request.headers["x-api-key"] == KEY
        assert request.headers["X-OG-API-VERSION"] == "2"
        assert KEY not in str(request.url)
    first = seen[0]
    assert first.url.path == "/subscriptions/"
    assert dict(first.url.params) == {
        "updated_start": "2024-06-24",
        "updated_end": "2024-06-26",
        "page_size": str(PAGE_SIZE),
    }
    assert PAGE_SIZE == 100
    # `next` as given: nothing added, nothing re-encoded.
    assert str(seen[1].url) == NEXT_1
    assert "page_size" not in seen[1].url.params
    assert str(seen[2].url) == NEXT_2
    assert stats.pages == 3
    assert stats.requests == 3
    assert stats.retries == 0
    assert clock.sleeps == []


def test_stops_on_null_next(clock):
    handler, seen = sequence(page([{"a": 1}], None))
    with make_client(handler) as client:
        assert fetch(client) == [{"a": 1}]
    assert len(seen) == 1


def test_empty_string_next_stops(clock):
    handler, seen = sequence(page([1], ""))  # falsy: no further page
    with make_client(handler) as client:
        assert fetch(client) == [1]
    assert len(seen) == 1


def test_resume_url_is_followed_as_given_without_params(clock):
    handler, seen = sequence(page([9], None))
    stats = RequestStats()
    with make_client(handler) as client:
        pages = list(client.pages("/subscriptions/", {"x": "y"}, stats, resume_url=NEXT_1))
    assert pages == [([9], None)]
    assert str(seen[0].url) == NEXT_1


def test_repeated_cursor_fails(clock):
    handler, seen = sequence(page([1], NEXT_1), page([2], NEXT_2), page([3], NEXT_1))
    with make_client(handler) as client, pytest.raises(ApiError, match="same cursor"):
        fetch(client)
    assert len(seen) == 3


def test_cursor_pointing_at_itself_fails(clock):
    handler, seen = sequence(page([1], NEXT_1), page([2], NEXT_1))
    with make_client(handler) as client, pytest.raises(ApiError, match="same cursor"):
        fetch(client)
    assert len(seen) == 2


@pytest.mark.parametrize(
    "body",
    [
        [],
        [{"results": []}],
        "results",
        123,
        None,
    ],
)
def test_non_object_body_is_malformed(clock, body):
    handler, seen = sequence(httpx.Response(200, content=orjson.dumps(body)))
    with make_client(handler) as client, pytest.raises(MalformedPage):
        fetch(client)
    assert len(seen) == 1  # not retried


@pytest.mark.parametrize(
    "body",
    [
        {"next": None},
        {"next": None, "results": None},
        {"next": None, "results": {"a": 1}},
        {"next": 5, "results": []},
        {"detail": "ok"},
    ],
)
def test_page_without_results_list_is_malformed(clock, body):
    handler, _ = sequence(httpx.Response(200, json=body))
    with make_client(handler) as client, pytest.raises(MalformedPage):
        fetch(client)


def test_malformed_page_is_an_api_error():
    assert issubclass(MalformedPage, ApiError)
    assert issubclass(AuthError, ApiError)


# -- retries ----------------------------------------------------------------------------------


def test_429_then_200_is_retried_and_counted(clock):
    handler, seen = sequence(httpx.Response(429), page([1], None))
    stats = RequestStats()
    with make_client(handler) as client:
        assert fetch(client, stats) == [1]
    assert len(seen) == 2
    assert stats.requests == 2
    assert stats.retries == 1
    assert stats.rate_limit_waits == 1
    assert stats.pages == 1
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 0.01


def test_retry_after_seconds_honoured(clock):
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": "2"}), page([1], None))
    with make_client(handler) as client:
        assert fetch(client) == [1]
    assert clock.sleeps == [2.0]


def test_retry_after_capped(clock):
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": "3600"}), page([], None))
    with make_client(handler, retry_after_cap_seconds=5.0) as client:
        fetch(client)
    assert clock.sleeps == [5.0]


@pytest.mark.parametrize("value", ["0", "-3", "soon", ""])
def test_retry_after_not_positive_or_unreadable_uses_backoff(clock, value):
    handler, _ = sequence(httpx.Response(429, headers={"Retry-After": value}), page([], None))
    with make_client(handler) as client:
        fetch(client)
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= min(0.01, 0.001 * 2**1)


def test_retry_after_http_date_honoured(clock):
    when = datetime.now(UTC) + timedelta(seconds=30)
    header = format_datetime(when, usegmt=True)
    handler, _ = sequence(httpx.Response(503, headers={"Retry-After": header}), page([], None))
    with make_client(handler) as client:
        fetch(client)
    assert len(clock.sleeps) == 1
    assert 25 < clock.sleeps[0] <= 30


def test_retry_after_http_date_in_the_past_uses_backoff(clock):
    header = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    handler, _ = sequence(httpx.Response(503, headers={"Retry-After": header}), page([], None))
    with make_client(handler) as client:
        fetch(client)
    assert 0 <= clock.sleeps[0] <= 0.01


def test_retry_after_helper():
    assert retry_after_seconds(None, 120) is None
    assert retry_after_seconds("", 120) is None
    assert retry_after_seconds("0", 120) is None
    assert retry_after_seconds("2", 120) == 2.0
    assert retry_after_seconds("1.5", 120) == 1.5
    assert retry_after_seconds("500", 120) == 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 120) is None  # past
    assert retry_after_seconds("garbage", 120) is None


@pytest.mark.parametrize("status", [423, 429, 500, 502, 503, 504])
def test_retryable_statuses(clock, status):
    handler, seen = sequence(
        httpx.Response(status, json={"detail": "busy"}),
        httpx.Response(status),
        page([1], None),
    )
    stats = RequestStats()
    with make_client(handler) as client:
        assert fetch(client, stats) == [1]
    assert len(seen) == 3
    assert stats.retries == 2
    assert stats.rate_limit_waits == (2 if status == 429 else 0)
    assert len(clock.sleeps) == 2


def test_retries_happen_mid_walk_and_next_is_still_followed(clock):
    handler, seen = sequence(page([1], NEXT_1), httpx.Response(502), page([2], None))
    with make_client(handler) as client:
        assert fetch(client) == [1, 2]
    assert [str(r.url) for r in seen[1:]] == [NEXT_1, NEXT_1]


def test_max_attempts_exhausted(clock):
    handler, seen = sequence(httpx.Response(503))
    stats = RequestStats()
    with make_client(handler, max_attempts=3) as client, pytest.raises(ApiError) as info:
        fetch(client, stats)
    assert len(seen) == 3
    assert "3 attempts" in str(info.value)
    assert "503" in str(info.value)
    assert stats.requests == 3
    assert stats.retries == 2
    assert len(clock.sleeps) == 2
    assert not isinstance(info.value, AuthError)


def test_truncated_json_is_retried(clock):
    handler, seen = sequence(
        httpx.Response(200, content=b'{"next": null, "results": [{"a": 1'),
        httpx.Response(200, content=b"<html>gateway</html>"),
        page([1], None),
    )
    stats = RequestStats()
    with make_client(handler) as client:
        assert fetch(client, stats) == [1]
    assert len(seen) == 3
    assert stats.retries == 2
    assert stats.pages == 1


def test_truncated_json_forever_fails(clock):
    handler, _ = sequence(httpx.Response(200, content=b'{"results": ['))
    with make_client(handler, max_attempts=2) as client, pytest.raises(ApiError, match="JSON"):
        fetch(client)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.ReadError("reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_are_retried(clock, error):
    handler, seen = sequence(error, error, page([1], None))
    stats = RequestStats()
    with make_client(handler) as client:
        assert fetch(client, stats) == [1]
    assert len(seen) == 3
    assert stats.retries == 2
    assert stats.rate_limit_waits == 0


def test_transport_errors_forever_fail_with_attempts(clock):
    handler, seen = sequence(httpx.ReadTimeout("slow"))
    with make_client(handler, max_attempts=4) as client, pytest.raises(ApiError) as info:
        fetch(client)
    assert len(seen) == 4
    assert "4 attempts" in str(info.value)
    assert "timed out" in str(info.value)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("[Errno -2] Name or service not known"), "Name or service not known"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "Connection refused"),
        (httpx.ConnectTimeout("connect timed out"), "no answer to connect"),
    ],
    ids=["dns", "refused", "connect-timeout"],
)
def test_an_unreachable_host_is_named_with_the_setting_to_check(clock, error, reason):
    handler, _ = sequence(error)
    with make_client(handler, max_attempts=3) as client, pytest.raises(ApiError) as info:
        fetch(client)
    message = str(info.value)
    assert f"cannot reach {BASE}:443 ({reason}), still after 3 attempts" in message
    assert "base_url (OGSYNC_BASE_URL, --base-url)" in message


@pytest.mark.parametrize("status", [400, 404, 405, 418])
def test_client_errors_fail_at_once(clock, status):
    handler, seen = sequence(httpx.Response(status, json={"updated_start": "bad"}), page())
    stats = RequestStats()
    with make_client(handler) as client, pytest.raises(ApiError) as info:
        fetch(client, stats)
    assert len(seen) == 1
    assert stats.retries == 0
    assert clock.sleeps == []
    assert info.value.status == status
    assert not isinstance(info.value, AuthError)
    assert str(status) in str(info.value)


def test_400_detail_is_in_the_message(clock):
    handler, _ = sequence(httpx.Response(400, json={"updated_start": ["Enter a valid date."]}))
    with make_client(handler) as client, pytest.raises(ApiError, match="Enter a valid date"):
        fetch(client)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusals_raise_auth_error_at_once(clock, status):
    handler, seen = sequence(httpx.Response(status, json={"detail": "Authentication Failed"}))
    with make_client(handler) as client, pytest.raises(AuthError) as info:
        fetch(client)
    assert len(seen) == 1
    assert clock.sleeps == []
    assert info.value.status == status
    if status == 403:
        assert "Bulk Operations" in str(info.value)
        assert "/subscriptions/" in str(info.value)


# -- the key never leaks ----------------------------------------------------------------------


SCENARIOS: list[tuple[str, tuple[httpx.Response | Exception, ...]]] = [
    ("401", (httpx.Response(401, json={"detail": "Invalid API key"}),)),
    ("403", (httpx.Response(403, json={"detail": "Authentication Failed"}),)),
    ("400", (httpx.Response(400, json={"updated_start": "bad"}),)),
    ("404", (httpx.Response(404, json={"detail": "Not found."}),)),
    ("429 forever", (httpx.Response(429, headers={"Retry-After": "1"}),)),
    ("503 forever", (httpx.Response(503),)),
    ("truncated", (httpx.Response(200, content=b"{"),)),
    ("connect", (httpx.ConnectError("refused"),)),
    ("timeout", (httpx.ReadTimeout("slow"),)),
    ("protocol", (httpx.RemoteProtocolError("closed"),)),
    ("malformed", (httpx.Response(200, json=[1, 2]),)),
    ("no results", (httpx.Response(200, json={"next": None}),)),
    ("cursor loop", (page([1], NEXT_1), page([2], NEXT_1))),
]


@pytest.mark.parametrize(("name", "responses"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_key_in_no_exception_or_log(clock, caplog, name, responses):
    caplog.set_level(logging.DEBUG)
    handler, seen = sequence(*responses)
    with make_client(handler, max_attempts=3) as client, pytest.raises(ApiError) as info:
        fetch(client)
    chain: BaseException | None = info.value
    while chain is not None:
        assert KEY not in str(chain)
        assert KEY not in repr(chain)
        chain = chain.__cause__ or chain.__context__
    for record in caplog.records:
        assert KEY not in record.getMessage()
    assert KEY not in caplog.text
    for request in seen:
        assert KEY not in str(request.url)


def test_key_echoed_by_the_server_is_not_repeated_in_the_error(clock):
    """Some gateways echo the credential back; the contract says it never reaches a message."""
    for status in (400, 401, 403, 404):
        body = {"detail": f"Invalid API key {KEY}"}
        handler, _ = sequence(httpx.Response(status, json=body))
        with make_client(handler) as client, pytest.raises(ApiError) as info:
            fetch(client)
        assert KEY not in str(info.value), status


# -- backoff and the rate budget --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=0, max_value=60),
    base=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=300.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_full_jitter_bounds(attempt, base, cap, seed):
    policy = RetryPolicy(base_seconds=base, cap_seconds=cap)
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_backoff_is_jittered_and_grows():
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=1000.0)
    rng = random.Random(0)
    early = [policy.backoff(1, rng) for _ in range(200)]
    late = [policy.backoff(6, rng) for _ in range(200)]
    assert len(set(early)) > 100  # jittered, not constant
    assert max(early) <= 2.0
    assert max(late) > 2.0


def test_default_retry_policy():
    policy = RetryPolicy()
    assert policy.max_attempts >= 3
    assert policy.retry_after_cap_seconds > 0
    assert policy.cap_seconds >= policy.base_seconds > 0


class FrozenTime:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_budget_slots(monkeypatch):
    fake = FrozenTime()
    monkeypatch.setattr(client_module, "time", fake)
    budget = RateBudget(600)  # a slot every 0.1 s
    waits = [budget.acquire() for _ in range(5)]
    assert waits[0] == 0
    assert waits[1:] == pytest.approx([0.1] * 4)
    assert sum(fake.sleeps) == pytest.approx(0.4)
    assert fake.now == pytest.approx(500.4)


def test_rate_budget_slots_for_callers_arriving_together(monkeypatch):
    """Five workers asking at the same instant get slots 0, 0.1, ..., 0.4 s later."""
    fake = FrozenTime()
    fake.sleep = fake.sleeps.append  # type: ignore[method-assign]  # sleeping moves no clock
    monkeypatch.setattr(client_module, "time", fake)
    budget = RateBudget(600)
    waits = [budget.acquire() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert fake.sleeps == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_rate_budget_does_not_bank_idle_time(monkeypatch):
    fake = FrozenTime()
    monkeypatch.setattr(client_module, "time", fake)
    budget = RateBudget(60)  # one a second
    assert budget.acquire() == 0
    fake.now += 100  # idle
    assert budget.acquire() == 0
    assert budget.acquire() == pytest.approx(1.0)


def test_rate_budget_zero_is_unlimited(monkeypatch):
    fake = FrozenTime()
    monkeypatch.setattr(client_module, "time", fake)
    budget = RateBudget(0)
    assert [budget.acquire() for _ in range(10)] == [0.0] * 10
    assert fake.sleeps == []


def test_client_requests_go_through_the_budget(monkeypatch):
    fake = FrozenTime()
    fake.sleep = fake.sleeps.append  # type: ignore[method-assign]
    monkeypatch.setattr(client_module, "time", fake)
    handler, _ = sequence(page([1], NEXT_1), page([2], None))
    client = OrdergrooveClient(
        BASE, KEY, transport=httpx.MockTransport(handler), budget=RateBudget(60)
    )
    with client:
        assert fetch(client) == [1, 2]
    assert fake.sleeps == [1.0]


# -- server time ------------------------------------------------------------------------------


def test_server_time_reads_date_header(clock):
    response = page([], None)
    response.headers["Date"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    handler, seen = sequence(response)
    stats = RequestStats()
    with make_client(handler) as client:
        assert client.server_time(stats) == datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert seen[0].url.path == "/customers/"
    assert seen[0].url.params["page_size"] == "1"
    assert seen[0].headers["x-api-key"] == KEY
    assert stats.requests == 1


def test_server_time_converts_offsets_to_utc(clock):
    response = page([], None)
    response.headers["Date"] = "Wed, 21 Oct 2015 02:28:00 -0500"
    handler, _ = sequence(response)
    with make_client(handler) as client:
        assert client.server_time(RequestStats()) == datetime(2015, 10, 21, 7, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    "date", [None, "not a date", "Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 32 Jan 2024 0:0:0 GMT"]
)
def test_server_time_is_none_without_a_readable_date(clock, caplog, date):
    response = page([], None)
    if date is not None:
        response.headers["Date"] = date
    handler, _ = sequence(response)
    with make_client(handler) as client:
        assert client.server_time(RequestStats()) is None
    if date is not None:
        assert "unreadable Date" in caplog.text


def test_server_time_refused_key_raises_auth_error(clock):
    handler, _ = sequence(httpx.Response(403, json={"detail": "Authentication Failed"}))
    with make_client(handler) as client, pytest.raises(AuthError, match="Bulk Operations"):
        client.server_time(RequestStats())


def test_url_joins_base_and_path():
    client = OrdergrooveClient(f"{BASE}/", KEY, transport=httpx.MockTransport(lambda r: page()))
    with client:
        assert client.url("/orders/") == f"{BASE}/orders/"
