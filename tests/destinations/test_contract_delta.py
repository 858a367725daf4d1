"""The warehouse contract on Delta Lake, in a folder."""

from __future__ import annotations

from .lakehouse_contract import *  # noqa: F403  (the tests, collected here)
from .lakehouse_support import contract_fixture

wh = contract_fixture("delta")
