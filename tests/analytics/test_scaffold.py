"""`ogsync dbt init DIR`: a dbt project whose profile points at the configured warehouse, with
every secret left in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ogsync.analytics import package_dir
from ogsync.analytics.scaffold import POSTGRES_PASSWORD_ENV, init_project
from ogsync.config import Settings
from ogsync.testing.cli import one_line_error, run_ogsync

PASSWORD = "s3cret-PW-that-must-never-be-written"


def profile(project: Path) -> dict:
    return yaml.safe_load((project / "profiles.yml").read_text())["ogsync"]["outputs"]["warehouse"]


def test_a_duckdb_project_points_at_the_file_ogsync_writes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path in the URL means one from here
    settings = Settings(destination="duckdb:///data/shop.duckdb", schema="shop")
    made = init_project(tmp_path / "analytics", settings)
    target = profile(made.directory)
    assert target == {
        "type": "duckdb",
        "path": str(tmp_path / "data" / "shop.duckdb"),
        "schema": "shop",
        "threads": 4,
    }
    project = yaml.safe_load((made.directory / "dbt_project.yml").read_text())
    assert project["profile"] == "ogsync"
    assert project["vars"]["ordergroove_schema"] == "shop"
    assert project["vars"]["ordergroove_timezone"] == "America/Chicago"  # the API's zone
    assert project["vars"]["ordergroove_history"] == [
        "subscriptions",
        "customers",
        "addresses",
        "orders",
        "items",
    ]
    (package,) = yaml.safe_load((made.directory / "packages.yml").read_text())["packages"]
    assert Path(package["local"]) == package_dir()
    assert (package_dir() / "dbt_project.yml").is_file()
    assert made.adapter == "dbt-duckdb" and made.environment == {}


def test_init_on_postgresql_writes_no_password(tmp_path):
    url = f"postgresql://etl:{PASSWORD}@db.example.com:6543/analytics?sslmode=require"
    project = tmp_path / "analytics"
    result = run_ogsync(
        "dbt",
        "init",
        str(project),
        env={"OGSYNC_DESTINATION": url, "OGSYNC_SCHEMA": "og", "OGSYNC_HISTORY": "none"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for path in project.rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(), path
    assert PASSWORD not in result.stdout + result.stderr
    assert profile(project) == {
        "type": "postgres",
        "host": "db.example.com",
        "port": 6543,
        "user": "etl",
        "password": "{{ env_var('PGPASSWORD', '') }}",
        "dbname": "analytics",
        "schema": "og",
        "threads": 4,
        "sslmode": "require",
    }
    assert f"export {POSTGRES_PASSWORD_ENV}=..." in result.stdout
    assert f"cd {project} && " in result.stdout and "dbt deps && " in result.stdout
    assert "pip install 'ogsync[dbt]'" in result.stdout
    # history off: the marts need subscriptions_history, and init says so
    assert "subscriptions_history" in result.stderr
    project_file = yaml.safe_load((project / "dbt_project.yml").read_text())
    assert project_file["vars"]["ordergroove_history"] == []


def test_a_snowflake_profile_reads_the_secret_ogsync_reads(tmp_path, monkeypatch):
    from ogsync.destinations import snowflake_connect as sf

    password_env, key_file_env = sf.PASSWORD_ENV, sf.KEY_FILE_ENV
    url = "snowflake://LOADER@acme-eu1/ANALYTICS?warehouse=LOAD_WH&role=OGSYNC"
    monkeypatch.delenv(key_file_env, raising=False)
    made = init_project(tmp_path / "pw", Settings(destination=url))
    assert profile(made.directory) == {
        "type": "snowflake",
        "account": "acme-eu1",
        "user": "LOADER",
        "database": "ANALYTICS",
        "schema": "ordergroove",
        "threads": 4,
        "warehouse": "LOAD_WH",
        "role": "OGSYNC",
        "password": "{{ env_var('" + password_env + "') }}",
    }
    assert made.adapter == "dbt-snowflake"
    monkeypatch.setenv(key_file_env, "/secrets/loader.p8")
    made = init_project(tmp_path / "key", Settings(destination=url))
    target = profile(made.directory)
    assert "password" not in target
    assert target["private_key_path"] == "{{ env_var('" + key_file_env + "') }}"
    assert "/secrets/loader.p8" not in (made.directory / "profiles.yml").read_text()


def test_init_never_overwrites_a_project_unasked(tmp_path):
    project = tmp_path / "analytics"
    env = {"OGSYNC_DESTINATION": f"duckdb:///{tmp_path / 'w.duckdb'}"}
    assert run_ogsync("dbt", "init", str(project), env=env).returncode == 0
    (project / "profiles.yml").write_text("# mine\n")
    again = run_ogsync("dbt", "init", str(project), env=env)
    assert again.returncode == 2
    assert "--force" in one_line_error(again)
    assert (project / "profiles.yml").read_text() == "# mine\n"
    forced = run_ogsync("dbt", "init", str(project), "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    assert profile(project)["type"] == "duckdb"


def test_init_serves_one_merchant(tmp_path):
    (tmp_path / "ogsync.toml").write_text(
        f'destination = "duckdb:///{tmp_path / "w.duckdb"}"\n'
        '[merchants.us]\napi_key_env = "K_US"\nschema = "og_us"\n'
        '[merchants.eu]\napi_key_env = "K_EU"\nschema = "og_eu"\n'
    )
    both = run_ogsync("dbt", "init", str(tmp_path / "p"), cwd=tmp_path)
    assert both.returncode == 2
    assert "--merchant" in one_line_error(both)
    one = run_ogsync("dbt", "init", str(tmp_path / "p"), "--merchant", "eu", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert profile(tmp_path / "p")["schema"] == "og_eu"


@pytest.mark.parametrize("url", ["duckdb:///:memory:", "mysql://x@y/z"])
def test_a_warehouse_dbt_cannot_reach_is_one_line(tmp_path, url):
    result = run_ogsync("dbt", "init", str(tmp_path / "p"), env={"OGSYNC_DESTINATION": url})
    assert result.returncode == 2
    one_line_error(result)
