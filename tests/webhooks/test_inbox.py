"""The inbox on SQLite and on PostgreSQL: stored once, oldest first, applied, durable, shared."""

from __future__ import annotations

import sqlite3
import threading
import time
from types import SimpleNamespace

import pytest
from webhook_support import body_of, event

from ogsync.destinations.postgres_inbox import PostgresInbox
from ogsync.webhooks.inbox import (
    DEFAULT_INBOX_PATH,
    InboxClosed,
    InboxEvent,
    InvalidEvent,
    NotJSON,
    SQLiteInbox,
    open_inbox,
)


def ev(kind: str = "order.delete", event_id: str | None = None, created: int | None = None, **obj):
    payload = event(kind, event_id, **obj)
    if created is not None:
        payload["created"] = created
    return InboxEvent.from_body(body_of(payload))


def test_from_body_reads_the_envelope():
    item = InboxEvent.from_body(
        b'{"id":"e1","type":"item.remove","created":1700000000,'
        b'"data":{"object":{"type":"item","public_id":"i1","order":"o1"}}}',
        received_at=5.0,
    )
    assert (item.event_id, item.type, item.created) == ("e1", "item.remove", 1700000000)
    assert (item.object_type, item.object_id, item.order_id) == ("item", "i1", "o1")
    assert item.received_at == 5.0 and item.applied_at is None
    customer = InboxEvent.from_body(
        b'{"id":"e2","type":"customer.update","created":"1700000001",'
        b'"data":{"object":{"merchant_user_id":"cust-9"}}}'
    )
    assert (customer.object_type, customer.object_id, customer.order_id) == (
        "customer",
        "cust-9",
        None,
    )
    assert customer.created == 1700000001
    bare = InboxEvent.from_body(b'{"id":"e3","type":"x","created":true,"data":[1]}')
    assert (bare.created, bare.object_type, bare.object_id) == (None, "x", None)
    with pytest.raises(NotJSON):
        InboxEvent.from_body(b"{")
    for bad in (b"[]", b'{"id":"e"}', b'{"type":"t"}', b'{"id":" ","type":"t"}'):
        with pytest.raises(InvalidEvent):
            InboxEvent.from_body(bad)


def test_put_stores_each_id_once(any_inbox):
    first = ev()
    assert any_inbox.put(first) is True
    assert any_inbox.put(first) is False
    again = InboxEvent.from_body(first.payload.encode(), received_at=time.time() + 9)
    assert any_inbox.put(again) is False
    assert any_inbox.backlog() == 1
    [pending] = any_inbox.pending()
    assert pending.event_id == first.event_id
    assert pending.payload == first.payload
    assert pending.received_at == pytest.approx(first.received_at, abs=1e-3)


def test_duplicates_within_one_group_commit(any_inbox):
    one, two = ev(), ev()
    futures = [any_inbox.submit(e) for e in (one, two, one, one, two)]
    assert [f.result(10) for f in futures] == [True, True, False, False, False]
    assert any_inbox.backlog() == 2


def test_pending_is_oldest_first_and_mark_applied_clears_it(any_inbox):
    late, early = ev(created=1_700_002_000), ev(created=1_700_001_000)
    undated = ev(created=None)
    undated = InboxEvent(**{**undated.__dict__, "created": None})
    for e in (late, early, undated):
        any_inbox.put(e)
    assert [e.event_id for e in any_inbox.pending()] == [
        undated.event_id,
        early.event_id,
        late.event_id,
    ]
    assert [e.event_id for e in any_inbox.pending(limit=1)] == [undated.event_id]
    assert any_inbox.mark_applied([early.event_id, "no-such-id"]) == 1
    assert any_inbox.mark_applied([early.event_id]) == 0  # applied once
    assert any_inbox.mark_applied([]) == 0
    assert [e.event_id for e in any_inbox.pending()] == [undated.event_id, late.event_id]
    assert any_inbox.backlog() == 2
    assert any_inbox.mark_applied([undated.event_id, late.event_id]) == 2
    assert any_inbox.pending() == [] and any_inbox.backlog() == 0


