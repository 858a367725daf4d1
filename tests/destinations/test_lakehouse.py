"""What only a lakehouse does, or does its own way: its tables without views or keys, commits
one table at a time (a writer killed at each commit converges), one writer, the MERGE's own
version condition, upkeep of small files, and the webhook deletions end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from ogsync.destinations import AlreadyRunning, DestinationError, open_destination
from ogsync.destinations.base import quote
from ogsync.destinations.lakehouse_keys import KeyIndex
from ogsync.destinations.lakehouse_store import endpoint_schema
from ogsync.endpoints import BY_NAME, ENDPOINTS
from ogsync.sync import SyncEngine, SyncOptions, sync_with
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE
from ogsync.testing.webhook_rig import signed_deliveries
from ogsync.vocabulary import DeletionReason
from ogsync.webhooks.inbox import SQLiteInbox

from .lakehouse_support import LakehouseWarehouse, lakehouse
from .test_contract import (
    CP1,
    CP2,
    CUSTOMERS,
    EXPECTED_KEYS,
    NEUTRAL_KIND,
    ORDERS,
    T0,
    assert_baseline,
    baseline,
    batch,
    commit,
    prepared,
    rec,
    simulator,
    write,
)

ITEMS = BY_NAME["items"]


@pytest.fixture(params=["delta", "iceberg"])
def wh(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LakehouseWarehouse]:
    yield from lakehouse(request.param, tmp_path, None, monkeypatch)


@pytest.fixture(params=["delta_s3", "iceberg_s3"])
def s3_wh(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_stand_in: Any,
) -> Iterator[LakehouseWarehouse]:
    yield from lakehouse(request.param, tmp_path, s3_stand_in, monkeypatch)


def test_prepare_makes_a_typed_table_per_endpoint_and_the_bookkeeping_tables(wh):
    dest = prepared(wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.50")])
    dest = wh.open_dest()
    dest.prepare(ENDPOINTS)  # again after reopening: data survives
    assert set(wh.table("orders")) == {"o1"}
    tables = {name for name, kind in wh.relations().items() if kind == "BASE TABLE"}
    bookkeeping = {"_ogsync_state", "_ogsync_runs", "_ogsync_deletions", "_ogsync_backfill"}
    assert tables >= set(EXPECTED_KEYS) | bookkeeping | {"_ogsync_rejected", "events"}
    for ep in ENDPOINTS:
        # JSON fields and `_raw` are JSON text: the formats have no JSON type.
        expected = {
            f.column: "text" if NEUTRAL_KIND[f.type] == "json" else NEUTRAL_KIND[f.type]
            for f in ep.fields
        }
        expected |= {"_raw": "text", "_updated_latest": "timestamptz"}
        expected |= {"_synced_at": "timestamptz", "_run_id": "text"}
        expected |= {"_deleted_at": "timestamptz", "_deleted_reason": "text"}
        kinds = {
            k: v.replace("character varying", "text") for k, v in wh.column_types(ep.name).items()
        }
        assert kinds == expected, ep.name


def test_a_field_added_to_an_endpoint_becomes_a_column_and_old_rows_read_it_empty(wh):
    dest = prepared(wh)
    write(dest, CUSTOMERS, [rec(CUSTOMERS, "c1", "2025-01-15 10:00:00", email="a@x")])
    dest.store.ensure("customers", endpoint_schema(CUSTOMERS).append(pa.field("late", pa.string())))
    dest = wh.open_dest()
    dest.prepare(ENDPOINTS)
    write(dest, CUSTOMERS, [rec(CUSTOMERS, "c2", "2025-01-15 10:00:00", email="b@x")])
    rows = wh.table("customers")
    assert set(rows) == {"c1", "c2"} and rows["c1"]["late"] is None


# -- commits one table at a time ----------------------------------------------------------

KILL_SCRIPT = r"""
import os, signal, sys
from datetime import UTC, datetime
from zoneinfo import ZoneInfo
from ogsync.destinations import open_destination
from ogsync.destinations.base import Commit, RunLog
from ogsync.endpoints import BY_NAME
from ogsync.plan import Checkpoint
from ogsync.records import type_records

url, schema, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
dest = open_destination(url, schema)
store, commits = dest.store, []

