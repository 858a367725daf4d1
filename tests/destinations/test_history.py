"""`<table>_history`: every version a sync saw, once each, on one timeline per record, on every
warehouse of the contract suite."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ogsync.destinations.base import Commit, Destination, RunLog
from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint
from ogsync.options import Backfill
from ogsync.plan import WindowSize
from ogsync.records import type_records
from ogsync.simulator.server import RunningSimulator
from ogsync.testing.sim_control import SimControl
from ogsync.vocabulary import DeletionReason, RunKind

from .history_support import ALL, CHICAGO, advance, merchant, run, seen

ORDERS = ALL.endpoint(BY_NAME["orders"])
# The README's query (history section).
ACTIVE_ON = """SELECT public_id, customer, product, price, quantity, every, every_period
    FROM {{s}}.subscriptions_history
    WHERE _valid_from <= TIMESTAMPTZ '{moment}'
      AND (_valid_to IS NULL OR _valid_to > TIMESTAMPTZ '{moment}')
      AND live"""
# 01:10 CDT on the day the clocks go back: an hour later the wall clock reads 01:10 again.
BEFORE_FALL_BACK = datetime(2025, 11, 2, 6, 10, tzinfo=UTC)


def history(wh: Any, ep: Endpoint) -> list[dict[str, Any]]:
    return wh.rows(
        f"SELECT {ep.column_key} AS k, _raw, _valid_from, _valid_to, _is_current, "
        f"_closed_reason FROM {{s}}.{ep.name}_history ORDER BY 1, _valid_from, _synced_at"
    )


def assert_timelines(wh: Any, ep: Endpoint) -> dict[str, list[dict[str, Any]]]:
    """One row per version, each lasting until the next begins or a deletion closes it; the
    last open one is current, and the current table agrees."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in history(wh, ep):
        by_key[row["k"]].append(row)
    current = wh.table(ep.name)
    for key, versions in by_key.items():
        contents = [orjson.dumps(orjson.loads(v["_raw"]), option=orjson.OPT_SORT_KEYS)
                    for v in versions]  # fmt: skip
        if ep.update_field:
            assert len(set(contents)) == len(contents), f"{ep.name} {key}: a version twice"
        else:  # undated: a content may come back, as a new version, but never twice in a row
            assert all(a != b for a, b in itertools.pairwise(contents)), f"{ep.name} {key}"
        for before, after in itertools.pairwise(versions):
            if before["_closed_reason"] is None:
                assert before["_valid_to"] == after["_valid_from"], f"{ep.name} {key}: gap"
            else:
                assert before["_valid_to"] <= after["_valid_from"], f"{ep.name} {key}: overlap"
            assert not before["_is_current"]
        last = versions[-1]
        row = current[key]
        if row["_deleted_at"] is None:
            assert last["_is_current"] and last["_valid_to"] is None, f"{ep.name} {key}"
            assert orjson.loads(last["_raw"]) == orjson.loads(row["_raw"])
        else:
            assert not last["_is_current"], f"{ep.name} {key}: deleted, yet current"
            assert last["_valid_to"] == row["_deleted_at"]
            assert last["_closed_reason"] == row["_deleted_reason"]
    assert set(by_key) == set(current), f"{ep.name}: history and current hold other keys"
    return by_key


def assert_history_is_what_was_seen(
    wh: Any, sim: RunningSimulator, snapshots: Sequence[dict[str, set[tuple[str, bytes]]]]
) -> None:
    for ep in ENDPOINTS:
        by_key = assert_timelines(wh, ep)
        kept = {
            (key, orjson.dumps(orjson.loads(v["_raw"]), option=orjson.OPT_SORT_KEYS))
            for key, versions in by_key.items()
            for v in versions
        }
        expected = set().union(*(snap[ep.name] for snap in snapshots))
        assert kept == expected, (ep.name, len(kept - expected), len(expected - kept))
        with SimControl(sim.url) as control:
            versions = control.versions(ep)
        real = {(v["id"], orjson.dumps(v["record"], option=orjson.OPT_SORT_KEYS)) for v in versions}
        assert kept <= real, f"{ep.name}: a version the API never had"


