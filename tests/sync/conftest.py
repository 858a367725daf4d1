"""Fixtures for sync tests; the helpers live in sync_support.py (a name no other folder uses)."""

from pathlib import Path

import pytest


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "warehouse.duckdb"
