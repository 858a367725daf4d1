"""The soak, short: five SIGKILLs of the sync and one of the receiver, under faults and
changes, then the warehouse must equal the API exactly (ogsync.testing.soak checks it)."""

from __future__ import annotations

import pytest

from ogsync.testing.soak import run_soak


@pytest.mark.slow
def test_five_kills_under_faults_and_changes_end_equal_to_the_truth(tmp_path):
    report = run_soak(kills=5, records=3000, seed=11, workdir=tmp_path, kill_after=(0.3, 1.5))
    assert report.killed + report.finished == 5
    assert report.killed >= 1 and report.receiver_kills == 1
    assert report.faults.get("429", 0) > 0  # the faults did happen
    assert report.webhooks["delivered"] == report.webhooks["queued"]
    assert report.checked["orders live"] > 0 and report.checked["events"] > 0