def test_history_keeps_every_version_the_syncs_saw_once_on_one_timeline(wh, tmp_path):
    with merchant(tmp_path, BEFORE_FALL_BACK) as (sim, inbox):
        snapshots = [seen(sim)]
        run(sim, wh.open_dest(), inbox)
        advance(sim, minutes=30, changes=250)  # still summer time: 01:40 CDT
        snapshots.append(seen(sim))
        run(sim, wh.open_dest(), inbox)  # with the deletions the webhooks announced
        advance(sim, minutes=60, changes=250)  # 01:40 again, now CST: the repeated hour
        snapshots.append(seen(sim))
        last = BEFORE_FALL_BACK + timedelta(minutes=90)
        run(sim, wh.open_dest(), inbox)
        run(sim, wh.open_dest(), inbox)  # nothing new: adds no version
        # A backfill of windows already read adds nothing either.
        start = BEFORE_FALL_BACK - timedelta(days=800)
        run(sim, wh.open_dest(), inbox, backfill=Backfill(start=start, size=WindowSize.YEAR))
        assert_history_is_what_was_seen(wh, sim, snapshots)
        # The README's question, "active subscriptions on a date", answers what the API
        # listed then. (Asked of a moment inside the repeated hour it can't: a version
        # stamped 01:08 there may be either 01:08, and alone it reads as the first.)
        rows = wh.rows(ACTIVE_ON.format(moment=last.isoformat()))
        active = {k for k, body in snapshots[-1]["subscriptions"] if orjson.loads(body)["live"]}
        assert {r["public_id"] for r in rows} == active
        orders = wh.rows(
            "SELECT _closed_reason AS why, count(*) AS n FROM {s}.orders_history "
            "WHERE _closed_reason IS NOT NULL GROUP BY 1"
        )
        assert {r["why"] for r in orders} == {"webhook:order.delete"}, orders
        repeated = wh.value(
            "SELECT count(*) FROM {s}.subscriptions_history WHERE _valid_from >= ? "
            "AND _valid_from < ?",
            [BEFORE_FALL_BACK + timedelta(minutes=50), BEFORE_FALL_BACK + timedelta(hours=2)],
        )
        assert repeated > 0  # versions stamped in the repeated hour are kept


# -- written directly: late versions, deletions, a record coming back ----------------------


def order(key: str, updated: str, status: int = 1) -> dict[str, Any]:
    return {"public_id": key, "updated": updated, "status": status, "customer": "c1"}


def ready(wh: Any) -> Destination:
    """A writer, prepared with history on (reading a DuckDB warehouse closes its writer)."""
    dest = wh.open_dest()
    dest.prepare(ALL.endpoints())
    return dest


HISTORY_KEY_INDEXES = {
    "duckdb": "SELECT index_name AS name FROM duckdb_indexes() WHERE schema_name = ?",
    "postgres": "SELECT indexname AS name FROM pg_indexes WHERE schemaname = ?",
}


@pytest.mark.parametrize("wh", sorted(HISTORY_KEY_INDEXES), indirect=True)  # Snowflake has none
def test_history_tables_have_a_key_index_only_where_the_warehouse_reads_it(wh):
    """PostgreSQL looks a batch's keys up in the index; DuckDB joins by hash and never reads
    it, so it has none (it would hold memory growing with the table), and drops one that an
    earlier ogsync made."""

    def indexes() -> set[str]:
        rows = wh.rows(HISTORY_KEY_INDEXES[wh.backend], [wh.schema])
        return {r["name"] for r in rows if r["name"].endswith("_history_key")}

    history = {ep.name for ep in ALL.endpoints() if ep.history}
    assert history
    ready(wh)
    if wh.backend == "postgres":
        assert indexes() == {f"{name}_history_key" for name in history}
        return
    assert indexes() == set()
    dest = wh.open_dest()
    dest.execute(  # type: ignore[attr-defined]
        f"CREATE INDEX orders_history_key ON {wh.s}.orders_history (public_id)"
    )
    wh.close_writers()
    assert indexes() == {"orders_history_key"}
    ready(wh)
    assert indexes() == set()


def write(wh: Any, records: list[dict[str, Any]], run_id: str) -> None:
    dest = ready(wh)
    table, _ = type_records(ORDERS, records, CHICAGO)
    run = RunLog(run_id, "orders", RunKind.SYNC, datetime.now(UTC))
    dest.write([(ORDERS, table, Commit(run))])


def test_a_late_version_is_slotted_in_and_a_deletion_closes_the_current_one(wh):
    write(wh, [order("o1", "2025-01-03 10:00:00", 1)], "r1")
    write(wh, [order("o1", "2025-01-03 10:00:00", 1)], "r2")  # the same version again
    write(wh, [order("o1", "2025-01-01 10:00:00", 1)], "r3")  # an older one, late
    write(wh, [order("o1", "2025-01-02 10:00:00", 5)], "r4")  # between the two
    rows = history(wh, ORDERS)
    assert [orjson.loads(r["_raw"])["updated"] for r in rows] == [
        "2025-01-01 10:00:00", "2025-01-02 10:00:00", "2025-01-03 10:00:00",
    ]  # fmt: skip
    assert [r["_valid_to"] for r in rows[:2]] == [rows[1]["_valid_from"], rows[2]["_valid_from"]]
    assert [r["_is_current"] for r in rows] == [False, False, True]

    gone = ready(wh).soft_delete(BY_NAME["orders"], ["o1"], DeletionReason.RECONCILE, "test")
    assert gone == 1
    closed = history(wh, ORDERS)[-1]
    assert not closed["_is_current"] and closed["_closed_reason"] == "reconcile"
    assert closed["_valid_to"] == wh.value("SELECT _deleted_at FROM {s}.orders")

    write(wh, [order("o1", "2099-01-01 10:00:00", 1)], "r5")  # it comes back, newer
    rows = history(wh, ORDERS)
    assert len(rows) == 4 and rows[-1]["_is_current"] and rows[-1]["_valid_to"] is None
    assert rows[-2]["_closed_reason"] == "reconcile"  # the deleted stretch stays closed
    assert_timelines(wh, ORDERS)


