"""Errors that say what to do: a missing extra, an unusual DuckDB URL, a bad cron field."""

from __future__ import annotations

import sys

import pytest

from ogsync.destinations import DestinationError, kind_of
from ogsync.destinations.duckdb import path_from_url
from ogsync.extras import MissingExtra
from ogsync.schedule import validate_cron
from ogsync.testing.cli import one_line_error, run_ogsync


@pytest.fixture
def without_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the postgres extra were not installed: importing psycopg fails."""
    for name in list(sys.modules):
        if name.split(".")[0] == "psycopg" or name.startswith("ogsync.destinations.postgres"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)


def test_a_postgresql_url_without_its_driver_names_the_extra(without_psycopg):
    kind = kind_of("postgresql://u:secret@db:5432/wh")
    with pytest.raises(DestinationError) as info:
        kind.open("postgresql://u:secret@db:5432/wh", "ordergroove")
    assert str(info.value) == (
        "a PostgreSQL warehouse needs the 'postgres' extra, which is not installed: "
        "pip install 'ogsync[postgres]'"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_the_airflow_module_without_airflow_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "ogsync.airflow", raising=False)
    monkeypatch.setitem(sys.modules, "airflow", None)
    monkeypatch.setitem(sys.modules, "airflow.sdk", None)
    with pytest.raises(MissingExtra, match=r"pip install 'ogsync\[airflow\]'"):
        import ogsync.airflow  # noqa: F401


def test_the_cli_says_it_in_one_line():
    code = (
        "import sys; sys.modules['psycopg'] = None; sys.argv = ['ogsync'] + sys.argv[1:]; "
        "from ogsync.cli import main; main()"
    )
    import subprocess

    from ogsync.testing.cli import clean_env

    done = subprocess.run(
        [sys.executable, "-c", code, "status", "--destination", "postgresql://u:pw@db/wh"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "pip install 'ogsync[postgres]'" in one_line_error(done)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("md:my_db", "MotherDuck is not supported"),
        ("motherduck:my_db", "MotherDuck is not supported"),
        ("duckdb:///md:my_db", "MotherDuck (md:my_db) is not supported"),
        ("duckdb://ogsync.duckdb", "two slashes, which make 'ogsync.duckdb' a host"),
        ("duckdb:///s3://bucket/w.duckdb", "a remote DuckDB database"),
        ("duckdb:///w.duckdb?threads=4", "connection options (threads=4)"),
        ("duckdb:", "bad DuckDB destination"),
    ],
)
def test_an_unusual_duckdb_url_says_what_is_supported(url, needle):
    with pytest.raises(DestinationError) as info:
        path_from_url(kind_of(url) and url)
    assert needle in str(info.value)
    assert "duckdb:///FILE" in str(info.value)


def test_usual_duckdb_urls_are_files():
    assert path_from_url("duckdb:///ogsync.duckdb") == "ogsync.duckdb"
    assert path_from_url("duckdb:////var/lib/og.duckdb") == "/var/lib/og.duckdb"
    assert path_from_url("duckdb:///:memory:") == ":memory:"


@pytest.mark.parametrize(
    ("cron", "needle"),
    [
        ("61 13 * * *", "the minute field '61' is out of range (61 is not in 0-59)"),
        ("0 24 * * *", "the hour field '24' is out of range (24 is not in 0-23)"),
        ("0 13-25 * * *", "the hour field '13-25' is out of range (25 is not in 0-23)"),
        ("0 13 0 * *", "the day-of-month field '0' is out of range (0 is not in 1-31)"),
        ("0 13 * 13 *", "the month field '13' is out of range (13 is not in 1-12)"),
        ("0 13 * * 8", "the day-of-week field '8' is out of range (8 is not in 0-7)"),
        ("0 13 * * funday", "the day-of-week field 'funday' is not understood"),
        ("0 13 * *", "it has 4 fields; use five, minute hour day-of-month month day-of-week"),
    ],
)
def test_a_rejected_cron_names_the_field(cron, needle):
    with pytest.raises(ValueError) as info:
        validate_cron(cron)
    assert needle in str(info.value)


def test_a_bad_schedule_in_the_file_is_one_line_naming_the_field(tmp_path):
    (tmp_path / "ogsync.toml").write_text('schedule = "0 25 * * *"\n')
    done = run_ogsync("schedule", env={"OGSYNC_API_KEY": "k"}, cwd=tmp_path)
    assert done.returncode == 2
    assert "the hour field '25' is out of range" in one_line_error(done)
