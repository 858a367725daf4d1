"""The dbt package built on a simulator-synced PostgreSQL warehouse, the profile reading the
password from the environment (the checks are in dbt_checks.py)."""

from __future__ import annotations

from ogsync.analytics.scaffold import POSTGRES_PASSWORD_ENV

from .conftest import BuiltWarehouse
from .dbt_checks import *  # noqa: F403 (the shared checks, run here against PostgreSQL)

BACKEND = "postgres"


def test_the_profile_holds_no_password(built: BuiltWarehouse) -> None:
    profile = (built.project / "profiles.yml").read_text()
    password = built.env[POSTGRES_PASSWORD_ENV]
    assert password not in profile
    assert f"env_var('{POSTGRES_PASSWORD_ENV}'" in profile
