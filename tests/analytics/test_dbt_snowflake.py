"""The dbt package built with dbt-snowflake on a simulator-synced Snowflake: the emulator
(fakesnow's server, as the destination tests run it), reached through the profile's host,
port and protocol, the password read from the environment (the checks are in dbt_checks.py).

What the emulator cannot show is in the README (Analytics: on Snowflake)."""

from __future__ import annotations

import pytest

from .conftest import SNOWFLAKE_PASSWORD, BuiltWarehouse
from .dbt_checks import *  # noqa: F403 (the shared checks, run here against Snowflake)

BACKEND = "snowflake"
# A sync into the emulator and a dbt build there, every statement a round trip.
pytestmark = pytest.mark.slow


def test_the_profile_reaches_the_emulator_without_the_password(built: BuiltWarehouse) -> None:
    profile = (built.project / "profiles.yml").read_text()
    assert SNOWFLAKE_PASSWORD not in profile
    assert "env_var('OGSYNC_SNOWFLAKE_PASSWORD')" in profile
    assert 'type: "snowflake"' in profile or "type: snowflake" in profile
