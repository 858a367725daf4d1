"""What only the Snowflake destination does: its URL and secrets, key-pair authentication, the
lease that keeps two runs apart, a lost session, `ogsync check`, and whole syncs (webhook
deletions, reconcile, sessions ended mid-run) through the real connector and the emulator.

The contract every warehouse keeps runs on Snowflake in test_contract.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from snowflake.connector import errors as sf_errors

from ogsync.apitime import zone
from ogsync.client import OrdergrooveClient, RateBudget
from ogsync.destinations import open_destination, open_reader
from ogsync.destinations.base import AlreadyRunning, DestinationError, Rejected, RunLog
from ogsync.destinations.snowflake import SnowflakeDestination
from ogsync.destinations.snowflake_access import probe_access
from ogsync.destinations.snowflake_connect import (
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    PASSWORD_ENV,
    connect,
    credentials,
    masked,
    parse_url,
)
from ogsync.endpoints import BY_NAME, ENDPOINTS
from ogsync.governance import FieldRules, Governance
from ogsync.options import SyncOptions
from ogsync.outcome import Listener
from ogsync.sync import SyncEngine, sync_with
from ogsync.testing import SIMULATED_CLOCK_TOLERANCE
from ogsync.testing.sim_control import SimControl
from ogsync.testing.webhook_rig import signed_deliveries
from ogsync.webhooks.inbox import SQLiteInbox

from .test_contract import (
    CP1,
    CP2,
    FAST_RETRY,
    OFFER_PROFILES,
    ORDERS,
    SIM_START,
    T0,
    assert_equals_truth,
    batch,
    commit,
    prepared,
    rec,
    simulator,
    write,
)

ITEMS = BY_NAME["items"]


def with_lease(url: str, seconds: int) -> str:
    return url.replace("lease_seconds=3", f"lease_seconds={seconds}")


# -- the URL and its secrets ------------------------------------------------------------


def test_the_url_names_user_account_database_and_options():
    target = parse_url(
        "snowflake://etl%40shop.example@myorg-acct/ANALYTICS?warehouse=LOAD_WH&role=OGSYNC"
        "&host=127.0.0.1&port=8080&protocol=http&login_timeout=30"
    )
    assert (target.user, target.account, target.database) == (
        "etl@shop.example",
        "myorg-acct",
        "ANALYTICS",
    )
    assert (target.warehouse, target.role) == ("LOAD_WH", "OGSYNC")
    assert (target.host, target.port, target.protocol) == ("127.0.0.1", 8080, "http")
    assert (target.login_timeout, target.staging, target.lease_seconds) == (30, "temporary", 120)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("snowflake://etl@acct", "expected snowflake://USER@ACCOUNT/DATABASE"),
        ("snowflake://acct/DB", "expected snowflake://USER@ACCOUNT/DATABASE"),
        ("snowflake://etl@acct/DB?colour=blue", "unknown Snowflake option 'colour'"),
        ("snowflake://etl@acct/DB?staging=pipe", "staging='pipe'"),
        ("snowflake://etl@acct/DB?port=99999", "port='99999'"),
        ("snowflake://etl@acct/DB?protocol=ftp", "protocol='ftp'"),
    ],
)
def test_a_bad_url_says_what_is_wrong_in_one_line(url, says):
    with pytest.raises(DestinationError) as raised:
        parse_url(url)
    assert says in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "snowflake://etl:S3cret-in-url@acct/DB",
        "snowflake://etl@acct/DB?password=S3cret-in-url",
        "snowflake://etl@acct/DB?private_key_file_pwd=S3cret-in-url",
    ],
)
def test_a_secret_in_the_url_is_refused_and_never_shown(url):
    with pytest.raises(DestinationError) as raised:
        open_destination(url, "ordergroove")
    assert "S3cret-in-url" not in str(raised.value)
    assert PASSWORD_ENV in str(raised.value)
    assert "S3cret-in-url" not in masked(url)


def test_credentials_come_from_the_environment_only():
    with pytest.raises(DestinationError, match=f"set {KEY_FILE_ENV}.*or {PASSWORD_ENV}"):
        credentials({})
    with pytest.raises(DestinationError, match="not both"):
        credentials({PASSWORD_ENV: "p", KEY_FILE_ENV: "/k.pem"})
    creds = credentials({PASSWORD_ENV: "pw-1234"})
    assert creds.arguments == {"password": "pw-1234"}
    assert creds.hide("login failed for pw-1234\nsecond line") == "login failed for ***"


def private_key_file(path: Path, passphrase: bytes | None) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return path


def test_key_pair_authentication_with_an_encrypted_key(sf_wh, monkeypatch, tmp_path):
    passphrase = "Key-Passphrase-0815"
    key = private_key_file(tmp_path / "ogsync.p8", passphrase.encode())
    monkeypatch.delenv(PASSWORD_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(key))
    for given, says in (
        (None, f"encrypted: set {PASSPHRASE_ENV}"),
        ("Wrong-Passphrase-4242", f"the wrong {PASSPHRASE_ENV}"),
    ):
        if given is None:
            monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
        else:
            monkeypatch.setenv(PASSPHRASE_ENV, given)
        with pytest.raises(DestinationError) as raised:
            open_destination(sf_wh.url, sf_wh.schema)
        assert says in str(raised.value)
        assert not [s for s in (passphrase, given) if s and s in str(raised.value)]
    monkeypatch.setenv(PASSPHRASE_ENV, passphrase)
    creds = credentials()
    assert creds.arguments["authenticator"] == "SNOWFLAKE_JWT"
    # The connector signs its login with the key (the emulator takes any signature).
    dest = prepared(sf_wh)
    assert write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")]) == (1, 0)
    assert set(sf_wh.table("orders")) == {"o1"}
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing.p8"))
    with pytest.raises(DestinationError, match=f"cannot read {KEY_FILE_ENV}"):
        credentials()
    unencrypted = private_key_file(tmp_path / "plain.p8", None)
    monkeypatch.setenv(KEY_FILE_ENV, str(unencrypted))
    with pytest.raises(DestinationError, match=f"not encrypted: unset {PASSPHRASE_ENV}"):
        credentials()


def test_the_password_is_in_no_message_and_no_log_line(sf_wh, snowflake_emulator, caplog):
    caplog.set_level(logging.DEBUG)
    password = sf_wh.PASSWORD
    dest = prepared(sf_wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")])
    with pytest.raises(AlreadyRunning) as held:
        SnowflakeDestination(with_lease(sf_wh.url, 60), sf_wh.schema)
    with socketless_port() as port:
        url = sf_wh.url.replace(f"port={snowflake_emulator.port}", f"port={port}")
        with pytest.raises(DestinationError) as refused:
            SnowflakeDestination(url + "&login_timeout=2", sf_wh.schema)
    for message in (str(held.value), str(refused.value)):
        assert password not in message and "\n" not in message
    assert "cannot connect to snowflake://ogsync@emulator/OGSYNC?" in str(refused.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert password not in logged


class socketless_port:
    """A local port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *_: object) -> None:
        return None