def counted(name):
    real = getattr(store, name)
    def commit(table, *args, **kwargs):
        commits.append(table)
        if len(commits) == kill_at:
            print("killed", name, table, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(table, *args, **kwargs)
    setattr(store, name, commit)

for name in ("append", "replace", "overwrite"):
    counted(name)
orders, customers = BY_NAME["orders"], BY_NAME["customers"]
when = datetime(2025, 6, 1, 12, tzinfo=UTC)
zone = ZoneInfo("America/Chicago")
newer = [{"public_id": "o1", "updated": "2025-01-15 12:00:00", "total": "5.00"},
         {"public_id": "o2", "updated": "2025-01-15 12:00:00", "total": "2.00"}]
people = [{"merchant_user_id": "c1", "last_updated": "2025-01-15 12:00:00", "email": "z@x"}]
cp = Checkpoint(when, when, "https://api.example/orders/?cursor=killed", when)
dest.write([
    (orders, type_records(orders, newer, zone)[0],
     Commit(RunLog("run-k", "orders", "sync", when), checkpoint=cp, keep_checkpoint=True)),
    (customers, type_records(customers, people, zone)[0],
     Commit(RunLog("run-k", "customers", "sync", when), watermark=when)),
])
print("done", len(commits), flush=True)
"""


def _killed_at(wh: LakehouseWarehouse, kill_at: int) -> subprocess.CompletedProcess[str]:
    wh.close_writers()
    return subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, wh.url, wh.schema, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def _state(wh: LakehouseWarehouse) -> dict[str, Any]:
    return {
        "orders": {k: r["total"] for k, r in wh.table("orders").items()},
        "customers": {k: r["email"] for k, r in wh.table("customers").items()},
        "runs": sorted(
            (r["run_id"], r["endpoint"], r["records"])
            for r in wh.rows("SELECT * FROM {s}._ogsync_runs")
        ),
        "state": {
            r["endpoint"]: (r["checkpoint_url"], r["watermark"])
            for r in wh.rows("SELECT * FROM {s}._ogsync_state")
        },
    }


def test_a_writer_killed_at_any_commit_leaves_a_state_the_same_write_converges_from(wh):
    """The group's commits, each in turn, are the last thing a killed writer did: the state
    is then the old one or partly new, never the checkpoint without its rows, and writing
    the same group again ends where an uninterrupted write does."""
    baseline(prepared(wh))
    done = _killed_at(wh, 0)  # no kill: the reference
    assert done.returncode == 0, done.stderr
    commits = int(done.stdout.split()[-1])
    assert commits >= 4  # rows of two tables, the runs, the state
    reference = _state(wh)
    for kill_at in range(1, commits + 1):
        wh.close_writers()
        for path in Path(wh.root).iterdir():  # a fresh lakehouse each time
            subprocess.run(["rm", "-rf", str(path)], check=True)
        baseline(prepared(wh))
        killed = _killed_at(wh, kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        killed_table = killed.stdout.split()[-1]
        state = _state(wh)
        if kill_at == 1:
            assert_baseline(wh)  # nothing committed
        # The checkpoint is the last commit: it never names rows that are not there.
        if state["state"]["orders"][0] == "https://api.example/orders/?cursor=killed":
            assert state["orders"]["o2"] is not None, kill_at
        assert killed_table != "_ogsync_state" or state["orders"] == reference["orders"]
        again = _killed_at(wh, 0)  # the next run: the same batches again
        assert again.returncode == 0, again.stderr
        assert _state(wh) == reference, f"killed at commit {kill_at} ({killed_table})"


# -- one writer ---------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_a_reader_is_not(wh):
    first = prepared(wh)
    with pytest.raises(AlreadyRunning, match="another ogsync run"):
        open_destination(wh.url, wh.schema)
    reader = _reader(wh)
    try:
        assert reader.status_facts(ENDPOINTS).watermarks == {}
        with pytest.raises(DestinationError, match="read only"):
            reader.log_run(None)  # type: ignore[arg-type]
    finally:
        reader.close()
    first.close()
    open_destination(wh.url, wh.schema).close()  # free again once the first is closed


def test_a_second_writer_on_s3_is_refused_by_the_conditional_put(s3_wh):
    first = prepared(s3_wh)
    write(first, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")])
    with pytest.raises(AlreadyRunning) as refused:
        open_destination(s3_wh.url, s3_wh.schema)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(refused.value)
    first.close()
    second = open_destination(s3_wh.url, s3_wh.schema)
    second.close()
    assert set(s3_wh.table("orders")) == {"o1"}


def _reader(wh: LakehouseWarehouse) -> Any:
    from ogsync.destinations import open_reader

    return open_reader(wh.url, wh.schema)


# -- newer-wins in the commit itself ------------------------------------------------------


def test_the_delta_merge_itself_keeps_a_newer_stored_row(tmp_path, monkeypatch):
    """Even a replace handed an older row (as a second writer racing past the lock would)
    leaves the newer stored one: the version condition is part of Delta's MERGE."""
    from ogsync.destinations.base import TableSql
    from ogsync.destinations.lakehouse import conform

    (wh,) = list(lakehouse("delta", tmp_path, None, monkeypatch))[:1]
    dest = prepared(wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 12:00:00", total="2.00")])
    older = batch(ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.00")])
    rows = conform(older.drop_columns(["_seq"]), endpoint_schema(ORDERS))
    dest.store.replace("orders", rows, ["public_id"], TableSql(ORDERS, "").newer_wins("t", "s"))
    assert wh.table("orders")["o1"]["total"] == Decimal("2.00")


# -- the key index: what the loader knows of the stored rows ----------------------------


def test_a_commit_that_raised_after_it_landed_still_counts_for_newer_wins(wh, monkeypatch):
    """A store write can land and still raise (a timeout on the reply): the keys it wrote
    are read again from the table, so an older copy of them later neither wins nor adds a
    second row."""
    dest = prepared(wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 12:00:00", total="1.00")])
    landed = dest.store.append

    def append_then_fail(name: str, rows: pa.Table) -> None:
        landed(name, rows)
        raise OSError("connection reset after the commit")

    monkeypatch.setattr(dest.store, "append", append_then_fail)
    with pytest.raises(OSError):
        write(dest, ORDERS, [rec(ORDERS, "o2", "2025-01-15 12:00:00", total="2.00")])
    monkeypatch.setattr(dest.store, "append", landed)
    write(dest, ORDERS, [rec(ORDERS, "o2", "2025-01-15 09:00:00", total="0.50")])
    rows = wh.rows("SELECT public_id, total FROM {s}.orders WHERE public_id = 'o2'")
    assert rows == [{"public_id": "o2", "total": Decimal("2.00")}]


def test_a_new_writer_knows_the_rows_an_earlier_one_stored(wh):
    first = prepared(wh)
    write(first, ORDERS, [rec(ORDERS, "o1", "2025-01-15 12:00:00", total="2.00")])
    first.close()
    second = wh.open_dest()
    written, _ = write(second, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.00")])
    write(second, ORDERS, [rec(ORDERS, "o1", "2025-01-15 13:00:00", total="3.00")])
    second.close()
    assert written == 0
    assert wh.rows("SELECT total FROM {s}.orders") == [{"total": Decimal("3.00")}]


def test_a_soft_delete_in_the_same_writer_keeps_an_older_copy_out(wh):
    """The key index learns of soft deletes too: a copy fetched before the deletion and
    loaded after it stays deleted."""
    dest = prepared(wh)
    write(dest, CUSTOMERS, [rec(CUSTOMERS, "c1", "2025-01-15 12:00:00")])
    dest.soft_delete(CUSTOMERS, ["c1"], DeletionReason.RECONCILE, "test")
    written, _ = write(dest, CUSTOMERS, [rec(CUSTOMERS, "c1", "2025-01-15 12:00:00")])
    assert written == 0
    assert [r["_deleted_at"] is not None for r in wh.rows("SELECT * FROM {s}.customers")] == [True]


def test_iceberg_bookkeeping_tables_keep_only_their_latest_snapshots(tmp_path, monkeypatch):
    """State and run log are written whole at every batch: past a count their older
    snapshots expire, so a commit's cost does not grow with the run; the rows are intact."""
    from ogsync.destinations import iceberg

    monkeypatch.setattr(iceberg, "TRIM_AFTER_SNAPSHOTS", 4)
    monkeypatch.setattr(iceberg, "KEEP_SNAPSHOTS", 2)
    (wh,) = list(lakehouse("iceberg", tmp_path, None, monkeypatch))[:1]
    dest = prepared(wh)
    for n in range(8):
        write(dest, ORDERS, [rec(ORDERS, f"o{n}", "2025-01-15 12:00:00")], run_id=f"run-{n}")
    counts = {
        name: len(dest.store._table(name).snapshots())
        for name in ("_ogsync_state", "_ogsync_runs", "orders")
    }
    dest.close()
    assert counts["_ogsync_state"] <= 4 and counts["_ogsync_runs"] <= 4
    assert counts["orders"] == 8  # the endpoint tables keep theirs for time travel
    assert len(wh.rows("SELECT * FROM {s}._ogsync_runs")) == 8
    assert len(wh.rows("SELECT * FROM {s}.orders")) == 8


# -- what a lakehouse refuses, in a line --------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("delta://relative/folder", "delta:///ABSOLUTE/FOLDER"),
        ("delta:///", "delta:///ABSOLUTE/FOLDER"),
        ("delta+s3://", "no bucket"),
        ("iceberg+s3://KEYID:SECRETKEY@bucket/p", "credentials don't go in the URL"),
    ],
)
def test_a_bad_url_is_one_clear_line_without_its_secret(url, message):
    with pytest.raises(DestinationError, match=message) as refused:
        open_destination(url, "ordergroove")
    assert "SECRETKEY" not in str(refused.value) and "\n" not in str(refused.value)


def test_iceberg_on_s3_without_a_catalog_says_which_setting(monkeypatch):
    monkeypatch.delenv("OGSYNC_ICEBERG_CATALOG", raising=False)
    with pytest.raises(DestinationError, match="OGSYNC_ICEBERG_CATALOG"):
        from ogsync.destinations.iceberg import _catalog
        from ogsync.destinations.lakehouse_location import parse

        _catalog(parse("iceberg+s3://bucket/prefix", "Iceberg", "iceberg"), "ordergroove")


def test_history_is_refused_by_name(wh):
    dest = wh.open_dest()
    kept = [ep if ep.name != "orders" else _with_history(ep) for ep in ENDPOINTS]
    with pytest.raises(DestinationError, match=r"history.*orders"):
        dest.prepare(kept)


def _with_history(ep: Any) -> Any:
    from dataclasses import replace

    return replace(ep, history=True)


@pytest.mark.parametrize(("module", "extra"), [("deltalake", "delta"), ("pyiceberg", "iceberg")])
def test_a_missing_format_library_names_the_extra_to_install(monkeypatch, module, extra):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # an import of it now fails
    kind_module = f"ogsync.destinations.{'delta' if extra == 'delta' else 'iceberg'}"
    monkeypatch.delitem(sys.modules, kind_module, raising=False)
    with pytest.raises(DestinationError, match=f"'{extra}' extra"):
        open_destination(f"{extra}:///tmp/never-made", "ordergroove")


# -- small files --------------------------------------------------------------------------


def test_maintain_compacts_and_removes_unread_files_and_keeps_every_row(wh):
    dest = prepared(wh)
    for i in range(6):
        write(dest, ORDERS, [rec(ORDERS, f"o{i}", "2025-01-15 10:00:00", total=f"{i}.00")])
    before = dest.store.file_count("orders")
    assert before >= 6
    done = {u.table: u for u in dest.maintain(timedelta(0))}
    assert done["orders"].files_before == before and done["orders"].files_after == 1
    assert done["orders"].removed >= before  # the small files, now read by no commit
    assert dest.store.file_count("orders") == 1
    assert {k: r["total"] for k, r in wh.table("orders").items()} == {
        f"o{i}": Decimal(i) for i in range(6)
    }


def test_idle_compacts_a_table_past_the_threshold(wh, monkeypatch):
    from ogsync.destinations import lakehouse as module

    monkeypatch.setattr(module, "COMPACT_AFTER_FILES", 3)
    dest = prepared(wh)
    for i in range(5):
        write(dest, ORDERS, [rec(ORDERS, f"o{i}", "2025-01-15 10:00:00")])
    assert dest.store.file_count("orders") == 5
    dest.idle()
    assert dest.store.file_count("orders") == 1
    assert set(wh.table("orders")) == {f"o{i}" for i in range(5)}


def test_idle_compacts_nothing_once_the_writer_lock_is_lost(wh, monkeypatch):
    from ogsync.destinations import lakehouse as module

    monkeypatch.setattr(module, "COMPACT_AFTER_FILES", 3)
    dest = prepared(wh)
    for i in range(5):
        write(dest, ORDERS, [rec(ORDERS, f"o{i}", "2025-01-15 10:00:00")])
    dest._lock.release()
    with pytest.raises(DestinationError, match="lock"):
        dest.idle()
    assert dest.store.file_count("orders") == 5


# -- webhook deletions, end to end --------------------------------------------------------


def test_signed_webhooks_end_as_soft_deletes_in_the_lakehouse(wh, tmp_path):
    """The deletions end-to-end case on a lakehouse: cancels and skips in the API, webhooks
    signed, delivered twice and out of order through the real receiver into the inbox, and
    syncs that drain it first."""
    from ogsync.client import OrdergrooveClient, RateBudget

    from .test_contract import FAST_RETRY

    secret = "whsec-test-lake"
    inbox = SQLiteInbox(tmp_path / "inbox.sqlite")

    def sync(sim: Any) -> Any:
        dest = wh.open_dest()
        with OrdergrooveClient(
            sim.url, sim.api_key, retry=FAST_RETRY, budget=RateBudget(1_000_000), seed=7
        ) as client:
            opts = SyncOptions(endpoints=ENDPOINTS, clock_tolerance=SIMULATED_CLOCK_TOLERANCE)
            engine = SyncEngine(client, dest, ZoneInfo("America/Chicago"), opts)
            result = sync_with(engine, inbox)
        wh.close_writers()
        return result

    with signed_deliveries(inbox, secret, records=800, seed=43) as (sim, control):
        assert sync(sim).exit_code == 0
        for _ in range(2):
            control.advance(minutes=20, changes=100)
            delivered = control.wait_for_deliveries()
            assert sync(sim).exit_code == 0
        assert delivered["gave_up"] == 0 and inbox.backlog() == 0
        for ep in (ORDERS, ITEMS):
            live = set(wh.table(ep.name, "_deleted_at IS NULL"))
            soft = set(wh.table(ep.name, "_deleted_at IS NOT NULL"))
            assert live == set(control.truth_by_key(ep)), ep.name
            assert soft and soft <= set(control.deleted(ep)), ep.name
        tombstones = wh.rows(
            "SELECT DISTINCT record_id FROM {s}._ogsync_deletions WHERE endpoint = 'orders'"
        )
        assert {t["record_id"] for t in tombstones} == set(control.deleted(ORDERS))
        (counts,) = wh.rows("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {s}.events")
        assert counts["n"] == counts["d"] == len(set(delivered["delivered_ids"]))
    inbox.close()


def test_a_quoted_identifier_reads_back(wh):
    """Columns named like SQL words (`order`'s `order_id`, `type`) survive the formats."""
    dest = prepared(wh)
    write(dest, ITEMS, [rec(ITEMS, "i1", "2025-01-15 10:00:00", order="o1")])
    rows = wh.rows(f"SELECT {quote('order_id')} FROM {{s}}.items")
    assert rows == [{"order_id": "o1"}]


_ = simulator  # the contract's simulator helper stays importable from here


def test_the_key_index_may_outgrow_the_working_memory(tmp_path, monkeypatch):
    """A writer's memory does not grow with its tables: past the working DuckDB's limit the
    key index moves out to the scratch folder, and every lookup still finds its version."""
    from ogsync.destinations import lakehouse

    monkeypatch.setattr(lakehouse, "WORKING_MEMORY", "8MB")
    db = lakehouse.working_db(tmp_path)
    index = KeyIndex(db)
    n = 300_000
    keys = pa.array([f"order-{i:09d}-{i * 7919 % 100003:06d}" for i in range(n)])
    latest = pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us", "UTC"))
    stored = pa.table(
        {
            "public_id": keys,
            "_updated_latest": latest,
            "_deleted_at": pa.nulls(n, pa.timestamp("us", "UTC")),
            "_deleted_reason": pa.nulls(n, pa.string()),
            "updated": latest,
        }
    )
    table = index.table(ORDERS, lambda: stored)
    ((held, spilled),) = db.execute(
        "SELECT sum(memory_usage_bytes), sum(temporary_storage_bytes) FROM duckdb_memory()"
    ).fetchall()
    assert spilled and held <= 8 * 2**20 < held + spilled
    index.committed(ORDERS, stored.slice(n - 3).set_column(1, "_updated_latest", latest[:3]))
    found = db.execute(
        f"SELECT public_id, epoch_us(_updated_latest) FROM {table} "
        "WHERE public_id IN (?, ?, ?) ORDER BY public_id",
        [keys[0].as_py(), keys[n // 2].as_py(), keys[n - 1].as_py()],
    ).fetchall()
    assert found == [
        (keys[0].as_py(), 1_700_000_000_000_000),
        (keys[n // 2].as_py(), 1_700_000_000_000_000 + n // 2),
        (keys[n - 1].as_py(), 1_700_000_000_000_002),
    ]
    assert db.execute(f"SELECT count(*) FROM {table}").fetchall() == [(n,)]


def test_a_writer_removes_its_scratch_folder(wh):
    dest = prepared(wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")])
    (scratch, *_) = dest._scratch.peek()[2]
    assert Path(scratch).is_dir()
    dest.close()
    assert not Path(scratch).exists()


# -- bookkeeping deferred while batches come fast -----------------------------------------


def _books(wh: LakehouseWarehouse) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    state = {
        r["endpoint"]: (r["checkpoint_url"], r["watermark"])
        for r in wh.rows("SELECT * FROM {s}._ogsync_state")
    }
    runs = [(r["endpoint"], r["records"]) for r in wh.rows("SELECT * FROM {s}._ogsync_runs")]
    return state, runs


def test_a_batch_mid_window_leaves_its_bookkeeping_to_the_window_end(wh, monkeypatch):
    """A checkpoint in the middle of a window is a commit of the state and one of the run
    log: written at most every few seconds, and at once when the window ends."""
    from ogsync.destinations import lakehouse as module

    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 3600.0)
    dest = prepared(wh)
    before = _books(wh)
    mid = commit(ORDERS, "run-m", checkpoint=CP1, keep_checkpoint=True)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")]), mid)])
    assert set(wh.table("orders")) == {"o1"}  # the rows are committed at once
    assert _books(wh) == before
    end = commit(ORDERS, "run-m", keep_checkpoint=True, watermark=T0)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o2", "2025-01-15 10:00:00")]), end)])
    state, runs = _books(wh)
    assert state["orders"] == (None, T0)
    assert runs == [("orders", 1)]  # the run-log row as the last batch counted it


def test_deferred_bookkeeping_is_written_when_due_when_idle_read_or_closed(wh, monkeypatch):
    from ogsync.destinations import lakehouse as module

    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 3600.0)
    dest = prepared(wh)
    mid = commit(ORDERS, "run-m", checkpoint=CP1, keep_checkpoint=True)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")]), mid)])
    before = _books(wh)
    dest.idle()  # the loader waits on the API, but the books are not due yet
    assert _books(wh) == before
    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 0.0)
    dest.idle()  # now they are
    assert _books(wh)[0]["orders"] == (CP1.next_url, None)
    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 3600.0)

    later = commit(ORDERS, "run-m", checkpoint=CP2, keep_checkpoint=True)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o2", "2025-01-15 10:00:00")]), later)])
    assert dest.load_states()["orders"].checkpoint == CP2  # a read sees what was deferred

    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 0.0)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o3", "2025-01-15 10:00:00")]), mid)])
    assert _books(wh)[0]["orders"] == (CP1.next_url, None)  # due: written with its batch

    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 3600.0)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o4", "2025-01-15 10:00:00")]), later)])
    dest.close()
    assert _books(wh)[0]["orders"] == (CP2.next_url, None)


def test_a_run_logged_whole_is_not_undone_by_a_deferred_row(wh, monkeypatch):
    from ogsync.destinations import lakehouse as module

    monkeypatch.setattr(module, "BOOKKEEPING_EVERY", 3600.0)
    dest = prepared(wh)
    mid = commit(ORDERS, "run-m", checkpoint=CP1, keep_checkpoint=True)
    dest.write([(ORDERS, batch(ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")]), mid)])
    final = replace(mid.run, records=7, status="failed")
    dest.log_run(final)
    dest.close()
    assert [(r["records"], r["status"]) for r in wh.rows("SELECT * FROM {s}._ogsync_runs")] == [
        (7, "failed")
    ]


def test_iceberg_counts_a_tables_files_as_its_snapshot_reads_them(tmp_path, monkeypatch):
    """The count comes from the snapshot's summary; it matches the files a scan plans, after
    appends and after a replace that rewrote a file."""
    (wh,) = list(lakehouse("iceberg", tmp_path, None, monkeypatch))[:1]
    dest = prepared(wh)
    for n in range(3):
        write(dest, ORDERS, [rec(ORDERS, f"o{n}", "2025-01-15 10:00:00")])
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 12:00:00", total="9.00")])
    planned = sum(1 for _ in dest.store._table("orders").scan().plan_files())
    assert dest.store.file_count("orders") == planned >= 3
    dest.close()