def test_a_batch_of_new_keys_and_a_batch_mixing_new_and_stored_ones(wh):
    """A batch whose keys are all new skips the search of the history; its keys that come
    twice are still two versions on one timeline. A batch mixing new keys with stored ones
    writes each once: the new inserted, the stored updated only where newer; after it, the
    writer upserts that endpoint in one statement, with the same outcome."""
    write(wh, [order("o1", "2025-01-01 10:00:00", 1), order("o2", "2025-01-01 10:00:00", 1),
               order("o1", "2025-01-02 10:00:00", 5)], "r1")  # fmt: skip
    rows = history(wh, ORDERS)
    assert [(r["k"], r["_is_current"]) for r in rows] == [
        ("o1", False), ("o1", True), ("o2", True),
    ]  # fmt: skip
    assert rows[0]["_valid_to"] == rows[1]["_valid_from"]
    dest = ready(wh)
    run = RunLog("r2", "orders", RunKind.SYNC, datetime.now(UTC))
    mixed = [
        order("o3", "2025-01-03 10:00:00", 1),  # new
        order("o1", "2025-01-01 10:00:00", 1),  # a version kept already, older than o1's
        order("o2", "2025-01-04 10:00:00", 7),  # newer
        order("o4", "2025-01-03 10:00:00", 1),  # new
    ]
    then = [
        order("o5", "2025-01-05 10:00:00", 1),  # new
        order("o3", "2025-01-06 10:00:00", 9),  # newer
        order("o4", "2025-01-03 10:00:00", 1),  # the same version again
    ]
    written = []
    for records in (mixed, then):
        table, _ = type_records(ORDERS, records, CHICAGO)
        (result,) = dest.write([(ORDERS, table, Commit(run))])
        written.append(result.written)
    assert written == [3, 3]  # o1 is older than its row; o4 again is written again
    current = wh.table("orders")
    assert {k: orjson.loads(r["_raw"])["status"] for k, r in current.items()} == {
        "o1": 5, "o2": 7, "o3": 9, "o4": 1, "o5": 1,
    }  # fmt: skip
    # o1 twice, o2 twice, o3 twice, o4, o5: no second copy of o1's or o4's versions
    assert len(history(wh, ORDERS)) == 8
    assert_timelines(wh, ORDERS)


def test_history_turned_on_later_begins_with_the_current_rows(wh, caplog):
    dest = wh.open_dest()
    plain = BY_NAME["orders"]
    dest.prepare(ENDPOINTS)
    table, _ = type_records(plain, [order("o1", "2025-01-01 10:00:00"),
                                    order("o2", "2025-01-02 10:00:00")], CHICAGO)  # fmt: skip
    dest.write([(plain, table, Commit(RunLog("r1", "orders", RunKind.SYNC, datetime.now(UTC))))])
    assert "orders_history" not in wh.relations()
    dest = wh.open_dest()
    with caplog.at_level("WARNING"):
        dest.prepare(ALL.endpoints())
    assert "earlier versions were never seen" in caplog.text
    rows = history(wh, ORDERS)
    assert [r["k"] for r in rows] == ["o1", "o2"] and all(r["_is_current"] for r in rows)
    ready(wh)  # seeded once only
    assert len(history(wh, ORDERS)) == 2


