"""The example Airflow DAGs (examples/airflow), parsed and run by Airflow itself.

Airflow runs in processes of its own (`airflow_runner.py`), with a fresh home and metadata
database per test; the simulators, the webhook receiver and the warehouses are this
process's, reached over HTTP and SQL as in production.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sync_support import assert_deletions_reflected, assert_equals_truth, simulator

from ogsync.endpoints import select
from ogsync.testing.cli import clean_env
from ogsync.testing.sim_control import SimControl
from ogsync.webhooks.inbox import SQLiteInbox
from ogsync.webhooks.receiver import receiver_in_thread

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "airflow" / "ogsync_dags.py"
RUNNER = Path(__file__).with_name("airflow_runner.py")
DEFAULT_SET = [ep.name for ep in select(None)]


class Airflow:
    """A fresh Airflow home whose DAGs folder holds the example DAG file and our settings."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dags = home / "dags"
        self.dags.mkdir(parents=True)
        shutil.copy(EXAMPLE, self.dags / EXAMPLE.name)
        self.env = {k: v for k, v in clean_env().items() if not k.startswith("AIRFLOW")}
        self.env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        )

    def settings(self, text: str) -> None:
        (self.dags / "ogsync.toml").write_text(text)

    def command(self, *args: str) -> None:
        airflow = Path(sys.executable).with_name("airflow")
        done = subprocess.run([str(airflow), *args], env=self.env, cwd=self.home,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def runner(self, mode: str, dag_file: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RUNNER), str(self.dags / dag_file), mode],
            env={**self.env, **env},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=240,
        )

    def dags_do(self, mode: str, dag_file: str = EXAMPLE.name, **env: str) -> dict[str, Any]:
        done = self.runner(mode, dag_file, **env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-4000:]
        return json.loads(lines[-1].removeprefix("RESULT "))


def test_dags_are_planned_from_the_settings_file_alone_without_the_keys(tmp_path):
    airflow = Airflow(tmp_path / "airflow")
    airflow.settings(
        'schedule = "30 14 * * 1-5"\nschedule_timezone = "America/New_York"\n'
        f'destination = "duckdb:///{tmp_path / "shop.duckdb"}"\n'
        '[merchants.shop]\napi_key_env = "SHOP_KEY"\n'
        '[merchants.outlet]\napi_key_env = "OUTLET_KEY"\nschema = "outlet"\n'
        'destination = "postgresql://ogsync@db.invalid:5432/analytics"\n'
    )
    dags = airflow.dags_do("describe")  # neither key is set: parsing never reads them
    assert set(dags) == {"ogsync_shop", "ogsync_outlet"}
    for dag_id, one_at_a_time in (("ogsync_shop", True), ("ogsync_outlet", False)):
        dag = dags[dag_id]
        assert (dag["schedule"], dag["timezone"]) == ("30 14 * * 1-5", "America/New_York")
        assert (dag["catchup"], dag["max_active_runs"]) == (False, 1)
        assert dag["endpoints"] == DEFAULT_SET
        apply, sync = dag["tasks"]["apply_webhooks"], dag["tasks"]["sync"]
        assert set(dag["tasks"]) == {"apply_webhooks", "sync"}  # no reconcile unless asked
        assert apply["downstream"] == ["sync"] and not apply["mapped"]
        assert sync["mapped"] and sync["pool"] == dag_id
        # DuckDB's file takes one writer; PostgreSQL takes five endpoints at once
        assert sync["max_active_tis_per_dagrun"] == (1 if one_at_a_time else 5)
        assert (sync["retries"], sync["retry_exponential_backoff"]) == (3, 2.0)


def test_dag_options_choose_the_endpoints_the_retries_and_a_last_reconcile(tmp_path):
    airflow = Airflow(tmp_path / "airflow")
    airflow.settings(f'destination = "duckdb:///{tmp_path / "shop.duckdb"}"\n')
    (airflow.dags / "custom.py").write_text(
        "from datetime import timedelta\n"
        "from pathlib import Path\n"
        "from ogsync.airflow import DagOptions, ogsync_dags\n"
        "options = DagOptions(endpoints='orders,items', reconcile=True, retries=1,\n"
        "                     retry_delay=timedelta(seconds=30))\n"
        "globals().update(ogsync_dags(Path(__file__).with_name('ogsync.toml'), options))\n"
    )
    dag = airflow.dags_do("describe", "custom.py")["ogsync"]  # no merchants: one DAG
    assert dag["endpoints"] == ["orders", "items"]
    assert set(dag["tasks"]) == {"apply_webhooks", "sync", "reconcile"}
    assert dag["tasks"]["sync"]["downstream"] == ["reconcile"]
    assert dag["tasks"]["sync"]["pool"] == "ogsync_default"
    assert {t["retries"] for t in dag["tasks"].values()} == {1}
    assert (dag["schedule"], dag["timezone"]) == ("0 13 * * *", "America/Chicago")


