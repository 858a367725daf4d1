"""Deletions the API does not show: webhook events applied as soft deletes, and reconciliation."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sync_support import (
    assert_deletions_reflected,
    query,
    rows,
    run_sync,
    simulator,
)

from ogsync.destinations.duckdb import DuckDBDestination
from ogsync.endpoints import BY_NAME
from ogsync.testing.sim_control import SimControl
from ogsync.testing.webhook_rig import signed_deliveries
from ogsync.webhooks.inbox import SQLiteInbox

ORDERS, ITEMS = BY_NAME["orders"], BY_NAME["items"]


@dataclass
class Event:
    event_id: str
    type: str
    created: int
    object_type: str | None
    object_id: str | None
    payload: str


def as_events(raw: list[dict]) -> list[Event]:
    return [
        Event(e["id"], e["type"], e["created"], e["data"]["object"].get("type"),
              e["data"]["object"].get("public_id"), orjson.dumps(e).decode())
        for e in raw
    ]  # fmt: skip


def apply(db, events) -> None:
    destination = DuckDBDestination(f"duckdb:///{db}", "ordergroove")
    try:
        destination.apply_events(events)
    finally:
        destination.close()


def changes_with_events(sim, minutes: int, count: int) -> list[Event]:
    """Changes made in the simulator's process, keeping the events its webhooks would carry."""
    clock = sim.sim.clock
    start = clock.now()
    clock.advance(minutes * 60)
    return as_events(sim.sim.changer.apply(start, clock.now(), count))


def test_deletions_racing_a_sync_end_soft_deleted_and_stale_copies_stay_deleted(db):
    with simulator(records=2500, seed=41, frozen_clock=True) as sim:
        run_sync(sim, db)
        events = changes_with_events(sim, minutes=30, count=200)
        deletions = [e for e in events if e.type in ("order.delete", "item.remove")]
        assert deletions
        early, late = deletions[: len(deletions) // 2], deletions[len(deletions) // 2 :]
        apply(db, early)  # before the sync that would load what they delete
        run_sync(sim, db)
        apply(db, late)
        apply(db, events)  # applying again, all of it, changes nothing
        assert_deletions_reflected(sim, db)
        reasons = {r[0] for r in query(db, "SELECT DISTINCT _deleted_reason FROM ordergroove.items "
                                           "WHERE _deleted_at IS NOT NULL")}  # fmt: skip
        assert reasons <= {"webhook:order.delete", "webhook:item.remove"}
        (stored,) = query(db, "SELECT count(*) FROM ordergroove.events")[0]
        assert stored == len({e.event_id for e in events})
        # an order deleted by webhook is not revived by a copy fetched before its deletion
        run_sync(sim, db, [ORDERS, ITEMS], full_refresh=True)
        assert_deletions_reflected(sim, db)


def test_reconcile_catches_deletions_whose_webhooks_never_came_and_spares_placed_orders(db):
    with simulator(records=2500, seed=42, frozen_clock=True) as sim, SimControl(sim.url) as control:
        run_sync(sim, db)
        before = {k for k, r in rows(db, ORDERS).items() if r["status"] == 1}
        items_before = {k for k, r in rows(db, ITEMS).items() if r["order_id"] in before}
        made = control.advance(minutes=30, changes=200)["changes"]
        assert made.get("place_order") and (
            made.get("cancel_subscription") or made.get("skip_order")
        )
        # No sync in between: orders placed since still read status 1 in the warehouse.
        result = run_sync(sim, db, [], reconcile=True)
        assert result.exit_code == 0
        deleted_orders = set(control.deleted(ORDERS))
        soft = set(rows(db, ORDERS, "_deleted_reason = 'reconcile'"))
        assert soft == deleted_orders & before  # exactly the vanished ones, none placed
        soft_items = set(rows(db, ITEMS, "_deleted_reason = 'reconcile'"))
        assert soft_items and soft_items == set(control.deleted(ITEMS)) & items_before
        logged = query(db, "SELECT endpoint, soft_deletes FROM ordergroove._ogsync_runs "
                           "WHERE kind = 'reconcile'")  # fmt: skip
        assert dict(logged) == {"orders": len(soft), "items": len(soft_items)}
        run_sync(sim, db)  # the next sync brings the placed orders up to date
        live = set(rows(db, ORDERS, "_deleted_at IS NULL"))
        assert live - deleted_orders == set(control.truth_by_key(ORDERS))


def test_signed_webhooks_delivered_twice_and_out_of_order_end_as_soft_deletes(db, tmp_path):
    """The issue's end-to-end case: cancels and skips in the API, webhooks through the real
    receiver into the inbox, and a sync that drains it first."""
    secret = "whsec-test-7f3a"
    inbox = SQLiteInbox(tmp_path / "inbox.sqlite")
    with signed_deliveries(inbox, secret, records=2500, seed=43) as (sim, control):
        run_sync(sim, db)
        for _ in range(3):
            control.advance(minutes=20, changes=120)
            delivered = control.wait_for_deliveries()
            result = run_sync(sim, db, inbox=inbox)
            assert result.exit_code == 0
        assert delivered["gave_up"] == 0
        assert inbox.backlog() == 0
        assert_deletions_reflected(sim, db)
        deleted_orders = set(control.deleted(ORDERS))
        tombstones = {r[0] for r in query(db, "SELECT record_id FROM ordergroove._ogsync_deletions "
                                              "WHERE endpoint = 'orders'")}  # fmt: skip
        assert tombstones == deleted_orders  # every order.delete was recorded, duplicates once
        events = query(db, "SELECT count(*), count(DISTINCT event_id) FROM ordergroove.events")
        assert events[0][0] == events[0][1] == len(set(delivered["delivered_ids"]))
    inbox.close()
