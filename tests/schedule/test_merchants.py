"""Several merchants in one settings file: each its own key, host, schema, state and runs."""

from __future__ import annotations

import duckdb
from merchant_support import merchant_simulators, ogsync

from ogsync.endpoints import select
from ogsync.testing.sim_control import SimControl


def live_keys(db, schema: str, table: str, key: str) -> set[str]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(f"SELECT {key} FROM {schema}.{table} WHERE _deleted_at IS NULL")
        return {r[0] for r in rows.fetchall()}


def test_two_merchants_sync_into_separate_schemas_with_separate_state(tmp_path):
    db = tmp_path / "w.duckdb"
    with merchant_simulators(tmp_path, db, {"alpha": (800, 61), "beta": (600, 62)}) as (
        sims,
        env,
    ):
        alpha, beta = sims["alpha"], sims["beta"]
        env["OGSYNC_API_KEY"] = "ignored"  # each merchant's own key wins
        both = ogsync("sync", env=env, cwd=tmp_path)
        assert both.returncode == 0, both.stderr
        for schema, api in (("alpha", alpha), ("beta", beta)):
            with SimControl(api.url) as control:
                for ep in select(None):
                    truth = set(control.truth_by_key(ep))
                    assert live_keys(db, schema, ep.name, ep.column_key) == truth, (schema, ep.name)
        only = ogsync("sync", "--merchant", "beta", env=env, cwd=tmp_path)
        assert only.returncode == 0, only.stderr
        with duckdb.connect(str(db), read_only=True) as conn:
            runs = {
                schema: conn.execute(
                    f"SELECT count(DISTINCT run_id) FROM {schema}._ogsync_runs"
                ).fetchone()[0]
                for schema in ("alpha", "beta")
            }
        assert runs == {"alpha": 1, "beta": 2}
        unknown = ogsync("sync", "--merchant", "gamma", env=env, cwd=tmp_path)
        assert unknown.returncode == 2 and "unknown merchant 'gamma'" in unknown.stderr
        # A merchant whose key is missing stops the run before any merchant syncs.
        settings = (tmp_path / "ogsync.toml").read_text()
        (tmp_path / "ogsync.toml").write_text(
            settings + '[merchants.gamma]\napi_key_env = "GAMMA_KEY"\n'
        )
        missing = ogsync("sync", env=env, cwd=tmp_path)
        assert missing.returncode == 2
        assert "api_key_env names GAMMA_KEY, which is not set" in missing.stderr
        assert "merchant alpha" not in missing.stderr
        with duckdb.connect(str(db), read_only=True) as conn:
            (alpha_runs,) = conn.execute(
                "SELECT count(DISTINCT run_id) FROM alpha._ogsync_runs"
            ).fetchone()
        assert alpha_runs == 1
