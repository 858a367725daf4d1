"""The warehouse contract (docs/design.md), run against DuckDB, PostgreSQL and Snowflake alike.

Every parametrised test gets `wh` (conftest.py): a fresh warehouse of one backend, a factory
for destinations on it, and a reader that returns rows as dicts.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pytest

from ogsync.client import OrdergrooveClient, RateBudget, RetryPolicy
from ogsync.destinations.base import (
    AlreadyRunning,
    Commit,
    Destination,
    DestinationError,
    Rejected,
    RunLog,
)
from ogsync.destinations.postgres import PostgresDestination
from ogsync.endpoints import BY_NAME, ENDPOINTS, Endpoint, FieldType
from ogsync.plan import Checkpoint, EndpointState
from ogsync.records import type_records
from ogsync.simulator.server import RunningSimulator, SimulatorConfig, simulator_in_thread
from ogsync.sync import Listener, SyncEngine, SyncOptions
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE
from ogsync.testing.sim_control import SimControl

from .conftest import BACKENDS

CHICAGO = ZoneInfo("America/Chicago")
SIM_START = datetime(2025, 3, 14, 17, 0, 0, tzinfo=UTC)
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ORDERS, CUSTOMERS, PAYMENTS = BY_NAME["orders"], BY_NAME["customers"], BY_NAME["payments"]
OFFER_PROFILES = BY_NAME["offer_profiles"]
BOOKKEEPING = ("_ogsync_runs", "_ogsync_state", "_ogsync_deletions")
EXPECTED_KEYS = {
    "customers": "merchant_user_id",
    "subscriptions": "public_id",
    "orders": "public_id",
    "items": "public_id",
    "addresses": "public_id",
    "payments": "public_id",
    "products": "external_product_id",
    "offer_profiles": "public_id",
    "one_time_incentives": "public_id",
}
NEUTRAL_KIND = {
    FieldType.TEXT: "text",
    FieldType.TIMESTAMP: "timestamptz",
    FieldType.DATE: "date",
    FieldType.DECIMAL: "decimal",
    FieldType.INTEGER: "bigint",
    FieldType.BOOLEAN: "boolean",
    FieldType.JSON: "json",
    FieldType.JSON_TEXT: "json",
}
FAST_RETRY = RetryPolicy(max_attempts=12, base_seconds=0.005, cap_seconds=0.05)


# -- helpers ------------------------------------------------------------------------------


def run_log(ep: Endpoint, run_id: str = "run-1") -> RunLog:
    return RunLog(run_id=run_id, endpoint=ep.name, kind="sync", started_at=T0)


def commit(ep: Endpoint, run_id: str = "run-1", **kw: Any) -> Commit:
    return Commit(run=run_log(ep, run_id), **kw)


def keys(*values: str) -> pa.ChunkedArray:
    """The keys a full refresh saw, as the sync hands them over."""
    return pa.chunked_array([pa.array(values, pa.string())])


def batch(ep: Endpoint, records: Sequence[dict[str, Any]], first_seq: int = 0) -> pa.Table:
    table, _ = type_records(ep, list(records), CHICAGO, first_seq)
    return table


def rec(ep: Endpoint, key: str, updated: str | None = None, **values: Any) -> dict[str, Any]:
    """A record with its key and (if the endpoint has one) its update field."""
    record: dict[str, Any] = {ep.key: key}
    if ep.update_field is not None:
        record[ep.update_field] = updated
    record.update(values)
    return record


def write(
    dest: Destination, ep: Endpoint, records: Sequence[dict[str, Any]], **kw: Any
) -> tuple[int, int]:
    """One batch with its commit; returns (written, soft_deleted)."""
    (result,) = dest.write([(ep, batch(ep, records), commit(ep, **kw))])
    return result.written, result.soft_deleted


def raw(row: dict[str, Any]) -> Any:
    return orjson.loads(row["_raw"])


def prepared(wh: Any) -> Destination:
    dest = wh.open_dest()
    dest.prepare(ENDPOINTS)
    return dest


# -- 1. schema ----------------------------------------------------------------------------


def test_prepare_creates_the_tables_views_and_keys_of_the_design(wh):
    dest = prepared(wh)
    dest.prepare(ENDPOINTS)  # twice in one session is harmless
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.50")])
    dest = wh.open_dest()
    dest.prepare(ENDPOINTS)  # and again after reopening: data survives
    assert set(wh.table("orders")) == {"o1"}

    relations = wh.relations()
    tables = {n for n, kind in relations.items() if kind == "BASE TABLE"}
    views = {n for n, kind in relations.items() if kind == "VIEW"}
    # Other bookkeeping (the webhook inbox's `events`) may join; these must be there.
    assert tables >= set(EXPECTED_KEYS) | set(BOOKKEEPING)
    # `_current`, and until ogsync 0.2 its deprecated alias `_live`.
    assert views == {f"{name}{view}" for name in EXPECTED_KEYS for view in ("_current", "_live")}

    keys = wh.primary_keys()
    for name, key in EXPECTED_KEYS.items():
        assert keys[name] == [key], name
    assert keys["_ogsync_state"] == ["endpoint"]
    assert keys["_ogsync_runs"] == ["run_id", "endpoint"]

    for ep in ENDPOINTS:
        kinds = wh.column_types(ep.name)
        expected = {f.column: NEUTRAL_KIND[f.type] for f in ep.fields}
        expected |= {
            "_raw": "json",
            "_updated_latest": "timestamptz",
            "_synced_at": "timestamptz",
            "_run_id": "text",
            "_deleted_at": "timestamptz",
            "_deleted_reason": "text",
        }
        assert kinds == expected, ep.name
        assert wh.column_types(f"{ep.name}_current") == expected, ep.name
        assert wh.column_types(f"{ep.name}_live") == expected, ep.name
    # Spot checks against the design's own words, independent of the endpoint table.
    orders = wh.column_types("orders")
    assert (orders["updated"], orders["total"], orders["extra_data"]) == (
        "timestamptz",
        "decimal",
        "json",
    )
    assert (orders["locked"], orders["status"], orders["public_id"]) == (
        "boolean",
        "bigint",
        "text",
    )
    items = wh.column_types("items")
    assert "order_id" in items and "order" not in items
    assert "order_id" in wh.column_types("one_time_incentives")
    assert wh.column_types("subscriptions")["components"] == "json"


# -- 2. newer wins ------------------------------------------------------------------------

UPDATED_ENDPOINTS = [ep for ep in ENDPOINTS if ep.update_field is not None]


@pytest.mark.parametrize("ep", UPDATED_ENDPOINTS, ids=lambda ep: ep.name)
def test_newer_version_wins_and_older_is_ignored(wh, ep):
    dest = prepared(wh)
    key = "k-1"
    write(dest, ep, [rec(ep, key, "2025-01-15 10:00:00", v=1)])
    assert write(dest, ep, [rec(ep, key, "2025-01-15 11:00:00", v=2)])[0] == 1
    older = write(dest, ep, [rec(ep, key, "2025-01-15 09:59:59", v=0)])
    (row,) = wh.table(ep.name).values()
    assert raw(row)["v"] == 2
    assert row[ep.field_named(ep.update_field).column] == datetime(2025, 1, 15, 17, tzinfo=UTC)
    assert older[0] == 0, "an ignored older version is not counted as written"


def test_equal_update_time_overwrites(wh):
    dest = prepared(wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.00")])
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="5.00")])
    (row,) = wh.table("orders").values()
    assert row["total"] == Decimal("5.00")
    assert raw(row)["total"] == "5.00"


def test_without_a_readable_update_time_the_last_written_wins(wh):
    dest = prepared(wh)
    steps = [
        ("2025-01-15 10:00:00", "1.00", "1.00"),
        (None, "2.00", "2.00"),  # incoming NULL over a known time: last written wins
        ("2025-01-15 08:00:00", "3.00", "3.00"),  # stored NULL: last written wins
        ("2017-02-29 00:00:00", "4.00", "4.00"),  # unparseable over a known time
        ("2025-01-15 07:00:00", "5.00", "5.00"),  # stored unparseable (NULL): wins
        ("2025-01-15 06:00:00", "6.00", "5.00"),  # both known again: older is ignored
        ("undefined", "7.00", "7.00"),
    ]
    for updated, total, expected in steps:
        write(dest, ORDERS, [rec(ORDERS, "o1", updated, total=total)])
        (row,) = wh.table("orders").values()
        assert row["total"] == Decimal(expected), (updated, total)
        dest = wh.open_dest()
    (row,) = wh.table("orders").values()
    assert row["updated"] is None
    assert raw(row)["updated"] == "undefined"


def test_duplicates_in_one_batch_the_newest_then_the_last_wins(wh):
    dest = prepared(wh)
    records = [
        rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.00"),
        rec(ORDERS, "o2", "2025-01-15 10:00:00", total="20.00"),
        rec(ORDERS, "o1", "2025-01-15 10:00:00", total="2.00"),
        rec(ORDERS, "o1", "2025-01-15 10:30:00", total="3.00"),
        rec(ORDERS, "o2", None, total="21.00"),
    ]
    written, _ = write(dest, ORDERS, records)
    assert written == 2
    rows = wh.table("orders")
    assert {k: r["total"] for k, r in rows.items()} == {
        "o1": Decimal("3.00"),
        "o2": Decimal("21.00"),
    }
    # The API may serve an older copy after a newer one in the same batch: the newer wins.
    write(
        wh.open_dest(),
        ORDERS,
        [
            rec(ORDERS, "o3", "2025-01-15 10:30:00", total="7.00"),
            rec(ORDERS, "o3", "2025-01-15 10:00:00", total="6.00"),
        ],
    )
    assert wh.table("orders")["o3"]["total"] == Decimal("7.00")
    # A later batch with duplicates over stored rows: the last copy still decides.
    dest = wh.open_dest()
    write(
        dest,
        ORDERS,
        [
            rec(ORDERS, "o1", "2025-01-15 11:00:00", total="4.00"),
            rec(ORDERS, "o1", "2025-01-15 11:00:00", total="5.00"),
        ],
    )
    assert wh.table("orders")["o1"]["total"] == Decimal("5.00")


def test_offer_profiles_without_update_field_last_written_wins(wh):
    dest = prepared(wh)
    for name in ("first", "second", "first-again"):
        write(dest, OFFER_PROFILES, [rec(OFFER_PROFILES, "op1", name=name, weight=len(name))])
    (row,) = wh.table("offer_profiles").values()
    assert (row["name"], row["weight"]) == ("first-again", len("first-again"))
    assert raw(row) == {"public_id": "op1", "name": "first-again", "weight": 11}


# -- 3. soft deletes ----------------------------------------------------------------------


def test_full_refresh_soft_deletes_and_only_a_newer_version_revives(wh):
    dest = prepared(wh)
    at = "2025-01-15 10:00:00"
    write(dest, PAYMENTS, [rec(PAYMENTS, p, at, label=p) for p in ("p1", "p2", "p3")])

    # A full refresh that saw p1 and p2 only.
    seen = [rec(PAYMENTS, p, at, label=p) for p in ("p1", "p2")]
    refresh = commit(PAYMENTS, "run-2", refreshed_keys=keys("p1", "p2"))
    (result,) = dest.write([(PAYMENTS, batch(PAYMENTS, seen), refresh)])
    assert result.soft_deleted == 1
    p3 = wh.table("payments")["p3"]
    assert p3["_deleted_at"] is not None
    assert p3["_deleted_reason"] == "full_refresh"
    assert set(wh.table("payments_current")) == {"p1", "p2"}
    if wh.backend in BACKENDS:  # the SQL warehouses' deprecated alias (a lakehouse has no views)
        assert wh.table("payments_live") == wh.table("payments_current")
    (tomb,) = wh.rows("SELECT * FROM {s}._ogsync_deletions")
    assert (tomb["endpoint"], tomb["record_id"], tomb["reason"]) == (
        "payments",
        "p3",
        "full_refresh",
    )
    assert tomb["source"] == "run-2"
    (logged,) = wh.rows("SELECT * FROM {s}._ogsync_runs WHERE run_id = 'run-2'")
    assert logged["soft_deletes"] == 1

    # The same version again, or an older one, does not bring it back.
    dest = wh.open_dest()
    write(dest, PAYMENTS, [rec(PAYMENTS, "p3", at, label="same")])
    write(dest, PAYMENTS, [rec(PAYMENTS, "p3", "2025-01-15 09:00:00", label="older")])
    # Nor does a second full refresh that still misses it delete it twice.
    dest.write([(PAYMENTS, None, commit(PAYMENTS, "run-3", refreshed_keys=keys("p1", "p2")))])
    p3 = wh.table("payments")["p3"]
    assert p3["_deleted_at"] is not None and p3["label"] == "p3"
    assert "p3" not in wh.table("payments_current")
    assert wh.count("_ogsync_deletions") == 1

    # A strictly newer version does.
    dest = wh.open_dest()
    write(dest, PAYMENTS, [rec(PAYMENTS, "p3", "2025-01-15 10:00:01", label="back")])
    p3 = wh.table("payments")["p3"]
    assert p3["_deleted_at"] is None and p3["_deleted_reason"] is None
    assert p3["label"] == "back" and raw(p3)["label"] == "back"
    assert set(wh.table("payments_current")) == {"p1", "p2", "p3"}


def test_full_refresh_that_saw_nothing_deletes_everything_once(wh):
    dest = prepared(wh)
    write(dest, OFFER_PROFILES, [rec(OFFER_PROFILES, f"op{i}", name="x") for i in range(3)])
    (result,) = dest.write([(OFFER_PROFILES, None, commit(OFFER_PROFILES, refreshed_keys=keys()))])
    assert result.soft_deleted == 3
    assert wh.count("offer_profiles_current") == 0
    assert wh.count("offer_profiles", "_deleted_reason = 'full_refresh'") == 3
    assert wh.count("_ogsync_deletions", "endpoint = 'offer_profiles'") == 3


# -- 4. checkpoint atomic with data -------------------------------------------------------

CP1 = Checkpoint(T0 - timedelta(hours=2), T0, "https://api.example/orders/?cursor=one", T0)
CP2 = Checkpoint(T0, T0 + timedelta(hours=1), "https://api.example/orders/?cursor=two", T0)


def baseline(dest: Destination) -> None:
    """Committed state the failing writes must leave untouched."""
    dest.write(
        [
            (
                ORDERS,
                batch(ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.00")]),
                commit(ORDERS, "run-a", checkpoint=CP1, keep_checkpoint=True),
            ),
            (
                CUSTOMERS,
                batch(CUSTOMERS, [rec(CUSTOMERS, "c1", "2025-01-15 10:00:00", email="a@x")]),
                commit(CUSTOMERS, "run-a", watermark=T0),
            ),
        ]
    )


def assert_baseline(wh: Any) -> None:
    orders = wh.table("orders")
    assert set(orders) == {"o1"} and orders["o1"]["total"] == Decimal("1.00")
    assert {k: r["email"] for k, r in wh.table("customers").items()} == {"c1": "a@x"}
    dest = wh.open_dest()
    states = dest.load_states()
    assert states["orders"].checkpoint == CP1 and states["orders"].watermark is None
    assert states["customers"].watermark == T0 and states["customers"].checkpoint is None
    assert wh.rows("SELECT run_id, endpoint FROM {s}._ogsync_runs ORDER BY endpoint") == [
        {"run_id": "run-a", "endpoint": "customers"},
        {"run_id": "run-a", "endpoint": "orders"},
    ]


@pytest.mark.parametrize("failure", ["bad_arrow_schema", "second_statement_raises"])
def test_a_failing_group_leaves_no_data_checkpoint_or_run_log(wh, monkeypatch, failure):
    dest = prepared(wh)
    baseline(dest)
    good = batch(
        ORDERS,
        [
            rec(ORDERS, "o1", "2025-01-15 11:00:00", total="9.00"),
            rec(ORDERS, "o2", "2025-01-15 11:00:00", total="2.00"),
        ],
    )
    customers = batch(CUSTOMERS, [rec(CUSTOMERS, "c1", "2025-01-15 11:00:00", email="b@x")])
    if failure == "bad_arrow_schema":
        customers = customers.drop_columns(["email"])  # the upsert names a missing column
    else:
        calls = []
        original = dest._save_state  # type: ignore[attr-defined]

        def failing(*args: Any) -> None:
            calls.append(args)
            if len(calls) == 2:  # the second batch, after both upserts ran
                raise RuntimeError("disk on fire")
            original(*args)

        monkeypatch.setattr(dest, "_save_state", failing)
    orders_commit = commit(
        ORDERS, "run-b", checkpoint=CP2, keep_checkpoint=True, watermark=T0, last_records=2
    )
    customers_commit = commit(CUSTOMERS, "run-b", watermark=T0 + timedelta(days=1))
    with pytest.raises(Exception) as raised:
        dest.write([(ORDERS, good, orders_commit), (CUSTOMERS, customers, customers_commit)])
    if failure == "second_statement_raises":
        assert "disk on fire" in str(raised.value)
    # The caller's rows are never changed, and the warehouse is as it was.
    assert orders_commit.run.records == 0 and customers_commit.run.records == 0
    assert_baseline(wh)


SIGKILL_SCRIPT = r"""
import contextlib, os, signal, sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
from ogsync.destinations import open_destination
from ogsync.destinations.base import Commit, RunLog
from ogsync.endpoints import BY_NAME
from ogsync.plan import Checkpoint
from ogsync.records import type_records

