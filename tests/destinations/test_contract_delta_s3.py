"""The warehouse contract on Delta Lake, in a bucket of the local S3 stand-in."""

from __future__ import annotations

from .lakehouse_contract import *  # noqa: F403  (the tests, collected here)
from .lakehouse_support import contract_fixture

wh = contract_fixture("delta_s3")