def test_keys_coming_again_in_one_group_and_in_the_next(wh):
    """Keys new to the table come again in a later write of the same group (one
    transaction) and in the next group: each write lands newer-wins with its own count, the
    group's other writes land once, and every version is on one timeline."""
    dest = ready(wh)
    customers = ALL.endpoint(BY_NAME["customers"])
    run = RunLog("r1", "orders", RunKind.SYNC, datetime.now(UTC))

    def orders(*records: dict[str, Any]) -> tuple[Endpoint, Any, Commit]:
        return ORDERS, type_records(ORDERS, list(records), CHICAGO)[0], Commit(run)

    people = [{"merchant_user_id": "c1", "last_updated": "2025-01-01 10:00:00"}]
    first = [order("o1", "2025-01-01 10:00:00"), order("o2", "2025-01-01 10:00:00"),
             order("o1", "2025-01-02 10:00:00", 5)]  # fmt: skip
    group = [
        orders(*first),
        (customers, type_records(customers, people, CHICAGO)[0], Commit(run)),
        orders(order("o2", "2025-01-03 10:00:00", 7), order("o3", "2025-01-01 10:00:00")),
    ]
    later = [orders(order("o3", "2024-12-31 10:00:00", 2), order("o4", "2025-01-01 10:00:00"))]
    written = [r.written for r in dest.write(group)] + [r.written for r in dest.write(later)]
    assert written == [2, 1, 2, 1]  # o3's older version is ignored
    current = wh.table("orders")
    assert {k: orjson.loads(r["_raw"])["status"] for k, r in current.items()} == {
        "o1": 5, "o2": 7, "o3": 1, "o4": 1,
    }  # fmt: skip
    assert list(wh.table("customers")) == ["c1"]
    # o3's older version is late, not lost: the history slots it in before the current one
    assert [r["k"] for r in history(wh, ORDERS)] == ["o1", "o1", "o2", "o2", "o3", "o3", "o4"]
    assert_timelines(wh, ORDERS)


def test_a_first_load_meets_a_key_it_wrote_in_an_earlier_group(wh, monkeypatch):
    """A table empty when the run began is loaded without looking for stored keys (DuckDB:
    plain INSERTs) until a record comes again, as one does whose update moved it to a later
    page: that group is written again the usual way, each write counted once, newer-wins,
    every version kept."""
    dest = ready(wh)
    customers = ALL.endpoint(BY_NAME["customers"])
    run = RunLog("r1", "orders", RunKind.SYNC, datetime.now(UTC))
    statements: list[str] = []
    execute = dest.execute

    def watched(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if sql.startswith("INSERT INTO") and sql.split()[2].endswith('."orders"'):
            statements.append(sql)
        return execute(sql, params)

    monkeypatch.setattr(dest, "execute", watched)

    def orders(*records: dict[str, Any]) -> tuple[Endpoint, Any, Commit]:
        return ORDERS, type_records(ORDERS, list(records), CHICAGO)[0], Commit(run)

    def people(key: str) -> tuple[Endpoint, Any, Commit]:
        record = {"merchant_user_id": key, "last_updated": "2025-01-01 10:00:00"}
        return customers, type_records(customers, [record], CHICAGO)[0], Commit(run)

    groups = [
        [orders(order("o1", "2025-01-01 10:00:00"), order("o2", "2025-01-01 10:00:00"))],
        [orders(order("o3", "2025-01-01 10:00:00")), people("c1")],
        [
            people("c2"),
            orders(order("o4", "2025-01-01 10:00:00"), order("o1", "2025-01-02 10:00:00", 5)),
        ],
        [orders(order("o2", "2024-12-31 10:00:00", 2))],  # older than the stored one
    ]
    written, issued = [], []  # each group's rows written; the statements issued after it
    for group in groups:
        written.append([r.written for r in dest.write(group)])
        issued.append(len(statements))
    assert written == [[2], [1, 1], [1, 2], [0]]
    current = wh.table("orders")
    assert {k: orjson.loads(r["_raw"])["status"] for k, r in current.items()} == {
        "o1": 5, "o2": 1, "o3": 1, "o4": 1,
    }  # fmt: skip
    assert sorted(wh.table("customers")) == ["c1", "c2"]
    assert [r["k"] for r in history(wh, ORDERS)] == ["o1", "o1", "o2", "o2", "o3", "o4"]
    assert_timelines(wh, ORDERS)
    if wh.backend == "duckdb":  # plain INSERTs until one failed on o1; then upserts
        plain, usual = statements[: issued[1] + 1], statements[issued[1] + 1 :]
        assert len(plain) == 3 and not any("ON CONFLICT" in s for s in plain)
        assert usual and all("ON CONFLICT" in s for s in usual)


@pytest.mark.parametrize("wh", ["duckdb"], indirect=True)
def test_duckdb_keeps_the_records_as_received_with_zstd(wh):
    """Left to choose, DuckDB stores `_raw` larger and writes it slower; where the tables and
    their histories are created, it is told."""
    write(wh, [order(f"o{i}", "2025-01-01 10:00:00") for i in range(3000)], "r1")
    wh.open_dest().execute("CHECKPOINT")  # type: ignore[attr-defined]
    for table in ("orders", "orders_history"):
        rows = wh.rows(
            "SELECT DISTINCT compression FROM pragma_storage_info(?) "
            "WHERE column_name = '_raw' AND segment_type = 'JSON'",
            [f"{wh.schema}.{table}"],
        )
        assert [r["compression"] for r in rows] == ["ZSTD"], table