url, schema = sys.argv[1], sys.argv[2]
dest = open_destination(url, schema)
orders = BY_NAME["orders"]
real = type(dest).transaction

@contextlib.contextmanager
def dying(self):
    with real(self):
        yield
        # Everything of the batch has run inside the transaction; die before it commits.
        (n,) = self.execute(f'SELECT count(*) FROM "{schema}".orders')[0]
        (url_now,) = self.execute(
            f'SELECT checkpoint_url FROM "{schema}"._ogsync_state WHERE endpoint = ?',
            ["orders"],
        )[0]
        print("inside", n, url_now, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

type(dest).transaction = dying
records = [
    {"public_id": f"k{i}", "updated": "2025-01-15 12:00:00", "total": "3.00"} for i in range(5)
]
table, _ = type_records(orders, records, ZoneInfo("America/Chicago"))
when = datetime(2025, 6, 1, 12, tzinfo=UTC)
run = RunLog(run_id="run-killed", endpoint="orders", kind="sync", started_at=when)
cp = Checkpoint(when, when, "https://api.example/orders/?cursor=killed", when)
dest.write([(orders, table, Commit(run, checkpoint=cp, keep_checkpoint=True, watermark=when))])
print("survived", flush=True)
"""


def test_sigkill_between_upsert_and_commit_leaves_nothing(wh):
    dest = prepared(wh)
    baseline(dest)
    wh.close_writers()
    with wh.client_killed():
        done = subprocess.run(
            [sys.executable, "-c", SIGKILL_SCRIPT, wh.url, wh.schema],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == -signal.SIGKILL, done.stderr
    # The batch did run inside the doomed transaction...
    assert done.stdout.split() == ["inside", "6", "https://api.example/orders/?cursor=killed"]
    # ...and none of it is visible after reopening.
    reopen(wh)
    assert wh.count("_ogsync_runs", "run_id = 'run-killed'") == 0
    assert_baseline(wh)
    # The warehouse is usable again.
    dest = wh.open_dest()
    write(dest, ORDERS, [rec(ORDERS, "o3", "2025-01-15 12:00:00")])
    assert set(wh.table("orders")) == {"o1", "o3"}


def reopen(wh: Any, seconds: float = 10) -> Destination:
    """Open again; PostgreSQL may take a moment to notice the dead session and its lock."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return wh.open_dest()
        except AlreadyRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- 5. checkpoints and watermarks --------------------------------------------------------


def test_checkpoint_and_watermark_round_trip_and_watermark_never_moves_back(wh):
    dest = prepared(wh)
    assert dest.load_states() == {}
    dest.write([(ORDERS, None, commit(ORDERS, checkpoint=CP1, keep_checkpoint=True))])
    assert dest.load_states()["orders"] == EndpointState(None, CP1, 0)

    open_start = Checkpoint(None, T0, "https://api.example/orders/?cursor=x", None)
    dest.write([(ORDERS, None, commit(ORDERS, checkpoint=open_start, keep_checkpoint=True))])
    assert dest.load_states()["orders"].checkpoint == open_start

    # keep_checkpoint=False leaves it; True with None clears it, with the watermark.
    dest.write([(ORDERS, None, commit(ORDERS, checkpoint=CP2))])
    assert dest.load_states()["orders"].checkpoint == open_start
    later = T0 + timedelta(hours=3, microseconds=123456)
    dest.write(
        [(ORDERS, None, commit(ORDERS, keep_checkpoint=True, watermark=later, last_records=42))]
    )
    assert dest.load_states()["orders"] == EndpointState(later, None, 42)

    # Older watermarks are ignored; newer ones move it; other endpoints are separate.
    dest.write([(ORDERS, None, commit(ORDERS, watermark=T0))])
    dest.write([(CUSTOMERS, None, commit(CUSTOMERS, watermark=T0))])
    assert dest.load_states()["orders"].watermark == later
    dest = wh.open_dest()  # and it all survives reopening
    states = dest.load_states()
    assert states["orders"] == EndpointState(later, None, 42)
    assert states["customers"] == EndpointState(T0, None, 0)
    newer = later + timedelta(seconds=1)
    dest.write([(ORDERS, None, commit(ORDERS, watermark=newer))])
    assert dest.load_states()["orders"].watermark == newer
    (row,) = wh.rows("SELECT watermark FROM {s}._ogsync_state WHERE endpoint = 'orders'")
    assert row["watermark"] == newer


def test_log_run_inserts_then_updates_one_row(wh):
    dest = prepared(wh)
    run = run_log(ORDERS, "run-x")
    dest.log_run(run)
    run.status, run.error, run.records = "failed", "boom 😀", 7
    run.finished_at = T0 + timedelta(minutes=1)
    dest.log_run(run)
    (row,) = wh.rows("SELECT * FROM {s}._ogsync_runs")
    assert (row["status"], row["error"], row["records"]) == ("failed", "boom 😀", 7)
    assert row["finished_at"] == T0 + timedelta(minutes=1) and row["started_at"] == T0


# -- 6. type edge cases -------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = {"leaf": "𝄞😀", "n": 1.5}
    for i in range(depth):
        value = {"level": i, "child": [value, None, True]}
    return value


def test_type_edge_cases_survive_the_round_trip(wh):
    big = "𝄞" + "a" * 1_000_000 + "😀"
    orders = [
        {f.name: None for f in ORDERS.fields} | {"public_id": "o-nulls"},
        {"public_id": "o-missing"},
        {
            "public_id": "o-bad",
            "updated": "2017-02-29 00:00:00",
            "created": "yesterday",
            "total": "undefined",
            "sub_total": "12.3.4",
            "tax_total": "1e999",
            "status": "abc",
            "tries": 5.5,
            "locked": "maybe",
            "extra_data": "{not json",
        },
        {
            "public_id": "o-unicode-😀",
            "updated": "2025-01-15 10:00:00",
            "total": "12.34",
            "sub_total": "-0.000000001",
            "status": 5,
            "locked": True,
            "rejected_message": "emoji 😀, clef 𝄞, 中文, ß, NUL-free",
            "currency_code": "€",
            "extra_data": orjson.dumps({"note": "😀𝄞", "deep": nested(40)}).decode(),
        },
        {"public_id": "o-big", "updated": "2025-07-04T08:30:00", "rejected_message": big},
    ]
    subscriptions = [
        {
            "public_id": "s-deep",
            "components": [nested(100), {"𝄞": ["😀"]}],
            "extra_data": orjson.dumps(nested(100)).decode(),
            "price": "99999999999999999999.999999999",
            "start_date": "2025-02-30",
            "live": "true",
            "quantity": "3",
        }
    ]
    dest = prepared(wh)
    order_batch, report = type_records(ORDERS, orders, CHICAGO)
    subs_batch, subs_report = type_records(BY_NAME["subscriptions"], subscriptions, CHICAGO)
    assert report.unparsed["updated"] == 1 and report.unparsed["extra_data"] == 1
    assert subs_report.unparsed["start_date"] == 1
    dest.write(
        [
            (ORDERS, order_batch, commit(ORDERS)),
            (BY_NAME["subscriptions"], subs_batch, commit(BY_NAME["subscriptions"])),
        ]
    )
    rows = wh.table("orders")
    assert set(rows) == {r["public_id"] for r in orders}
    for record in orders:
        row = rows[record["public_id"]]
        assert raw(row) == record, record["public_id"]  # the record as received, whole
    for key in ("o-nulls", "o-missing"):
        typed = {f.column: rows[key][f.column] for f in ORDERS.fields if f.name != "public_id"}
        assert set(typed.values()) == {None}, key
        assert rows[key]["_deleted_at"] is None and rows[key]["_synced_at"] is not None

    bad = rows["o-bad"]
    for column in ("updated", "created", "total", "sub_total", "tax_total", "status", "tries"):
        assert bad[column] is None, column
    assert bad["locked"] is None and bad["extra_data"] is None
    assert raw(bad)["updated"] == "2017-02-29 00:00:00" and raw(bad)["total"] == "undefined"

    good = rows["o-unicode-😀"]
    assert good["updated"] == datetime(2025, 1, 15, 16, 0, tzinfo=UTC)
    assert good["total"] == Decimal("12.34") and good["sub_total"] == Decimal("-0.000000001")
    assert (good["status"], good["locked"]) == (5, True)
    assert good["rejected_message"] == "emoji 😀, clef 𝄞, 中文, ß, NUL-free"
    assert good["currency_code"] == "€"
    assert orjson.loads(good["extra_data"]) == {"note": "😀𝄞", "deep": nested(40)}

    assert rows["o-big"]["rejected_message"] == big
    assert rows["o-big"]["updated"] == datetime(2025, 7, 4, 13, 30, tzinfo=UTC)

    (sub,) = wh.table("subscriptions").values()
    assert raw(sub) == subscriptions[0]
    assert orjson.loads(sub["components"]) == subscriptions[0]["components"]
    assert orjson.loads(sub["extra_data"]) == nested(100)
    assert sub["price"] == Decimal("99999999999999999999.999999999")
    assert sub["start_date"] is None
    assert (sub["live"], sub["quantity"]) == (True, 3)


def test_a_nul_character_does_not_stop_the_batch(wh):
    """JSON allows "\\u0000" in any string; one such value must not fail the whole batch.

    PostgreSQL cannot hold NUL in TEXT or JSONB, so the destination has to clean it; what it
    keeps of that one value is its choice, but the batch (and the other records) must land.
    """
    dest = prepared(wh)
    records = [
        rec(ORDERS, "o-nul", "2025-01-15 10:00:00", rejected_message="before\x00after"),
        rec(ORDERS, "o-plain", "2025-01-15 10:00:00", rejected_message="plain"),
    ]
    written, _ = write(dest, ORDERS, records)
    assert written == 2
    rows = wh.table("orders")
    assert set(rows) == {"o-nul", "o-plain"}
    assert rows["o-plain"]["rejected_message"] == "plain"
    assert raw(rows["o-nul"])["public_id"] == "o-nul"


def test_a_batch_made_ready_by_its_worker_lands_as_one_that_was_not(wh):
    """A sync hands each batch to `ready` in its worker's thread before the writer takes it
    (PostgreSQL encodes its COPY there); what lands must not depend on that."""
    dest = prepared(wh)
    tricky = [
        rec(ORDERS, "quotes", "2025-01-15 10:00:00", rejected_message='a,b\n"c"\\d\tend',
            extra_data=orjson.dumps({"q": '"', "nul": "x\x00y", "😀": [1, None]}).decode(),
            total="12.34", status=5, locked=True),
        rec(ORDERS, "nulls", None, rejected_message=None, total=None),
        rec(ORDERS, "nul", "2025-07-04T08:30:00", rejected_message="before\x00after"),
    ]  # fmt: skip

    def keyed(prefix: str) -> list[dict[str, Any]]:
        return [{**r, "public_id": prefix + r["public_id"]} for r in tricky]

    made_ready = batch(ORDERS, keyed("ready-"))
    dest.ready(ORDERS, made_ready)
    (result,) = dest.write([(ORDERS, made_ready, commit(ORDERS))])
    assert result.written == 3
    assert write(dest, ORDERS, keyed("plain-"), run_id="run-2") == (3, 0)
    rows = wh.table("orders")
    assert len(rows) == 6
    varying = {"public_id", "_raw", "_synced_at", "_run_id"}
    for record in tricky:
        ready_row, plain_row = (
            rows["ready-" + record["public_id"]],
            rows["plain-" + record["public_id"]],
        )
        assert {k: v for k, v in ready_row.items() if k not in varying} == {
            k: v for k, v in plain_row.items() if k not in varying
        }, record["public_id"]
        assert raw(ready_row) == {**raw(plain_row), "public_id": ready_row["public_id"]}
    assert rows["ready-quotes"]["rejected_message"] == 'a,b\n"c"\\d\tend'


def test_postgresql_copies_the_csv_its_worker_made_and_keeps_it_no_longer_than_the_batch(
    pg_wh,
):
    dest = prepared(pg_wh)
    assert isinstance(dest, PostgresDestination)
    records = [rec(ORDERS, f"o-{i}", "2025-01-15 10:00:00", total=f"{i}.5") for i in range(3)]
    made_ready = batch(ORDERS, records)
    dest.ready(ORDERS, made_ready)
    assert len(dest._encoded._csv) == 1
    dest.write([(ORDERS, made_ready, commit(ORDERS))])
    assert dest._encoded._csv == {}  # taken by the write
    assert {k: r["total"] for k, r in pg_wh.table("orders").items()} == {
        f"o-{i}": Decimal(f"{i}.5") for i in range(3)
    }
    dropped = batch(ORDERS, records)
    dest.ready(ORDERS, dropped)  # a batch never written (its run stopped): freed with it
    assert len(dest._encoded._csv) == 1
    del dropped
    assert dest._encoded._csv == {}


def test_rejected_input_is_kept_whole_with_its_reason(wh):
    dest = prepared(wh)
    payload = '{"public_id": 5, "note": "50% off"}'
    dest.reject([Rejected("orders", "5", "key is not text", payload)], "run-r")
    (row,) = wh.rows("SELECT source, item_id, reason, payload, run_id FROM {s}._ogsync_rejected")
    assert row == {
        "source": "orders",
        "item_id": "5",
        "reason": "key is not text",
        "payload": payload,
        "run_id": "run-r",
    }


# -- 7. a real sync against the simulator -------------------------------------------------


@contextmanager
def simulator(**config: Any) -> Iterator[RunningSimulator]:
    config.setdefault("start", SIM_START)
    with simulator_in_thread(SimulatorConfig(**config)) as sim:
        yield sim


def sync(
    sim: RunningSimulator,
    dest: Destination,
    listener: Listener | None = None,
    **options: Any,
) -> Any:
    with OrdergrooveClient(
        sim.url, sim.api_key, retry=FAST_RETRY, budget=RateBudget(1_000_000), seed=7
    ) as client:
        options.setdefault("clock_tolerance", SIMULATED_CLOCK_TOLERANCE)
        opts = SyncOptions(endpoints=ENDPOINTS, **options)
        return SyncEngine(client, dest, CHICAGO, opts, listener).run()


def assert_equals_truth(sim: RunningSimulator, wh: Any) -> int:
    """Every live row is the API's current record, version for version."""
    total = 0
    with SimControl(sim.url) as control:
        for ep in ENDPOINTS:
            truth = control.truth_by_key(ep)
            gone = set(control.deleted(ep))
            live = wh.table(ep.name, "_deleted_at IS NULL")
            if ep.name in ("orders", "items"):
                live = {k: v for k, v in live.items() if k not in gone}  # webhooks' job
            else:
                assert not gone & set(live), f"{ep.name}: deleted records still live"
            missing, extra = set(truth) - set(live), set(live) - set(truth)
            assert not missing, f"{ep.name}: {len(missing)} missing, e.g. {sorted(missing)[:3]}"
            assert not extra, f"{ep.name}: {len(extra)} unexpected, e.g. {sorted(extra)[:3]}"
            stale = [k for k, row in live.items() if raw(row) != truth[k]]
            assert not stale, f"{ep.name}: {len(stale)} stale versions, e.g. {stale[:3]}"
            total += len(truth)
    return total


def test_full_then_incremental_sync_equals_the_simulators_truth(wh):
    with simulator(records=1500, seed=21) as sim, SimControl(sim.url) as control:
        first = sync(sim, wh.open_dest())
        assert first.exit_code == 0, [(o.endpoint, o.run.error) for o in first.outcomes]
        assert assert_equals_truth(sim, wh) >= 1400
        assert wh.count("_ogsync_runs", "status = 'success'") == len(ENDPOINTS)

        control.advance(minutes=45, changes=200)
        # Cards are rarely spare at this size; remove three from the API outright (no webhook).
        removed = sorted(wh.table("payments"))[:3]
        assert sim.sim is not None
        sim.sim.store.delete(PAYMENTS, removed, sim.sim.clock.now())
        second = sync(sim, wh.open_dest())
        assert second.exit_code == 0, [(o.endpoint, o.run.error) for o in second.outcomes]
        assert {o.endpoint: o.mode for o in second.outcomes}["orders"] == "incremental"
        assert_equals_truth(sim, wh)
        gone = set(control.deleted("payments"))
        assert gone >= set(removed)
        deleted = wh.table("payments", "_deleted_at IS NOT NULL")
        assert gone <= set(deleted)
        assert {r["_deleted_reason"] for r in deleted.values()} == {"full_refresh"}
        tombs = wh.rows("SELECT record_id FROM {s}._ogsync_deletions WHERE endpoint = 'payments'")
        assert gone <= {t["record_id"] for t in tombs}


# -- 8. PostgreSQL only -------------------------------------------------------------------


def test_postgres_second_destination_on_a_schema_is_already_running(pg_wh, postgres_server):
    first = pg_wh.open_dest()
    with pytest.raises(AlreadyRunning) as raised:
        PostgresDestination(postgres_server.url, pg_wh.schema)
    assert postgres_server.password not in str(raised.value)
    other = PostgresDestination(postgres_server.url, pg_wh.schema + "_other")  # another schema
    other.close()
    first.close()
    second = PostgresDestination(postgres_server.url, pg_wh.schema)
    try:
        second.prepare(ENDPOINTS)
    finally:
        second.close()


def test_postgres_runs_claiming_different_endpoints_share_a_schema_and_nothing_else_does(
    pg_wh, postgres_server
):
    url, schema = postgres_server.url, pg_wh.schema
    customers = PostgresDestination(url, schema, claims=["customers"])
    orders = PostgresDestination(url, schema, claims=["orders", "items"])
    try:
        for claims in (["customers"], ["items", "payments"], None):  # claimed, or everything
            with pytest.raises(AlreadyRunning) as raised:
                PostgresDestination(url, schema, claims=claims)
            assert "another ogsync process is syncing" in str(raised.value)
            assert postgres_server.password not in str(raised.value)
        PostgresDestination(url, schema, claims=["payments"]).close()  # not taken by the failure
        # both make the (missing) tables at the same moment, then write their own endpoint
        start = threading.Barrier(2)

        def prepare(dest: PostgresDestination) -> None:
            start.wait()
            dest.prepare(ENDPOINTS)

        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(prepare, d) for d in (customers, orders)]:
                done.result()  # neither fails on a table the other was making
        for dest, ep in ((customers, CUSTOMERS), (orders, ORDERS)):
            records = [rec(ep, f"{ep.name}-{i}", "2025-01-15 10:00:00") for i in range(2)]
            (written,) = dest.write([(ep, batch(ep, records), commit(ep, f"run-{ep.name}"))])
            assert written.written == 2
    finally:
        customers.close()
        orders.close()
    assert (pg_wh.count("customers"), pg_wh.count("orders")) == (2, 2)
    whole = PostgresDestination(url, schema)  # everything is free again
    try:
        with pytest.raises(AlreadyRunning):
            PostgresDestination(url, schema, claims=["payments"])
    finally:
        whole.close()


