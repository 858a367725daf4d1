"""A hostile or broken API: the key goes only to the API, and every bound holds.

The API here is `hostile_server`, real HTTP on loopback; each test shapes its `/orders/` pages.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import duckdb
import pytest

from hostile_server import KEY, Hostile, gzip_bomb, hostile_api, page, records
from ogsync.client import ForeignLink, InsecureUrl, OrdergrooveClient, RequestStats, TooMuch
from ogsync.config import ConfigError, Settings, load_settings
from ogsync.endpoints import BY_NAME
from ogsync.sync import SyncOptions, run_sync
from ogsync.testing.cli import run_ogsync, spawn_ogsync

ORDERS = BY_NAME["orders"]


def sync_orders(api: Hostile, db: Path, **settings: object) -> tuple[int, str | None]:
    chosen = Settings(
        api_key=KEY,
        base_url=api.url,
        destination=f"duckdb:///{db}",
        max_attempts=2,
        **settings,  # type: ignore[arg-type]
    )
    result = run_sync(chosen, SyncOptions.from_settings(chosen, [ORDERS]))
    (outcome,) = result.outcomes
    return result.exit_code, outcome.run.error


def stored(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM ordergroove.orders").fetchone()[0]


@pytest.mark.parametrize("where", ["other host", "other port", "userinfo"])
def test_a_next_link_off_the_api_gets_nothing_and_fails_the_endpoint(tmp_path, where):
    with hostile_api() as api, hostile_api("localhost") as elsewhere:
        port = api.url.rsplit(":", 1)[1]
        foreign = {
            "other host": f"http://localhost:{port}/orders/?cursor=2",  # same machine, other name
            "other port": f"{elsewhere.url.replace('localhost', '127.0.0.1')}/orders/?cursor=2",
            "userinfo": f"http://user:pw@127.0.0.1:{port}/orders/?cursor=2",
        }[where]

        def orders(state: Hostile, query: dict[str, list[str]]):
            assert "cursor" not in query, "the client followed the foreign link"
            return 200, {}, page(records(0, 100), foreign)

        api.orders = orders
        code, error = sync_orders(api, tmp_path / "wh.duckdb", batch_records=100)
    assert code == 1
    assert error is not None and "refused, nothing was sent there" in error
    assert KEY not in error and "cursor" not in error
    assert not elsewhere.seen
    assert len(api.requests_to("/orders/")) == 1
    assert stored(tmp_path / "wh.duckdb") == 100  # the page before the bad link is kept


@pytest.mark.parametrize(
    ("base", "link"),
    [
        ("https://api.test", "http://api.test/orders/?cursor=2"),  # downgraded to plain http
        ("https://api.test", "https://api.test:8443/orders/?cursor=2"),
        ("https://api.test", "https://evil.test/orders/?cursor=2"),
        ("https://api.test", "//evil.test/orders/"),
        ("https://api.test", "not a url at all"),
    ],
)
def test_origin_rule_for_links(base, link):
    import httpx

    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(200, json={"next": link, "results": []})

    client = OrdergrooveClient(base, KEY, transport=httpx.MockTransport(handler))
    with pytest.raises(ForeignLink, match=r"refused|not a URL"):
        list(client.pages("/orders/", {}, RequestStats()))
    assert sent == [f"{base}/orders/?page_size=100"]


def test_a_poisoned_checkpoint_sends_nothing_and_the_other_endpoints_sync(tmp_path):
    db = tmp_path / "wh.duckdb"
    with hostile_api() as api, hostile_api("localhost") as elsewhere:
        api.orders = lambda state, query: (200, {}, page(records(0, 5), None))
        assert sync_orders(api, db) == (0, None)
        with duckdb.connect(str(db)) as conn:
            conn.execute(
                "UPDATE ordergroove._ogsync_state SET checkpoint_url = ?, "
                "checkpoint_start = watermark, checkpoint_end = watermark "
                "WHERE endpoint = 'orders'",
                [f"{elsewhere.url}/orders/?cursor=x"],
            )
        code, error = sync_orders(api, db)
    assert code == 1
    assert error is not None and "checkpoint" in error and "refused" in error
    assert not elsewhere.seen


def test_plain_http_is_refused_off_this_machine():
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        load_settings({"base_url": "http://api.example.com"}, environ={})
    with pytest.raises(InsecureUrl):
        OrdergrooveClient("http://10.1.2.3", KEY)
    for loopback in ("http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"):
        assert load_settings({"base_url": loopback}, environ={}).base_url == loopback
    allowed = load_settings(
        {"base_url": "http://api.example.com"}, environ={"OGSYNC_ALLOW_INSECURE_HTTP": "1"}
    )
    assert allowed.allow_insecure_http


def test_plain_http_refusal_is_one_line_and_exit_2(tmp_path):
    done = run_ogsync(
        "sync", env={"OGSYNC_API_KEY": KEY, "OGSYNC_BASE_URL": "http://api.example.com"},
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "allow_insecure_http" in done.stderr and "Traceback" not in done.stderr


def test_a_gzip_bomb_is_refused_at_the_bound(tmp_path):
    bomb = gzip_bomb(256 * 2**20)
    assert len(bomb) < 2**20
    with hostile_api() as api:
        api.orders = lambda state, query: (200, {"Content-Encoding": "gzip"}, bomb)
        code, error = sync_orders(api, tmp_path / "wh.duckdb", max_page_bytes=8 * 2**20)
    assert code == 1
    assert error is not None and "max_page_bytes" in error
    assert len(api.requests_to("/orders/")) == 1  # refused, not retried


def test_a_declared_length_past_the_bound_is_refused_unread():
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}" + b" " * 2000)

    client = OrdergrooveClient(
        "https://api.test", KEY, transport=httpx.MockTransport(handler), max_page_bytes=1000
    )
    with pytest.raises(TooMuch, match="1,000 bytes"):
        client.get("https://api.test/orders/", None, RequestStats())


def test_an_endless_cursor_stops_with_a_clear_error(tmp_path):
    with hostile_api() as api:

        def orders(state: Hostile, query: dict[str, list[str]]):
            n = int(query.get("cursor", ["0"])[0])
            return 200, {}, page(records(n, 1), f"{state.url}/orders/?cursor={n + 1}")

        api.orders = orders
        code, error = sync_orders(api, tmp_path / "wh.duckdb", max_pages=50)
    assert code == 1
    assert error is not None and "50 pages" in error and "max_pages" in error
    assert len(api.requests_to("/orders/")) == 50


@pytest.mark.slow
def test_sigterm_during_a_long_retry_after_stops_the_run_promptly(tmp_path):
    with hostile_api() as api:
        served: list[int] = []

        def orders(state: Hostile, query: dict[str, list[str]]):
            if not served:
                served.append(1)
                return 200, {}, page(records(0, 100), f"{state.url}/orders/?cursor=1")
            return 429, {"Retry-After": "110"}, b'{"detail": "slow down"}'

        api.orders = orders
        env = {"OGSYNC_API_KEY": KEY, "OGSYNC_BASE_URL": api.url}
        (tmp_path / "ogsync.toml").write_text("batch_records = 100\n")  # commit each page
        args = ("sync", "--endpoints", "orders", "--destination", f"duckdb:///{tmp_path}/w.duckdb")
        proc = spawn_ogsync(*args, "--log-format", "json", env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 60
            while len(api.requests_to("/orders/")) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(api.requests_to("/orders/")) >= 2, "the 429 was never asked for"
            time.sleep(0.3)  # the client is now waiting out Retry-After
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)  # far less than the 110 s asked for
        finally:
            proc.kill()
    assert proc.returncode == 1, err
    assert "stopped while waiting to retry" in err
    assert KEY not in err
    assert stored(tmp_path / "w.duckdb") == 100
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        (link,) = conn.execute(
            "SELECT checkpoint_url FROM ordergroove._ogsync_state WHERE endpoint = 'orders'"
        ).fetchone()
    assert link.endswith("cursor=1")  # the next run resumes after the committed page


def test_odd_records_are_set_aside_and_a_page_s_copies_resolve_newest_first(tmp_path):
    db = tmp_path / "wh.duckdb"
    served = [
        {"public_id": "dup", "updated": "2024-05-01 11:00:00", "status": 2},
        {"public_id": "dup", "updated": "2024-05-01 10:00:00", "status": 1},  # older, served later
        {"public_id": 123, "updated": "2024-05-01 10:00:00"},
        {"public_id": "123", "updated": "2024-05-01 10:00:00"},
        {"public_id": "huge", "updated": "2024-05-01 10:00:00", "extra_data": "x" * 3000},
    ]
    with hostile_api() as api:
        api.orders = lambda state, query: (200, {}, page(served, None))
        code, error = sync_orders(api, db, max_record_bytes=2048)
    assert (code, error) == (0, None)
    with duckdb.connect(str(db), read_only=True) as conn:
        loaded = dict(conn.execute("SELECT public_id, status FROM ordergroove.orders").fetchall())
        set_aside = conn.execute(
            "SELECT source, item_id, reason FROM ordergroove._ogsync_rejected ORDER BY item_id"
        ).fetchall()
        counted = conn.execute(
            "SELECT rejected, warnings FROM ordergroove._ogsync_runs WHERE endpoint = 'orders'"
        ).fetchone()
    assert loaded == {"dup": 2, "123": None}  # the text key alone, not merged with the number
    assert [(s, i) for s, i, _ in set_aside] == [("orders", "123"), ("orders", "huge")]
    assert "not text" in set_aside[0][2] and "max_record_bytes" in set_aside[1][2]
    assert counted[0] == 2 and counted[1] >= 2
