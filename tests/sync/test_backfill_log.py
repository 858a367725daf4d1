"""What a backfill says as it goes: each log line names its window, and a backfill started
again once finished says it is complete (and fetches nothing)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sync_support import run_sync, simulator

from ogsync.endpoints import BY_NAME
from ogsync.output import LogListener
from ogsync.plan import Window, WindowSize, describe_window
from ogsync.sync import Backfill

CHICAGO = ZoneInfo("America/Chicago")
SIM_START = datetime(2025, 6, 1, tzinfo=UTC)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ogsync"]


def test_backfill_lines_name_their_window_and_a_finished_one_says_it_is_complete(db, caplog):
    caplog.set_level(logging.INFO, logger="ogsync")
    spec = Backfill(datetime(2025, 3, 1, tzinfo=CHICAGO), size=WindowSize.MONTH)
    orders = [BY_NAME["orders"]]
    with simulator(records=1500, seed=61, start=SIM_START, frozen_clock=True) as sim:
        first = run_sync(sim, db, orders, backfill=spec, listener=LogListener())
        assert first.exit_code == 0
        said = messages(caplog)
        for month in ("2025-03-01 .. 2025-03-31", "2025-04-01 .. 2025-04-30",
                      "2025-05-01 .. 2025-05-31"):  # fmt: skip
            assert any(m.startswith(f"orders (window {month}): ") for m in said), said
            assert any(m.startswith(f"orders: window {month} done, ") for m in said), said
        assert not any("already complete" in m for m in said)

        caplog.clear()
        again = run_sync(sim, db, orders, backfill=spec, listener=LogListener())
        assert again.exit_code == 0
        [outcome] = again.outcomes
        assert outcome.run.requests == 0 and outcome.run.records == 0
        said = messages(caplog)
        assert (
            "this backfill is already complete: every window of orders is done (3 windows); "
            "nothing to fetch" in said
        ), said
        assert any(m.endswith("window none left (the backfill was complete)") for m in said)


def test_windows_read_in_the_api_zone():
    start = datetime(2025, 3, 1, 6, tzinfo=UTC)  # midnight in Chicago (CST)
    end = datetime(2025, 4, 1, 4, 59, 59, tzinfo=UTC)  # 23:59:59 CDT on March 31
    assert describe_window(Window(start, end), CHICAGO) == "2025-03-01 .. 2025-03-31"
    half = Window(start, datetime(2025, 3, 16, 17, 30, tzinfo=UTC))
    assert describe_window(half, CHICAGO) == "2025-03-01 00:00:00 .. 2025-03-16 12:30:00"
    assert describe_window(Window(None, None), CHICAGO) == "all of it"
