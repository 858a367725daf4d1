"""One bad webhook never blocks the others: odd events are read or set aside, never stuck."""

from __future__ import annotations

import threading
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import duckdb
import orjson
import pytest
from webhook_support import body_of, event, signed

from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoints import ENDPOINTS
from ogsync.webhooks.apply import apply_inbox
from ogsync.webhooks.inbox import InboxEvent, SQLiteInbox, unix_seconds

NOW = 1_733_000_000


def ev(created: object = NOW, kind: str = "order.delete", **obj: object) -> InboxEvent:
    payload = event(kind, **obj)
    payload["created"] = "CREATED"
    # Written as a sender would, whatever its size: JSON has no limit on a number's digits.
    big = isinstance(created, int) and not isinstance(created, bool)
    value = str(created).encode() if big else orjson.dumps(created)
    text = body_of(payload).replace(b'"CREATED"', value)
    return InboxEvent.from_body(text)


@pytest.mark.parametrize(
    ("created", "read"),
    [
        (NOW, NOW),
        (NOW * 1000 + 123, NOW),  # milliseconds
        (NOW * 1_000_000, NOW),  # microseconds
        (str(NOW), NOW),
        ("2024-12-01T00:00:00Z", 1_733_011_200),
        ("2024-12-01T01:00:00+01:00", 1_733_011_200),
        (NOW + 0.75, NOW),
        (10**30, None),
        (-(10**300), None),
        ("9" * 5000, None),
        ("yesterday", None),
        (None, None),
        (True, None),
        ([NOW], None),
        (0, None),
    ],
)
def test_created_is_read_the_plausible_ways_and_never_raises(created, read):
    assert unix_seconds(created) == read
    assert ev(created).created == read


@pytest.fixture
def warehouse(tmp_path: Path):
    with closing(DuckDBDestination(f"duckdb:///{tmp_path}/w.duckdb", "ordergroove")) as wh:
        wh.prepare(ENDPOINTS)
        yield wh


def rejected(wh: DuckDBDestination) -> dict[str, str]:
    rows = wh.execute("SELECT item_id, reason FROM ordergroove._ogsync_rejected")
    return dict(rows)


def test_events_that_cannot_be_applied_are_set_aside_and_the_drain_goes_on(tmp_path, warehouse):
    good = [ev(), ev(NOW * 1000), ev(kind="item.remove")]
    nameless = ev(public_id=None)
    timeless = ev(created="not a time")
    with SQLiteInbox(tmp_path / "inbox.sqlite") as inbox:
        for e in [good[0], nameless, good[1], timeless, good[2]]:
            assert inbox.put(e)
        # An inbox an older ogsync wrote holds `created` as it came: in milliseconds here.
        legacy = replace(ev(), created=NOW * 1000)
        assert inbox.put(legacy)
        result = apply_inbox(inbox, warehouse, batch=2)
        assert inbox.backlog() == 0
    assert (result.stored, result.deletions, result.rejected) == (4, 4, 2)
    assert rejected(warehouse).keys() == {nameless.event_id, timeless.event_id}
    assert "names no record" in rejected(warehouse)[nameless.event_id]
    (payload,) = warehouse.execute(
        "SELECT payload FROM ordergroove._ogsync_rejected WHERE item_id = ?", [timeless.event_id]
    )[0]
    assert payload == timeless.payload  # kept whole, as received
    (when,) = warehouse.execute(
        "SELECT deleted_at FROM ordergroove._ogsync_deletions WHERE source = ?", [legacy.event_id]
    )[0]
    assert int(when.timestamp()) == NOW


def test_an_event_the_warehouse_refuses_alone_is_set_aside_and_the_rest_applied(
    tmp_path, warehouse
):
    events = [ev() for _ in range(4)]
    poisoned = events[2].event_id
    real_apply = warehouse.apply_events

    def refusing(batch):  # stands in for any value the warehouse cannot take
        if any(e.event_id == poisoned for e in batch):
            raise duckdb.ConversionException("Conversion Error: value out of range\nLINE 1")
        return real_apply(batch)

    warehouse.apply_events = refusing  # type: ignore[method-assign]
    with SQLiteInbox(tmp_path / "inbox.sqlite") as inbox:
        for e in events:
            inbox.put(e)
        result = apply_inbox(inbox, warehouse)
        assert inbox.backlog() == 0
    assert (result.stored, result.rejected) == (3, 1)
    assert rejected(warehouse) == {
        poisoned: "ConversionException: Conversion Error: value out of range"
    }


def test_a_warehouse_refusing_every_event_stops_the_drain_and_loses_nothing(tmp_path, warehouse):
    def down(batch):
        raise duckdb.IOException("disk full")

    warehouse.apply_events = down  # type: ignore[method-assign]
    with SQLiteInbox(tmp_path / "inbox.sqlite") as inbox:
        for _ in range(3):
            inbox.put(ev())
        with pytest.raises(duckdb.IOException):
            apply_inbox(inbox, warehouse)
        assert inbox.backlog() == 3
    assert rejected(warehouse) == {}


def test_one_event_the_inbox_cannot_store_fails_alone(any_inbox):
    """A group commit that fails is retried event by event."""
    gate = threading.Event()
    holder = threading.Thread(target=any_inbox._call, args=(lambda conn: gate.wait(10),))
    holder.start()  # the writer is busy: what is submitted now is committed as one group
    time.sleep(0.1)
    good = [ev() for _ in range(5)]
    bad = replace(ev(), created=10**30)  # no from_body: a value no database column holds
    futures = [any_inbox.submit(e) for e in [*good[:2], bad, *good[2:]]]
    gate.set()
    holder.join()
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(10))
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes[:2] + outcomes[3:] == [True] * 5
    assert outcomes[2] not in (True, False)
    assert any_inbox.backlog() == 5


def test_a_drain_takes_what_was_there_when_it_began(tmp_path, warehouse):
    stop = threading.Event()
    with SQLiteInbox(tmp_path / "inbox.sqlite") as inbox:
        for _ in range(300):
            inbox.put(ev())

        def stream() -> None:
            while not stop.is_set():
                inbox.put(ev())

        feeder = threading.Thread(target=stream)
        feeder.start()
        try:
            result = apply_inbox(inbox, warehouse, batch=50)
        finally:
            stop.set()
            feeder.join()
        assert result.stored >= 300
        assert inbox.backlog() > 0  # the stream went on; the drain ended anyway


def test_a_signed_event_with_created_in_milliseconds_is_stored_and_applied(
    tmp_path, warehouse, make_receiver, sqlite_inbox
):
    payload = event("order.delete")
    payload["created"] = NOW * 1000
    body = body_of(payload)
    with make_receiver() as receiver:
        assert receiver.post(body, signed(body)).status_code == 200
    result = apply_inbox(sqlite_inbox, warehouse)
    assert (result.deletions, result.rejected) == (1, 0)
