"""The package as a user gets it: built into a wheel, installed in a clean environment with no
extras, and run; and what its metadata and command line promise."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import metadata, version
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import ogsync
from ogsync.cli import app
from ogsync.testing.cli import clean_env, one_line_error, run_ogsync

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_written_once_and_shown_by_version():
    assert "version" in PYPROJECT["project"]["dynamic"]  # read from ogsync/__init__.py
    assert version("ogsync") == ogsync.__version__
    shown = run_ogsync("--version")
    assert shown.returncode == 0
    assert shown.stdout.strip() == f"ogsync {ogsync.__version__}"


def in_process(*args: str) -> Result:
    """`ogsync ARGS` run in this process (the help tests need no process of their own)."""
    return CliRunner().invoke(app, list(args), prog_name="ogsync")


@pytest.mark.parametrize("command", [[], ["sync"], ["webhooks", "serve"], ["simulator", "serve"]])
def test_h_is_help(command):
    short = in_process(*command, "-h")
    long = in_process(*command, "--help")
    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output
    assert "Usage:" in short.output


def test_the_top_level_help_is_for_users():
    text = " ".join(in_process("--help").output.split())  # as read, whatever the line breaks
    for words in ("Ordergroove", "First steps", "ogsync init", "OGSYNC_API_KEY", "Exit codes"):
        assert words in text
    # commands in the order a newcomer meets them
    listed = [name for name in ("init", "check", "sync", "status", "demo") if f"│ {name} " in text]
    assert listed == ["init", "check", "sync", "status", "demo"]


def test_the_license_file_is_the_license_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert metadata("ogsync")["License-Expression"] == "Apache-2.0"


def test_all_holds_every_other_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    named = {item.removeprefix("ogsync[").removesuffix("]") for item in extras["all"]}
    assert named == set(extras) - {"all", "dev"}


@pytest.mark.slow
def test_the_wheel_installs_and_runs_in_a_clean_environment(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("ogsync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ogsync/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    assert "ogsync/dbt_package/dbt_project.yml" in names  # where `ogsync dbt init` finds it

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [venv / "bin" / "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    home = tmp_path / "home"  # not the checkout: nothing may come from src/
    home.mkdir()

    def installed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [venv / "bin" / "ogsync", *args],
            cwd=home,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert installed("--version").stdout.strip() == f"ogsync {ogsync.__version__}"
    assert "First steps" in installed("--help").stdout
    assert installed("init").returncode == 0 and (home / "ogsync.toml").is_file()
    demo = installed("demo", "--records", "300")
    assert demo.returncode == 0, demo.stderr
    assert "orders_current" in demo.stdout
    assert "pip install 'ogsync[dbt]'" in demo.stdout  # the analytics need the dbt extra

    # No extras: the PostgreSQL driver and Airflow are absent, and saying so is one line.
    postgres = installed("status", "--destination", "postgresql://u:pw@db.invalid/wh")
    assert postgres.returncode == 2
    assert "pip install 'ogsync[postgres]'" in one_line_error(postgres)
    snowflake = installed(
        "dbt", "init", "analytics", "--destination", "snowflake://u@acct/DB?warehouse=W"
    )
    assert snowflake.returncode == 2
    assert "pip install 'ogsync[snowflake]'" in one_line_error(snowflake)
    airflow = subprocess.run(
        [venv / "bin" / "python", "-c", "import ogsync.airflow"],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert airflow.returncode == 1
    assert airflow.stderr.strip().splitlines()[-1] == (
        "ogsync.extras.MissingExtra: ogsync.airflow (Airflow 3.2 or later) needs the 'airflow' "
        "extra, which is not installed: pip install 'ogsync[airflow]'"
    )
