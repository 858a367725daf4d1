"""The warehouse contract on Delta Lake, in a folder and in a bucket of the local S3 stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .lakehouse_contract import *  # noqa: F403  (the tests, collected here)
from .lakehouse_support import LakehouseWarehouse, lakehouse


@pytest.fixture(params=["delta", "delta_s3"])
def wh(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LakehouseWarehouse]:
    s3 = request.getfixturevalue("s3_stand_in") if request.param.endswith("_s3") else None
    yield from lakehouse(request.param, tmp_path, s3, monkeypatch)