def test_postgres_connection_loss_reconnects_and_the_batch_lands_once(
    pg_wh, postgres_server, monkeypatch
):
    dest = prepared(pg_wh)
    assert postgres_server.terminate_backends() >= 1
    records = [rec(ORDERS, f"o{i}", "2025-01-15 10:00:00") for i in range(3)]
    cm = commit(ORDERS, "run-1", checkpoint=CP1, keep_checkpoint=True)
    (result,) = dest.write([(ORDERS, batch(ORDERS, records), cm)])
    assert result.written == 3 and cm.run.records == 0  # the caller's row is not changed
    assert pg_wh.count("orders") == 3
    (logged,) = pg_wh.rows("SELECT records FROM {s}._ogsync_runs WHERE run_id = 'run-1'")
    assert logged["records"] == 3
    # It holds the schema's lock again after reconnecting.
    with pytest.raises(AlreadyRunning):
        PostgresDestination(postgres_server.url, pg_wh.schema)

    # Lost in the middle of the transaction, after the upsert ran: rolled back, run again.
    original = dest._save_state  # type: ignore[attr-defined]
    killed = []

    def cut_once(*args: Any) -> None:
        if not killed:
            killed.append(postgres_server.terminate_backends())
        original(*args)

    monkeypatch.setattr(dest, "_save_state", cut_once)
    more = [rec(ORDERS, f"n{i}", "2025-01-15 10:00:00") for i in range(4)]
    cm = commit(ORDERS, "run-2", checkpoint=CP2, keep_checkpoint=True)
    (result,) = dest.write([(ORDERS, batch(ORDERS, more), cm)])
    assert killed and killed[0] >= 1
    assert result.written == 4 and cm.run.records == 0
    assert pg_wh.count("orders") == 7
    (logged,) = pg_wh.rows("SELECT records FROM {s}._ogsync_runs WHERE run_id = 'run-2'")
    assert logged["records"] == 4
    assert dest.load_states()["orders"].checkpoint == CP2


