"""Every command that touches a merchant works from a settings file whose keys exist only under
`[merchants.*]`, for each merchant in turn or for the one `--merchant` names."""

from __future__ import annotations

import json

import duckdb
from merchant_support import merchant_simulators, ogsync


def kinds(db, schema: str) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            f'SELECT kind, count(*) FROM "{db.stem}"."{schema}"._ogsync_runs GROUP BY kind'
        ).fetchall()
    return dict(rows)


def test_every_command_serves_merchants_whose_keys_are_only_under_merchants(tmp_path):
    # A file named like a merchant's schema: DuckDB's "shop" is a catalog and a schema.
    db = tmp_path / "shop.duckdb"
    merchants = {"shop": (400, 71), "beta": (300, 72)}
    with merchant_simulators(tmp_path, db, merchants) as (sims, env):
        shop, beta = sims["shop"], sims["beta"]
        checked = ogsync("check", env=env, cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.count("accepts the key") == 2
        assert shop.url in checked.stdout and beta.url in checked.stdout
        only = ogsync("check", "--merchant", "beta", env=env, cwd=tmp_path)
        assert only.returncode == 0 and only.stdout.count("accepts the key") == 1

        synced = ogsync("sync", env=env, cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr

        status = ogsync("status", "--json", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)
        assert {r["merchant"] for r in rows} == {"shop", "beta"}
        assert all(r["last_run"]["status"] == "success" for r in rows if r["endpoint"] == "orders")
        assert all(r["live"] > 0 for r in rows if r["endpoint"] == "customers")
        one = json.loads(ogsync("status", "--json", "--merchant", "shop", env=env,
                                cwd=tmp_path).stdout)  # fmt: skip
        assert {r["merchant"] for r in one} == {"shop"}

        back = ogsync("backfill", "--start", "2024-01-01", "--window", "year", "--endpoints",
                      "orders", "--merchant", "shop", env=env, cwd=tmp_path)  # fmt: skip
        assert back.returncode == 0, back.stderr
        assert kinds(db, "shop").get("backfill") == 1 and "backfill" not in kinds(db, "beta")

        reconciled = ogsync("reconcile", env=env, cwd=tmp_path)
        assert reconciled.returncode == 0, reconciled.stderr
        assert kinds(db, "shop")["reconcile"] == 2 and kinds(db, "beta")["reconcile"] == 2

        applied = ogsync("webhooks", "apply", env=env, cwd=tmp_path)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.count("events stored") == 2
        one_applied = ogsync("webhooks", "apply", "--merchant", "beta", env=env, cwd=tmp_path)
        assert one_applied.returncode == 0 and one_applied.stdout.count("events stored") == 1

        unknown = ogsync("status", "--merchant", "gamma", env=env, cwd=tmp_path)
        assert unknown.returncode == 2 and "unknown merchant 'gamma'" in unknown.stderr