def test_many_threads_at_once(any_inbox):
    events = [ev() for _ in range(300)]
    results: list[bool] = []
    lock = threading.Lock()

    def put_all(chunk: list[InboxEvent]) -> None:
        for e in chunk:
            got = any_inbox.put(e)
            with lock:
                results.append(got)

    # Every event goes through two threads: each is new exactly once.
    threads = [threading.Thread(target=put_all, args=(events[i % 6 :: 6],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 300 and results.count(False) == 300
    assert any_inbox.backlog() == 300
    assert any_inbox.commits < 600  # some commits held more than one event


def test_closed_inbox_refuses_writes(sqlite_inbox):
    sqlite_inbox.put(ev())
    sqlite_inbox.close()
    sqlite_inbox.close()  # twice is fine
    with pytest.raises(InboxClosed):
        sqlite_inbox.submit(ev())
    with pytest.raises(InboxClosed):
        sqlite_inbox.backlog()
    assert not sqlite_inbox.healthy()


def test_sqlite_inbox_is_wal_and_survives_reopening(tmp_path):
    path = tmp_path / "inbox.sqlite"
    first = ev()
    with SQLiteInbox(path) as inbox:
        assert inbox.put(first)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with SQLiteInbox(path) as inbox:
        assert inbox.put(first) is False
        assert [e.event_id for e in inbox.pending()] == [first.event_id]
        # The writer's connection syncs every commit.
        assert inbox._call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2


def test_two_processes_worth_of_inboxes_share_one_file(tmp_path):
    """The receiver and an apply step may open the same file: WAL and a busy timeout."""
    path = tmp_path / "inbox.sqlite"
    with SQLiteInbox(path) as receiver_side, SQLiteInbox(path) as apply_side:
        events = [ev() for _ in range(50)]
        writer = threading.Thread(target=lambda: [receiver_side.put(e) for e in events])
        writer.start()
        applied = 0
        while writer.is_alive() or apply_side.backlog():
            applied += apply_side.mark_applied(e.event_id for e in apply_side.pending())
        writer.join()
        assert applied == 50


def test_sqlite_write_failure_fails_the_waiters_and_recovers(tmp_path):
    path = tmp_path / "inbox.sqlite"
    with SQLiteInbox(path) as inbox:
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        inbox._call(lambda c: c.execute("PRAGMA busy_timeout = 50"))
        with pytest.raises(sqlite3.OperationalError):
            inbox.put(ev())
        blocker.rollback()
        blocker.close()
        assert inbox.put(ev()) is True  # a fresh connection after the failure
        assert inbox.backlog() == 1


def test_postgres_inbox_table_lives_in_the_schema(postgres_inbox, postgres_server):
    import psycopg

    postgres_inbox.put(ev("item.remove", order="o-7", public_id="i-7"))
    with psycopg.connect(postgres_server.url) as conn:
        table = f'"{postgres_inbox.schema}"._ogsync_inbox'
        row = conn.execute(
            f"SELECT type, object_type, object_id, order_id, applied_at FROM {table}"
        ).fetchone()
    assert row == ("item.remove", "item", "i-7", "o-7", None)


def test_postgres_inbox_reconnects_after_losing_its_connection(postgres_inbox, postgres_server):
    import psycopg

    assert postgres_inbox.put(ev())
    pid = postgres_inbox._call(lambda conn: conn.info.backend_pid)
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    with pytest.raises(psycopg.OperationalError):  # the write in flight fails: the sender retries
        postgres_inbox.put(ev())
    assert postgres_inbox.put(ev()) is True
    assert postgres_inbox.backlog() == 2


def test_open_inbox_chooses_sqlite_or_the_postgres_warehouse(
    tmp_path, monkeypatch, postgres_server
):
    monkeypatch.delenv("OGSYNC_WEBHOOK_INBOX", raising=False)
    monkeypatch.chdir(tmp_path)
    duck = SimpleNamespace(destination="duckdb:///w.duckdb", schema="ordergroove")
    with open_inbox(duck) as inbox:
        assert isinstance(inbox, SQLiteInbox) and str(inbox.path) == DEFAULT_INBOX_PATH
    with open_inbox(duck, tmp_path / "given.sqlite") as inbox:
        assert inbox.path == tmp_path / "given.sqlite"
    monkeypatch.setenv("OGSYNC_WEBHOOK_INBOX", str(tmp_path / "env.sqlite"))
    with open_inbox(duck) as inbox:
        assert inbox.path == tmp_path / "env.sqlite"
    monkeypatch.delenv("OGSYNC_WEBHOOK_INBOX")
    warehouse = SimpleNamespace(destination=postgres_server.url, schema="open_inbox_test")
    with open_inbox(warehouse) as inbox:
        assert isinstance(inbox, PostgresInbox) and inbox.schema == "open_inbox_test"
        inbox.put(ev())
        assert inbox.backlog() == 1