class Terminator(Listener):
    """Cuts every connection to the server after every few batches while the sync runs."""

    def __init__(self, server: Any, every: int) -> None:
        self.server, self.every = server, every
        self.batches, self.terminated = 0, 0
        self.lock = threading.Lock()

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None:
        with self.lock:
            self.batches += 1
            if self.batches % self.every == 0:
                self.terminated += self.server.terminate_backends()


def test_postgres_sync_with_repeatedly_terminated_backends_equals_truth(pg_wh, postgres_server):
    with simulator(records=1500, seed=22) as sim:
        terminator = Terminator(postgres_server, every=3)
        result = sync(sim, pg_wh.open_dest(), terminator, batch_records=100)
        assert terminator.terminated >= 3, terminator.terminated
        assert result.exit_code == 0, [(o.endpoint, o.run.error) for o in result.outcomes]
        pg_wh.close_writers()
        assert_equals_truth(sim, pg_wh)
        # Nothing was counted twice for the batches that were run again.
        for outcome in result.outcomes:
            (logged,) = pg_wh.rows(
                "SELECT records FROM {s}._ogsync_runs WHERE endpoint = ?", [outcome.endpoint]
            )
            assert logged["records"] == outcome.run.records
            assert logged["records"] <= pg_wh.count(outcome.endpoint)


def test_postgres_wrong_password_is_masked(pg_wh, postgres_server):
    password = "Wr0ng-Passw0rd-4711"
    url = postgres_server.url.replace(f":{postgres_server.password}@", f":{password}@")
    assert password in url
    with pytest.raises(DestinationError) as raised:
        PostgresDestination(url, pg_wh.schema)
    message = str(raised.value)
    assert password not in message and postgres_server.password not in message
    assert f"{postgres_server.user}:***@" in message
    assert "\n" not in message


def test_postgres_password_given_as_a_query_parameter_is_masked(pg_wh, postgres_server):
    """libpq also takes the password as `?password=`: it must not leak either."""
    password = "Qu3ry-Passw0rd-0815"
    url = (
        f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}"
        f"/{postgres_server.dbname}?password={password}"
    )
    with pytest.raises(DestinationError) as raised:
        PostgresDestination(url, pg_wh.schema)
    assert password not in str(raised.value)
    assert "***" in str(raised.value)
