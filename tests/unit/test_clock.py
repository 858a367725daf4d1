"""Whose clock bounds a run: the API's when it agrees with this machine's, else not trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ogsync.clock import ClockSkew, ClockSource, OnSkew, in_future, run_clock

LOCAL = datetime(2026, 3, 8, 7, 59, 30, tzinfo=UTC)  # a US clock change is minutes away
FIVE = timedelta(minutes=5)


@pytest.mark.parametrize("skew", [timedelta(0), FIVE, -FIVE, timedelta(seconds=299)])
def test_an_api_clock_within_the_tolerance_bounds_the_run(skew):
    clock = run_clock(LOCAL + skew, LOCAL, tolerance=FIVE)
    assert (clock.at, clock.source, clock.note) == (LOCAL + skew, ClockSource.API, None)


@pytest.mark.parametrize(
    "skew", [FIVE + timedelta(seconds=1), -FIVE - timedelta(seconds=1), timedelta(days=365)]
)
def test_past_the_tolerance_the_run_fails_with_one_line_naming_both_clocks(skew):
    with pytest.raises(ClockSkew) as caught:
        run_clock(LOCAL + skew, LOCAL, tolerance=FIVE, on_skew=OnSkew.FAIL)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{LOCAL + skew:%Y-%m-%d %H:%M:%S}Z" in message and "2026-03-08 07:59:30Z" in message
    assert "clock_tolerance_minutes = 5" in message and "on_clock_skew" in message
    assert ("ahead" if skew > timedelta(0) else "behind") in message


def test_past_the_tolerance_the_run_may_use_the_local_clock_instead():
    clock = run_clock(LOCAL + timedelta(days=365), LOCAL, tolerance=FIVE, on_skew=OnSkew.LOCAL)
    assert (clock.at, clock.source) == (LOCAL, ClockSource.LOCAL)
    assert clock.note is not None and "365.0 days ahead" in clock.note


def test_an_absurd_date_is_only_skew():
    absurd = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    with pytest.raises(ClockSkew, match="9999-12-31"):
        run_clock(absurd, LOCAL)
    assert run_clock(absurd, LOCAL, on_skew=OnSkew.LOCAL).at == LOCAL
    ancient = datetime(1, 1, 1, tzinfo=UTC)
    assert run_clock(ancient, LOCAL, on_skew=OnSkew.LOCAL).at == LOCAL


def test_no_readable_date_means_the_local_clock_and_says_so():
    clock = run_clock(None, LOCAL)
    assert (clock.at, clock.source) == (LOCAL, ClockSource.LOCAL)
    assert clock.note is not None and "Date" in clock.note


def test_the_local_clock_moving_along_moves_the_verdict():
    api = LOCAL
    verdicts = [
        run_clock(api, LOCAL + timedelta(minutes=m), tolerance=FIVE, on_skew=OnSkew.LOCAL).source
        for m in (0, 4, 5, 6, 60)
    ]
    assert verdicts == [ClockSource.API] * 3 + [ClockSource.LOCAL] * 2


def test_in_future():
    assert not in_future(None, LOCAL, FIVE)
    assert not in_future(LOCAL + FIVE, LOCAL, FIVE)
    assert in_future(LOCAL + FIVE + timedelta(microseconds=1), LOCAL, FIVE)
