"""The warehouse contract as it holds for a lakehouse (collected by test_contract_delta.py and
test_contract_iceberg.py, each giving its own `wh`): every test of test_contract.py that asks
nothing a table format has not, plus the lakehouse's own forms of the others.

Not here: views and primary keys (a table format has neither: the lakehouse's own test of its
tables is in test_lakehouse.py), and a group that fails between two commits, which a lakehouse
does not roll back but converges from (test_lakehouse.py kills a writer at each commit).
"""

from __future__ import annotations

from typing import Any

import pytest

from . import test_contract as contract
from .test_contract import (  # noqa: F401  (collected from here, on the lakehouse's `wh`)
    test_a_nul_character_does_not_stop_the_batch,
    test_checkpoint_and_watermark_round_trip_and_watermark_never_moves_back,
    test_duplicates_in_one_batch_the_newest_then_the_last_wins,
    test_equal_update_time_overwrites,
    test_full_refresh_soft_deletes_and_only_a_newer_version_revives,
    test_full_refresh_that_saw_nothing_deletes_everything_once,
    test_full_then_incremental_sync_equals_the_simulators_truth,
    test_log_run_inserts_then_updates_one_row,
    test_newer_version_wins_and_older_is_ignored,
    test_offer_profiles_without_update_field_last_written_wins,
    test_rejected_input_is_kept_whole_with_its_reason,
    test_type_edge_cases_survive_the_round_trip,
    test_without_a_readable_update_time_the_last_written_wins,
)


def test_a_group_with_a_batch_that_does_not_fit_leaves_no_trace(wh: Any, monkeypatch: Any) -> None:
    """Every batch is checked before the first commit, so a bad one stops the whole group."""
    contract.test_a_failing_group_leaves_no_data_checkpoint_or_run_log(
        wh, monkeypatch, "bad_arrow_schema"
    )


@pytest.fixture
def open_dest(wh: Any) -> Any:
    return wh.open_dest