def test_a_missing_driver_names_the_extra_in_one_line(monkeypatch, tmp_path):
    for name in list(sys.modules):
        if name.startswith("ogsync.destinations.snowflake"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    with pytest.raises(DestinationError) as raised:
        open_destination("snowflake://etl@acct/DB", "ordergroove")
    assert "pip install 'ogsync[snowflake]'" in str(raised.value)
    # And from the command line: one line, no traceback, exit 2.
    script = (
        "import sys; sys.modules['snowflake.connector'] = None; "
        "sys.argv = ['ogsync', 'status', '--destination', 'snowflake://etl@acct/DB']; "
        "from ogsync.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'ogsync[snowflake]'" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


# -- transactions -------------------------------------------------------------------------


def test_ddl_inside_a_transaction_is_refused(sf_wh):
    """Snowflake would commit the open transaction before it: a batch would land halfway."""
    dest = prepared(sf_wh)
    with pytest.raises(RuntimeError, match="DDL inside a transaction"), dest.transaction():
        dest.execute(f'CREATE TABLE {dest.s}."later" (x BIGINT)')
    assert "later" not in sf_wh.relations()


def test_staging_inside_a_transaction_is_refused(sf_wh):
    dest = prepared(sf_wh)
    keys = pa.table({"key": ["k1"]})
    with (
        pytest.raises(RuntimeError, match="staging inside a transaction"),
        dest.transaction(),
        dest.stage("keys", keys),
    ):
        pass


# -- the statements Snowflake writes its own way (no ON CONFLICT, no RETURNING) ---------------


def test_backfill_progress_watermark_replaced_and_rejected_input(sf_wh):
    dest = prepared(sf_wh)
    window = (T0 - timedelta(days=31), T0)
    link = "https://api.example/orders/?cursor=b1"
    rejected = Rejected("orders", "42", "key is not text", '{"public_id": 42}')
    records = [rec(ORDERS, "o1", "2025-01-15 10:00:00")]
    first = commit(
        ORDERS, "run-b", backfill_window=window, backfill_next=link, rejected=(rejected,)
    )
    dest.write([(ORDERS, batch(ORDERS, records), first)])
    assert dest.load_backfill(ORDERS) == {window: link}
    dest.write([(ORDERS, None, commit(ORDERS, "run-b", backfill_window=window, watermark=T0))])
    assert dest.load_backfill(ORDERS) == {window: None}  # done
    # A watermark from a wrong clock is replaced, the one time it moves backwards.
    future = T0 + timedelta(days=400)
    dest.write([(ORDERS, None, commit(ORDERS, "run-c", watermark=future))])
    dest.write([(ORDERS, None, commit(ORDERS, "run-c", watermark=T0))])
    assert dest.load_states()["orders"].watermark == future
    dest.write([(ORDERS, None, commit(ORDERS, "run-d", watermark=T0, watermark_replaces=True))])
    assert dest.load_states()["orders"].watermark == T0
    many = [Rejected("webhook", f"evt-{i}", "no record named", "{}") for i in range(1003)]
    dest.reject(many, "run-e")  # more rows than one INSERT takes
    by_run = sf_wh.rows(
        "SELECT run_id, count(*) AS n, min(rejected_at) AS at FROM {s}._ogsync_rejected "
        "GROUP BY run_id ORDER BY run_id"
    )
    assert [(r["run_id"], r["n"]) for r in by_run] == [("run-b", 1), ("run-e", 1003)]
    assert all(r["at"] is not None and r["at"].tzinfo is not None for r in by_run)
    (kept,) = sf_wh.rows("SELECT * FROM {s}._ogsync_rejected WHERE run_id = 'run-b'")
    assert (kept["item_id"], kept["payload"]) == ("42", '{"public_id": 42}')


@dataclass
class Event:
    event_id: str
    type: str
    created: int | None
    object_type: str | None
    object_id: str | None
    payload: str


def test_a_rewrite_brings_stored_webhooks_and_dead_letters_under_new_rules(sf_wh):
    """The rewrite's own statements (the contract's rewrite test has no stored webhook that
    changes, nor dead letters)."""
    dest = prepared(sf_wh)
    order = {"public_id": "o1", "type": "order", "discount_total": "5.00", "status": 1}
    body = orjson.dumps({"id": "evt-1", "type": "order.delete", "data": {"object": order}})
    dest.apply_events([Event("evt-1", "order.delete", 1_750_000_000, "order", "o1", body.decode())])
    write(dest, ORDERS, [rec(ORDERS, "o2", "2025-01-15 10:00:00", discount_total="1.00")])
    dest.reject(
        [
            Rejected("webhook", "evt-2", "no record named", body.decode()),
            Rejected("orders", "o3", "too large", orjson.dumps(order).decode()),
        ],
        "run-r",
    )
    rules = Governance(rules={"orders": FieldRules(exclude=frozenset({"discount_total"}))})
    assert dest.rewrite(rules) == ["orders: no fields left out or hashed -> exclude discount_total"]
    assert "discount_total" not in sf_wh.column_types("orders")
    assert "discount_total" not in sf_wh.table("orders")["o2"]["_raw"]
    (event,) = sf_wh.rows("SELECT payload FROM {s}.events")
    assert orjson.loads(event["payload"])["data"]["object"] == {
        "public_id": "o1",
        "type": "order",
        "status": 1,
    }
    for row in sf_wh.rows("SELECT payload FROM {s}._ogsync_rejected"):
        assert "discount_total" not in row["payload"], row
    assert dest.rewrite(rules) == []  # the warehouse follows these rules now
    dest.prepare(rules.endpoints(ENDPOINTS))  # and a run with them is not refused


def test_a_column_added_since_the_table_was_made_is_added_and_the_view_remade(sf_wh):
    dest = prepared(sf_wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00", total="1.00")])
    dest.execute(f'DROP VIEW {dest.s}."orders_current"')
    dest.execute(f'ALTER TABLE {dest.s}."orders" DROP COLUMN "total"')
    dest = prepared(sf_wh)  # an older table: prepare adds what the endpoint has since
    assert "total" in sf_wh.column_types("orders")
    assert sf_wh.relations()["orders_current"] == "VIEW"
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 11:00:00", total="2.00")])
    assert sf_wh.table("orders_current")["o1"]["total"] == Decimal("2.00")
    assert sf_wh.table("orders_live")["o1"]["total"] == Decimal("2.00")  # the old name too


def test_copies_of_a_key_without_update_field_in_one_batch_the_last_wins(sf_wh):
    dest = prepared(sf_wh)
    copies = [rec(OFFER_PROFILES, "op1", name=name) for name in ("a", "b", "c")]
    assert write(dest, OFFER_PROFILES, copies) == (1, 0)
    assert sf_wh.table("offer_profiles")["op1"]["name"] == "c"


def test_a_lost_session_rolls_the_batch_back_and_runs_it_again_once(
    sf_wh, snowflake_emulator, monkeypatch
):
    dest = prepared(sf_wh)
    assert snowflake_emulator.end_session(dest.conn.rest.token)  # lost before the batch
    records = [rec(ORDERS, f"o{i}", "2025-01-15 10:00:00") for i in range(3)]
    cm = commit(ORDERS, "run-1", checkpoint=CP1, keep_checkpoint=True)
    (result,) = dest.write([(ORDERS, batch(ORDERS, records), cm)])
    assert result.written == 3 and cm.run.records == 0
    assert sf_wh.count("orders") == 3

    # Lost inside the transaction, after the upsert ran: rolled back, and run again.
    original = dest._save_state
    ended = []

    def end_once(*args: Any) -> None:
        if not ended:
            assert sf_wh.count("orders") == 3  # the upsert ran, in a transaction not committed
            ended.append(snowflake_emulator.end_session(dest.conn.rest.token))
            assert sf_wh.count("orders") == 3  # and it went with the session
        original(*args)

    monkeypatch.setattr(dest, "_save_state", end_once)
    more = [rec(ORDERS, f"n{i}", "2025-01-15 10:00:00") for i in range(4)]
    cm = commit(ORDERS, "run-2", checkpoint=CP2, keep_checkpoint=True)
    (result,) = dest.write([(ORDERS, batch(ORDERS, more), cm)])
    assert ended == [True]
    assert result.written == 4 and sf_wh.count("orders") == 7
    (logged,) = sf_wh.rows("SELECT records FROM {s}._ogsync_runs WHERE run_id = 'run-2'")
    assert logged["records"] == 4
    assert dest.load_states()["orders"].checkpoint == CP2
    # It still holds the schema on its new session.
    with pytest.raises(AlreadyRunning):
        SnowflakeDestination(with_lease(sf_wh.url, 60), sf_wh.schema)


def statements_sent(dest: SnowflakeDestination, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements `dest` sends from now on, each a round trip to Snowflake."""
    sent: list[str] = []
    original = dest._run

    def counted(sql: str, params: Any = ()) -> Any:
        sent.append(sql)
        return original(sql, params)

    monkeypatch.setattr(dest, "_run", counted)
    return sent


def verb(sql: str) -> str:
    return sql.split()[0].upper()


def test_the_run_log_takes_no_transaction_and_a_lost_session_writes_its_row_once(
    sf_wh, snowflake_emulator, monkeypatch
):
    dest = prepared(sf_wh)
    sent = statements_sent(dest, monkeypatch)
    started = RunLog("run-1", "orders", "sync", CP1.window_end)
    dest.log_run(started)  # each statement is a round trip: no BEGIN or COMMIT around them
    assert [verb(sql) for sql in sent] == ["UPDATE", "INSERT"]
    sent.clear()
    assert snowflake_emulator.end_session(dest.conn.rest.token)
    dest.log_run(replace(started, status="success", records=3, finished_at=CP2.window_end))
    verbs = [verb(sql) for sql in sent]
    assert verbs[-1] == "UPDATE" and "BEGIN" not in verbs and "COMMIT" not in verbs
    assert sf_wh.rows("SELECT run_id, endpoint, status, records FROM {s}._ogsync_runs") == [
        {"run_id": "run-1", "endpoint": "orders", "status": "success", "records": 3}
    ]


def test_a_batch_after_the_first_moves_the_state_in_one_statement(sf_wh, monkeypatch):
    dest = prepared(sf_wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")])  # makes the state row
    sent = statements_sent(dest, monkeypatch)
    write(dest, ORDERS, [rec(ORDERS, "o2", "2025-01-15 11:00:00")], checkpoint=CP2,
          keep_checkpoint=True)  # fmt: skip
    state = [verb(sql) for sql in sent if "_ogsync_state" in sql]
    assert state == ["UPDATE"]
    assert dest.load_states()["orders"].checkpoint == CP2
    assert sf_wh.count("_ogsync_state") == 1


def test_a_role_that_may_not_make_the_tables_fails_in_one_line_naming_ogsync_check(
    sf_wh, monkeypatch
):
    dest = sf_wh.open_dest()
    real = dest._run

    def refusing_tables(sql: str, params: Any = ()) -> Any:
        if sql.startswith("CREATE TABLE"):
            raise sf_errors.ProgrammingError(
                msg="SQL access control error: Insufficient privileges to operate on schema",
                errno=3001,
                sqlstate="42501",
            )
        return real(sql, params)

    monkeypatch.setattr(dest, "_run", refusing_tables)
    with pytest.raises(DestinationError) as raised:
        dest.prepare(ENDPOINTS)
    message = str(raised.value)
    assert "Insufficient privileges" in message and "ogsync check" in message
    assert "\n" not in message and sf_wh.PASSWORD not in message


def test_a_session_that_stays_lost_fails_the_batch_with_one_masked_line(
    sf_wh, snowflake_emulator, monkeypatch
):
    dest = prepared(sf_wh)

    def always_lost(*_: Any) -> None:
        raise sf_errors.OperationalError(msg=f"network down ({sf_wh.PASSWORD})", errno=250003)

    monkeypatch.setattr(dest, "_save_state", always_lost)
    monkeypatch.setattr("ogsync.destinations.snowflake.time.sleep", lambda _: None)
    with pytest.raises(DestinationError) as raised:
        write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")])
    assert "lost the session with snowflake://" in str(raised.value)
    assert sf_wh.PASSWORD not in str(raised.value)
    assert sf_wh.count("orders") == 0


# -- the lease: one run per schema, or per endpoint -----------------------------------------


def test_one_run_holds_a_schema_and_runs_claiming_endpoints_share_it(sf_wh):
    url, schema = with_lease(sf_wh.url, 60), sf_wh.schema
    whole = SnowflakeDestination(url, schema)
    try:
        for claims in (None, ["orders"]):
            with pytest.raises(AlreadyRunning) as raised:
                SnowflakeDestination(url, schema, claims)
            assert "another ogsync process (host" in str(raised.value)
        SnowflakeDestination(url, schema + "_other").close()  # another schema is free
    finally:
        whole.close()
    orders = SnowflakeDestination(url, schema, ["orders", "items"])
    customers = SnowflakeDestination(url, schema, ["customers"])
    try:
        for claims in (None, ["items", "payments"]):
            with pytest.raises(AlreadyRunning):
                SnowflakeDestination(url, schema, claims)
        SnowflakeDestination(url, schema, ["payments"]).close()
        orders.prepare(ENDPOINTS)
        for dest, ep in ((customers, BY_NAME["customers"]), (orders, ORDERS)):
            records = [rec(ep, f"{ep.name}-{i}", "2025-01-15 10:00:00") for i in range(2)]
            assert write(dest, ep, records, run_id=f"run-{ep.name}") == (2, 0)
    finally:
        orders.close()
        customers.close()
    SnowflakeDestination(url, schema).close()  # everything is free again


def test_a_lapsed_lease_is_taken_over_and_its_holder_stops(sf_wh):
    url = with_lease(sf_wh.url, 2)
    first = SnowflakeDestination(url, sf_wh.schema)
    first.prepare(ENDPOINTS)
    assert first.lease is not None
    first.lease._stop.set()  # it stops renewing, as a hung or cut-off process does
    first.lease._thread.join()
    deadline = time.monotonic() + 15
    while True:
        try:
            second = SnowflakeDestination(url, sf_wh.schema)
            break
        except AlreadyRunning:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    try:
        first.lease.renew(first._run)  # its next renewal finds the lease gone
        with pytest.raises(AlreadyRunning, match="lapsed"):
            write(first, ORDERS, [rec(ORDERS, "late", "2025-01-15 10:00:00")])
        assert write(second, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")]) == (1, 0)
    finally:
        second.close()
        first.close()
    assert set(sf_wh.table("orders")) == {"o1"}


def test_a_reader_holds_nothing_and_makes_nothing(sf_wh):
    reader = open_reader(sf_wh.url, sf_wh.schema)
    try:
        facts = reader.status_facts(ENDPOINTS)
        assert (dict(facts.watermarks), list(facts.runs), dict(facts.rows)) == ({}, [], {})
    finally:
        reader.close()
    assert not sf_wh.rows(
        "SELECT schema_name FROM information_schema.schemata WHERE upper(schema_name) = upper(?)",
        [sf_wh.schema],
    )
    dest = prepared(sf_wh)
    write(dest, ORDERS, [rec(ORDERS, "o1", "2025-01-15 10:00:00")])
    dest.log_run(RunLog("run-1", "orders", "sync", CP1.window_end, status="success"))
    reader = open_reader(sf_wh.url, sf_wh.schema)  # beside the writer, which holds it
    try:
        facts = reader.status_facts(ENDPOINTS)
        assert facts.rows["orders"] == (1, 0) and facts.runs[0].status == "success"
    finally:
        reader.close()


# -- ogsync check ---------------------------------------------------------------------------


def test_check_access_tries_what_a_sync_does(sf_wh):
    from ogsync.destinations import registry

    report = registry.check_access(sf_wh.url, sf_wh.schema)
    assert report is not None and report.ok, report
    found = "\n".join(report.found)
    assert "created schema OGSYNC." in found
    for what in ("create tables", "write through a warehouse", "create views", "create stages"):
        assert f"may {what}" in found
    assert sf_wh.PASSWORD not in found + report.warehouse
    assert "_ogsync_access_check" not in "".join(sf_wh.relations())  # it tidies up
    assert registry.check_access("duckdb:///x.duckdb", "ordergroove") is None


def refusing(session: Any, refused: dict[str, BaseException]) -> Any:
    """One statement on `session`, but the statements starting with a key fail as Snowflake
    fails a role without the privilege."""

    def run(sql: str, params: Any = ()) -> list[tuple]:
        for start, error in refused.items():
            if sql.startswith(start):
                raise error
        cursor = session.cursor()
        cursor.execute(sql, list(params) or None)
        return cursor.fetchall() if cursor.description else []

    return run


def test_check_access_names_the_grants_a_role_lacks(sf_wh):
    denied = sf_errors.ProgrammingError(
        msg="SQL access control error: Insufficient privileges to operate on schema",
        errno=3001,
        sqlstate="42501",
    )
    no_warehouse = sf_errors.ProgrammingError(
        msg="No active warehouse selected in the current session.", errno=606, sqlstate="57P03"
    )
    target = parse_url(sf_wh.url + "&role=loader&warehouse=load_wh")
    session = connect(target, credentials(), sf_wh.url)
    try:
        run = refusing(session, {"CREATE OR REPLACE VIEW": denied, "INSERT": no_warehouse})
        report = probe_access(run, target, sf_wh.schema, sf_wh.url)
        assert not report.ok
        assert report.missing == (
            "no usable warehouse (load_wh)",
            f"role LOADER may not create views in OGSYNC.{sf_wh.schema.upper()}",
        )
        assert report.grants == (
            "GRANT USAGE ON WAREHOUSE LOAD_WH TO ROLE LOADER;",
            f"GRANT USAGE, CREATE VIEW ON SCHEMA OGSYNC.{sf_wh.schema.upper()} TO ROLE LOADER;",
        )
        # The schema exists now: a role that may not create tables is not asked to write one.
        report = probe_access(
            refusing(session, {"CREATE TABLE": denied}), target, sf_wh.schema, sf_wh.url
        )
        assert f"schema OGSYNC.{sf_wh.schema.upper()} exists" in report.found
        assert report.missing == (
            f"role LOADER may not create tables in OGSYNC.{sf_wh.schema.upper()}",
        )
        assert report.grants == (
            f"GRANT USAGE, CREATE TABLE ON SCHEMA OGSYNC.{sf_wh.schema.upper()} TO ROLE LOADER;",
        )
        other = sf_wh.schema + "_new"
        run = refusing(session, {"CREATE SCHEMA": denied})
        report = probe_access(run, target, other, sf_wh.url)
        assert report.grants == ("GRANT USAGE, CREATE SCHEMA ON DATABASE OGSYNC TO ROLE LOADER;",)
    finally:
        session.close()


def test_ogsync_check_checks_the_warehouse_too(sf_wh, tmp_path):
    with simulator(records=50, seed=5) as sim:
        env = {
            **os.environ,
            "OGSYNC_API_KEY": sim.api_key,
            "OGSYNC_BASE_URL": sim.url,
        }
        done = subprocess.run(
            [sys.executable, "-m", "ogsync", "check", "--destination", sf_wh.url,
             "--schema", sf_wh.schema],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "accepts the key" in done.stdout
    assert "may create tables" in done.stdout and "may create stages" in done.stdout
    assert sf_wh.PASSWORD not in done.stdout + done.stderr


# -- whole syncs ------------------------------------------------------------------------------


def run(sim: Any, dest: Any, listener: Listener | None = None, **options: Any) -> Any:
    endpoints = options.pop("endpoints", ENDPOINTS)
    inbox = options.pop("inbox", None)
    options.setdefault("clock_tolerance", SIMULATED_CLOCK_TOLERANCE)
    opts = SyncOptions(endpoints=endpoints, **options)
    with OrdergrooveClient(
        sim.url, sim.api_key, retry=FAST_RETRY, budget=RateBudget(1_000_000), seed=7
    ) as client:
        return sync_with(SyncEngine(client, dest, zone("America/Chicago"), opts, listener), inbox)


def assert_deletions_reflected(control: SimControl, wh: Any) -> None:
    for ep in (ORDERS, ITEMS):
        truth = set(control.truth_by_key(ep))
        gone = set(control.deleted(ep))
        live = set(wh.table(ep.name, "_deleted_at IS NULL"))
        soft = set(wh.table(ep.name, "_deleted_at IS NOT NULL"))
        assert live == truth, ep.name
        assert soft <= gone, ep.name
        assert not (gone - soft) & set(wh.table(ep.name)), ep.name


@pytest.mark.slow
def test_signed_webhook_deletions_land_as_soft_deletes(sf_wh, tmp_path):
    """Cancels and skips in the API, their webhooks through the real receiver into the inbox
    (duplicated, out of order), and syncs that drain it into Snowflake first."""
    secret = "whsec-snowflake-1"
    inbox = SQLiteInbox(tmp_path / "inbox.sqlite")
    try:
        rig = signed_deliveries(inbox, secret, records=600, seed=61, start=SIM_START)
        with rig as (sim, control):
            deletable = [ORDERS, ITEMS]  # what the webhooks delete
            assert run(sim, sf_wh.open_dest(), endpoints=deletable).exit_code == 0
            control.advance(minutes=20, changes=150)
            delivered = control.wait_for_deliveries()
            done = run(sim, sf_wh.open_dest(), endpoints=deletable, inbox=inbox)
            assert done.exit_code == 0
            assert delivered["gave_up"] == 0 and inbox.backlog() == 0
            assert_deletions_reflected(control, sf_wh)
            deleted = set(control.deleted(ORDERS))
            assert deleted, "the simulator deleted no orders: nothing was tested"
            reasons = {
                r["_deleted_reason"]
                for r in sf_wh.table("items", "_deleted_at IS NOT NULL").values()
            }
            assert reasons <= {"webhook:order.delete", "webhook:item.remove"}
            tombs = sf_wh.rows(
                "SELECT DISTINCT record_id FROM {s}._ogsync_deletions WHERE endpoint = 'orders'"
            )
            assert {t["record_id"] for t in tombs} == deleted
            (events,) = sf_wh.rows(
                "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {s}.events"
            )
            assert events["n"] == events["d"] == len(set(delivered["delivered_ids"]))
            # A full refresh fetches copies older than the deletions: they stay deleted.
            again = run(sim, sf_wh.open_dest(), endpoints=[ORDERS, ITEMS], full_refresh=True)
            assert again.exit_code == 0
            assert_deletions_reflected(control, sf_wh)
    finally:
        inbox.close()


@pytest.mark.slow
def test_reconcile_soft_deletes_what_vanished_without_a_webhook(sf_wh):
    with simulator(records=800, seed=62, frozen_clock=True) as sim, SimControl(sim.url) as control:
        assert run(sim, sf_wh.open_dest(), endpoints=[ORDERS, ITEMS]).exit_code == 0
        unsent = set(sf_wh.table("orders", "status = 1"))
        made = control.advance(minutes=30, changes=200)["changes"]
        assert made.get("cancel_subscription") or made.get("skip_order"), made
        result = run(sim, sf_wh.open_dest(), endpoints=[], reconcile=True)
        assert result.exit_code == 0
        gone = set(control.deleted(ORDERS))
        soft = set(sf_wh.table("orders", "_deleted_reason = 'reconcile'"))
        assert soft and soft == gone & unsent
        logged = sf_wh.rows(
            "SELECT endpoint, soft_deletes FROM {s}._ogsync_runs WHERE kind = 'reconcile'"
        )
        assert {r["endpoint"]: r["soft_deletes"] for r in logged}["orders"] == len(soft)


class SessionEnder(Listener):
    """Ends the destination's session (its transaction in flight rolls back) every few
    batches while the sync runs, as Snowflake does to a session it aborts."""

    def __init__(self, emulator: Any, dest: Any, every: int) -> None:
        self.emulator, self.dest, self.every = emulator, dest, every
        self.batches, self.ended = 0, 0
        self.lock = threading.Lock()

    def batch(self, endpoint: str, run: RunLog, fetched: int) -> None:
        with self.lock:
            self.batches += 1
            if self.batches % self.every == 0:
                self.ended += self.emulator.end_session(self.dest.conn.rest.token)


def test_a_sync_whose_session_is_ended_again_and_again_equals_the_truth(sf_wh, snowflake_emulator):
    with simulator(records=700, seed=63) as sim:
        dest = sf_wh.open_dest()
        ender = SessionEnder(snowflake_emulator, dest, every=3)
        result = run(sim, dest, ender, batch_records=100)
        assert ender.ended >= 3, ender.ended
        assert result.exit_code == 0, [(o.endpoint, o.run.error) for o in result.outcomes]
        sf_wh.close_writers()
        assert assert_equals_truth(sim, sf_wh) >= 600
        for outcome in result.outcomes:  # nothing counted twice for batches run again
            (logged,) = sf_wh.rows(
                "SELECT records FROM {s}._ogsync_runs WHERE endpoint = ?", [outcome.endpoint]
            )
            assert logged["records"] == outcome.run.records
            assert logged["records"] <= sf_wh.count(outcome.endpoint)