def test_a_relative_duckdb_path_is_refused_when_the_dags_are_parsed(tmp_path):
    airflow = Airflow(tmp_path / "airflow")
    airflow.settings('destination = "duckdb:///ogsync.duckdb"\n')
    done = airflow.runner("describe", EXAMPLE.name)
    assert done.returncode != 0
    assert (
        "ogsync: DuckDB destination duckdb:///ogsync.duckdb is not an absolute path; "
        "Airflow's tasks run in folders of their own"
    ) in done.stderr


def live_keys(url: str, schema: str, table: str, key: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f'SELECT "{key}" FROM "{schema}"."{table}" WHERE _deleted_at IS NULL')
        return {str(r[0]) for r in rows.fetchall()}


@pytest.fixture
def pg_schema(postgres_server: Any):
    schema = f"airflow_{uuid.uuid4().hex[:10]}"
    yield schema
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.slow
def test_dag_runs_leave_each_merchants_warehouse_equal_to_the_truth(
    tmp_path, postgres_server, pg_schema
):
    """Two merchants, one into DuckDB with webhook deletions, one into PostgreSQL; two DAG
    runs each, with changes and deletions in between."""
    secret = "whsec-airflow-1"
    db = tmp_path / "shop.duckdb"
    inbox = SQLiteInbox(tmp_path / "inbox.sqlite")
    airflow = Airflow(tmp_path / "airflow")
    with (
        receiver_in_thread(inbox, [secret]) as receiver,
        simulator(records=1500, seed=71, webhook_url=f"{receiver.url}/webhooks/ordergroove",
                  webhook_secrets=[secret], webhook_retry_seconds=0.05) as shop,
        simulator(records=900, seed=72, api_key="outlet-key") as outlet,
        SimControl(shop.url) as shop_control,
        SimControl(outlet.url) as outlet_control,
    ):  # fmt: skip
        airflow.settings(
            f'destination = "duckdb:///{db}"\n'
            f'[merchants.shop]\napi_key_env = "SHOP_KEY"\nbase_url = "{shop.url}"\n'
            f'[merchants.outlet]\napi_key_env = "OUTLET_KEY"\nbase_url = "{outlet.url}"\n'
            f'destination = "{postgres_server.url}"\nschema = "{pg_schema}"\n'
        )
        airflow.command("db", "migrate")
        # Both merchants' pools in one command: each Airflow command starts Airflow anew.
        pools = tmp_path / "pools.json"
        pools.write_text(json.dumps({
            dag_id: {"slots": 5, "description": f"{dag_id}'s endpoints"}
            for dag_id in ("ogsync_shop", "ogsync_outlet")
        }))  # fmt: skip
        airflow.command("pools", "import", str(pools))
        keys = {"SHOP_KEY": shop.api_key, "OUTLET_KEY": "outlet-key",
                "OGSYNC_WEBHOOK_INBOX": str(tmp_path / "inbox.sqlite")}  # fmt: skip

        def run_and_check() -> dict[str, Any]:
            runs = airflow.dags_do("run", **keys)
            expected = {"apply_webhooks[-1]"} | {f"sync[{name}]" for name in DEFAULT_SET}
            for dag_id in ("ogsync_shop", "ogsync_outlet"):
                assert runs[dag_id]["state"] == "success", runs[dag_id]
                assert runs[dag_id]["tasks"] == dict.fromkeys(expected, "success")
                returned = runs[dag_id]["returned"]  # each task's XCom: what it did
                assert set(returned) == expected
                for name in DEFAULT_SET:
                    (only,) = returned[f"sync[{name}]"]["endpoints"].items()
                    assert only[0] == name and only[1]["requests"] >= 1
            assert_equals_truth(shop, db, select(None))
            for ep in select(None):
                live = live_keys(postgres_server.url, pg_schema, ep.name, ep.column_key)
                truth = set(outlet_control.truth_by_key(ep))
                assert live - set(outlet_control.deleted(ep)) == truth, ep.name
            return runs

        first = run_and_check()
        synced = first["ogsync_shop"]["returned"]
        assert sum(synced[f"sync[{n}]"]["endpoints"][n]["records"] for n in DEFAULT_SET) == sum(
            len(shop_control.truth_by_key(ep)) for ep in select(None)
        )  # the first run loads everything (nothing was deleted yet)
        for control in (shop_control, outlet_control):
            control.advance(minutes=30, changes=150)
        assert shop_control.wait_for_deliveries()["gave_up"] == 0
        assert inbox.backlog() > 0
        second = run_and_check()
        applied = second["ogsync_shop"]["returned"]["apply_webhooks[-1]"]
        assert applied["stored"] > 0 and applied["soft_deleted"] > 0
        assert inbox.backlog() == 0  # the apply task drained it
        assert_deletions_reflected(shop, db)  # as soft deletes, before the endpoints loaded
    inbox.close()
