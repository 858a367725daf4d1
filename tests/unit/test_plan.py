"""The planner: incremental windows, overlap, DST, checkpoints, test windows, full refreshes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ogsync.apitime import from_local_naive, parse_filter
from ogsync.endpoints import BY_NAME, ENDPOINTS
from ogsync.plan import (
    DEFAULT_OVERLAP,
    Checkpoint,
    EndpointState,
    Mode,
    Window,
    WindowSize,
    backfill_windows,
    plan_backfill,
    plan_endpoint,
    plan_run,
    split_window,
    window_params,
)

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)
ORDERS = BY_NAME["orders"]
ITEMS = BY_NAME["items"]
INCREMENTAL = [e for e in ENDPOINTS if e.incremental]
NOT_INCREMENTAL = [e for e in ENDPOINTS if not e.incremental]
RUN = datetime(2026, 6, 15, 17, 0, 0, tzinfo=UTC)
CP_MARK = datetime(2026, 6, 14, 0, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def server_read(value: str, api_tz: ZoneInfo, *, end: bool) -> datetime:
    """How the API (the simulator) reads a range filter value: naive local, first occurrence."""
    return from_local_naive(parse_filter(value, end=end), api_tz, fold=0)


def only_window(plan):
    assert len(plan.windows) == 1
    return plan.windows[0]


# -- incremental ----------------------------------------------------------------------------


@pytest.mark.parametrize("ep", INCREMENTAL, ids=lambda e: e.name)
def test_incremental_window_starts_overlap_before_watermark(ep):
    watermark = utc(2026, 6, 14, 17, 0, 0)
    plan = plan_endpoint(ep, EndpointState(watermark=watermark), run_started_at=RUN)
    assert plan.mode == Mode.INCREMENTAL
    assert plan.resumable
    window = only_window(plan)
    assert window == Window(watermark - DEFAULT_OVERLAP, RUN + DEFAULT_OVERLAP, None, RUN)


def test_default_overlap_is_sixty_minutes():
    assert timedelta(minutes=60) == DEFAULT_OVERLAP


@pytest.mark.parametrize("minutes", [0, 1, 15, 90, 24 * 60])
def test_overlap_is_configurable(minutes):
    watermark = utc(2026, 6, 14, 17, 0, 0)
    overlap = timedelta(minutes=minutes)
    plan = plan_endpoint(
        ORDERS, EndpointState(watermark=watermark), run_started_at=RUN, overlap=overlap
    )
    assert only_window(plan).start == watermark - overlap
    assert only_window(plan).end == RUN + overlap
    assert only_window(plan).watermark_after == RUN


def test_no_watermark_means_full_history():
    plan = plan_endpoint(ORDERS, EndpointState(), run_started_at=RUN)
    assert plan.mode == Mode.INCREMENTAL
    assert only_window(plan) == Window(None, RUN + DEFAULT_OVERLAP, None, RUN)
    assert window_params(ORDERS, only_window(plan), CHICAGO) == {
        "updated_end": "2026-06-15T13:00:00"
    }


def test_watermark_after_run_start_is_clamped():
    """A watermark a little ahead of this run's clock (skew within the tolerance) never makes
    an empty or inverted window."""
    watermark = RUN + timedelta(minutes=4)
    window = only_window(plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=RUN))
    assert window.start == RUN - DEFAULT_OVERLAP
    assert window.end == RUN + DEFAULT_OVERLAP
    assert window.watermark_after == RUN
    assert window.start < window.end


@pytest.mark.parametrize("ahead", [timedelta(minutes=6), timedelta(days=365)])
@pytest.mark.parametrize("in_checkpoint", [False, True])
def test_a_watermark_past_real_time_is_repaired_by_reading_from_the_beginning(ahead, in_checkpoint):
    future = RUN + ahead
    state = (
        EndpointState(RUN - timedelta(days=1), Checkpoint(RUN, future, "https://x/?c=1", future))
        if in_checkpoint
        else EndpointState(future)
    )
    plan = plan_endpoint(ORDERS, state, run_started_at=RUN, tolerance=timedelta(minutes=5))
    assert plan.future_watermark == future
    (window,) = plan.windows  # the poisoned checkpoint is not followed either
    assert (window.start, window.resume_url) == (None, None)
    assert window.end == RUN + DEFAULT_OVERLAP
    assert window.watermark_after == RUN


def test_a_watermark_within_the_tolerance_is_no_repair():
    state = EndpointState(RUN + timedelta(minutes=5))
    plan = plan_endpoint(ORDERS, state, run_started_at=RUN, tolerance=timedelta(minutes=5))
    assert plan.future_watermark is None


def test_window_params_in_api_zone():
    watermark = utc(2026, 1, 10, 18, 0, 0)  # 12:00 CST
    run = utc(2026, 1, 11, 18, 30, 0)
    window = only_window(plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=run))
    assert window_params(ORDERS, window, CHICAGO) == {
        "updated_start": "2026-01-10T11:00:00",
        "updated_end": "2026-01-11T13:30:00",
    }
    assert window_params(ORDERS, window, NEW_YORK) == {
        "updated_start": "2026-01-10T12:00:00",
        "updated_end": "2026-01-11T14:30:00",
    }


def test_window_params_summer_offset():
    window = Window(utc(2026, 7, 1, 17, 0, 0), utc(2026, 7, 2, 17, 0, 0))
    assert window_params(ORDERS, window, CHICAGO) == {
        "updated_start": "2026-07-01T12:00:00",
        "updated_end": "2026-07-02T12:00:00",
    }


def test_start_floored_and_end_ceiled_to_the_second():
    window = Window(
        utc(2026, 1, 10, 18, 0, 0).replace(microsecond=999_999),
        utc(2026, 1, 11, 18, 0, 0).replace(microsecond=1),
    )
    assert window_params(ORDERS, window, CHICAGO) == {
        "updated_start": "2026-01-10T12:00:00",
        "updated_end": "2026-01-11T12:00:01",
    }


def test_whole_seconds_are_not_widened():
    window = Window(utc(2026, 1, 10, 18, 0, 0), utc(2026, 1, 11, 18, 0, 0))
    assert window_params(ORDERS, window, CHICAGO) == {
        "updated_start": "2026-01-10T12:00:00",
        "updated_end": "2026-01-11T12:00:00",
    }


def test_end_ceil_rolls_over_minute_and_day():
    window = Window(None, datetime(2026, 1, 1, 5, 59, 59, 500_000, tzinfo=UTC))
    assert window_params(ORDERS, window, CHICAGO) == {"updated_end": "2026-01-01T00:00:00"}


def test_items_use_order_updated_params():
    window = Window(utc(2026, 1, 10, 18, 0, 0), utc(2026, 1, 11, 18, 0, 0))
    assert window_params(ITEMS, window, CHICAGO) == {
        "order_updated_start": "2026-01-10T12:00:00",
        "order_updated_end": "2026-01-11T12:00:00",
    }


@pytest.mark.parametrize("name", ["customers", "subscriptions", "orders", "addresses"])
def test_other_incremental_endpoints_use_updated_params(name):
    window = Window(utc(2026, 1, 10, 18, 0, 0), utc(2026, 1, 11, 18, 0, 0))
    assert set(window_params(BY_NAME[name], window, CHICAGO)) == {"updated_start", "updated_end"}


def test_list_params_carried():
    window = Window(None, None)
    assert window_params(BY_NAME["products"], window, CHICAGO) == {
        "autoship_enabled": "all",
        "allow_discontinued": "true",
    }
    assert window_params(BY_NAME["offer_profiles"], window, CHICAGO) == {"status": "all"}


def test_window_params_do_not_alias_the_endpoint_table():
    params = window_params(BY_NAME["products"], Window(None, None), CHICAGO)
    params["extra"] = "x"
    assert "extra" not in BY_NAME["products"].list_params


@pytest.mark.parametrize("ep", NOT_INCREMENTAL, ids=lambda e: e.name)
def test_non_incremental_endpoints_never_get_range_params(ep):
    """one_time_incentives has a documented filter, but is not incremental: no range params."""
    window = Window(utc(2026, 1, 10, 18, 0, 0), utc(2026, 1, 11, 18, 0, 0))
    params = window_params(ep, window, CHICAGO)
    assert params == dict(ep.list_params)
    assert not any(k.endswith(("_start", "_end")) for k in params)


def test_one_time_incentives_plan_has_no_range_params():
    ep = BY_NAME["one_time_incentives"]
    plan = plan_endpoint(ep, EndpointState(utc(2026, 1, 1, 0, 0, 0)), run_started_at=RUN)
    assert plan.mode == Mode.FULL_REFRESH
    assert window_params(ep, only_window(plan), CHICAGO) == {}


# -- DST --------------------------------------------------------------------------------------


FALL_BACK_WATERMARKS = [
    # Around 2026-11-01 01:30 America/Chicago, both occurrences and either side.
    from_local_naive(datetime(2026, 11, 1, 1, 30), CHICAGO, fold=0),  # 06:30 UTC (CDT)
    from_local_naive(datetime(2026, 11, 1, 1, 30), CHICAGO, fold=1),  # 07:30 UTC (CST)
    utc(2026, 11, 1, 6, 0, 0),
    utc(2026, 11, 1, 6, 59, 59),
    utc(2026, 11, 1, 7, 0, 0),
    utc(2026, 11, 1, 7, 59, 59),
    utc(2026, 11, 1, 8, 0, 0),
    utc(2026, 11, 1, 8, 30, 0),
    utc(2026, 11, 1, 9, 15, 30),
]
SPRING_FORWARD_WATERMARKS = [
    utc(2026, 3, 8, 7, 30, 0),  # 01:30 CST
    utc(2026, 3, 8, 7, 59, 59),
    utc(2026, 3, 8, 8, 0, 0),  # 03:00 CDT
    utc(2026, 3, 8, 8, 30, 0),
    utc(2026, 3, 8, 9, 0, 0),
    utc(2026, 3, 8, 9, 30, 0),
]


@pytest.mark.parametrize("watermark", FALL_BACK_WATERMARKS + SPRING_FORWARD_WATERMARKS, ids=str)
def test_dst_start_never_read_later_than_watermark_minus_overlap(watermark):
    run = watermark + timedelta(hours=6)
    plan = plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=run)
    params = window_params(ORDERS, only_window(plan), CHICAGO)
    start = server_read(params["updated_start"], CHICAGO, end=False)
    end = server_read(params["updated_end"], CHICAGO, end=True)
    assert start <= watermark - DEFAULT_OVERLAP
    assert start < end


def test_fall_back_second_occurrence_reads_an_hour_early():
    """01:30 CST (second occurrence) minus the overlap is 01:30 CDT: the same wall time."""
    watermark = from_local_naive(datetime(2026, 11, 1, 1, 30), CHICAGO, fold=1)
    plan = plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=watermark + HOUR)
    params = window_params(ORDERS, only_window(plan), CHICAGO)
    assert params["updated_start"] == "2026-11-01T01:30:00"
    assert server_read(params["updated_start"], CHICAGO, end=False) == utc(2026, 11, 1, 6, 30, 0)


def test_spring_forward_never_formats_a_missing_wall_time():
    for minute in range(0, 180, 7):
        instant = utc(2026, 3, 8, 6, 0, 0) + timedelta(minutes=minute)
        params = window_params(ORDERS, Window(instant, instant), CHICAGO)
        for value in params.values():
            assert not value.startswith("2026-03-08T02:")


# A property: consecutive runs leave no gap, as the server reads their bounds.


def _transitions() -> list[datetime]:
    """US DST changes 2024..2031 in UTC for Chicago and New York (2nd Sun Mar, 1st Sun Nov)."""
    out = []
    for year in range(2024, 2032):
        march = date(year, 3, 8 + (6 - date(year, 3, 8).weekday()) % 7)
        november = date(year, 11, 1 + (6 - date(year, 11, 1).weekday()) % 7)
        for day in (march, november):
            for hour in (6, 7, 8):
                out.append(datetime(day.year, day.month, day.day, hour, tzinfo=UTC))
    return out


TRANSITIONS = _transitions()

uniform_instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2031, 12, 31), timezones=st.just(UTC)
)
near_transition = st.builds(
    lambda t, seconds, micros: t + timedelta(seconds=seconds, microseconds=micros),
    st.sampled_from(TRANSITIONS),
    st.integers(-4 * 3600, 4 * 3600),
    st.integers(0, 999_999),
)
instants = st.one_of(uniform_instants, near_transition)
gaps = st.one_of(
    st.timedeltas(min_value=timedelta(seconds=0), max_value=timedelta(hours=3)),
    st.timedeltas(min_value=timedelta(seconds=0), max_value=timedelta(days=40)),
)
ZONE_PAIRS = [
    (CHICAGO, CHICAGO),
    (NEW_YORK, NEW_YORK),
    (CHICAGO, NEW_YORK),  # ogsync formats for Chicago, the API reads as New York (EST reading)
    (NEW_YORK, CHICAGO),
]


@pytest.mark.parametrize(
    ("ours", "theirs"), ZONE_PAIRS, ids=lambda z: str(z).split("/")[-1] if z else ""
)
@settings(max_examples=300, deadline=None)
@given(watermark=instants, first=gaps, second=gaps)
def test_consecutive_incremental_runs_leave_no_gap(ours, theirs, watermark, first, second):
    run_1 = watermark + first
    plan_1 = plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=run_1)
    window_1 = only_window(plan_1)
    assert window_1.watermark_after == run_1

    run_2 = run_1 + second
    plan_2 = plan_endpoint(ORDERS, EndpointState(window_1.watermark_after), run_started_at=run_2)
    window_2 = only_window(plan_2)

    end_1 = server_read(window_params(ORDERS, window_1, ours)["updated_end"], theirs, end=True)
    start_2 = server_read(window_params(ORDERS, window_2, ours)["updated_start"], theirs, end=False)
    assert start_2 <= end_1


@settings(max_examples=300, deadline=None)
@given(watermark=instants, gap=gaps, tz=st.sampled_from([CHICAGO, NEW_YORK]))
def test_same_zone_reading_covers_watermark_minus_overlap_to_run_start(watermark, gap, tz):
    """Read in the zone we format for, the window covers [watermark - overlap, run start]."""
    run = watermark + gap
    window = only_window(plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=run))
    params = window_params(ORDERS, window, tz)
    assert server_read(params["updated_start"], tz, end=False) <= watermark - DEFAULT_OVERLAP
    assert server_read(params["updated_end"], tz, end=True) >= run


@settings(max_examples=300, deadline=None)
@given(watermark=instants, gap=gaps)
def test_est_reading_of_cst_bounds_still_starts_early_enough(watermark, gap):
    """The API reading our Chicago bounds as New York times reads them earlier, never later."""
    run = watermark + gap
    window = only_window(plan_endpoint(ORDERS, EndpointState(watermark), run_started_at=run))
    params = window_params(ORDERS, window, CHICAGO)
    assert server_read(params["updated_start"], NEW_YORK, end=False) <= watermark - DEFAULT_OVERLAP
    assert server_read(params["updated_end"], NEW_YORK, end=True) >= run - DEFAULT_OVERLAP


# -- checkpoints ------------------------------------------------------------------------------


def test_checkpoint_resumed_first_then_fresh_window_from_its_watermark():
    cp = Checkpoint(
        window_start=utc(2026, 6, 13, 16, 0, 0),
        window_end=utc(2026, 6, 14, 18, 0, 0),
        next_url="https://restapi.ordergroove.com/orders/?cursor=abc&updated_start=x",
        watermark_after=utc(2026, 6, 14, 17, 0, 0),
    )
    state = EndpointState(watermark=utc(2026, 6, 13, 17, 0, 0), checkpoint=cp)
    plan = plan_endpoint(ORDERS, state, run_started_at=RUN)
    assert plan.mode == Mode.INCREMENTAL
    assert plan.windows == (
        Window(cp.window_start, cp.window_end, cp.next_url, cp.watermark_after),
        Window(cp.watermark_after - DEFAULT_OVERLAP, RUN + DEFAULT_OVERLAP, None, RUN),
    )


def test_checkpoint_of_first_ever_window():
    cp = Checkpoint(None, utc(2026, 6, 14, 18, 0, 0), "https://x/orders/?cursor=c", CP_MARK)
    plan = plan_endpoint(ORDERS, EndpointState(checkpoint=cp), run_started_at=RUN)
    first, second = plan.windows
    assert first.start is None
    assert first.end == cp.window_end
    assert first.resume_url == cp.next_url
    assert first.watermark_after == CP_MARK
    assert second == Window(CP_MARK - DEFAULT_OVERLAP, RUN + DEFAULT_OVERLAP, None, RUN)


def test_checkpoint_without_watermark_after_keeps_state_watermark():
    watermark = utc(2026, 6, 10, 0, 0, 0)
    cp = Checkpoint(None, None, "https://x/orders/?cursor=c", None)
    plan = plan_endpoint(ORDERS, EndpointState(watermark, cp), run_started_at=RUN)
    first, second = plan.windows
    assert first == Window(None, None, cp.next_url, None)
    assert second.start == watermark - DEFAULT_OVERLAP


def test_checkpoint_with_custom_overlap():
    cp = Checkpoint(utc(2026, 6, 13, 0, 0, 0), utc(2026, 6, 14, 1, 0, 0), "https://x/?c=1", CP_MARK)
    overlap = timedelta(minutes=5)
    plan = plan_endpoint(ORDERS, EndpointState(checkpoint=cp), run_started_at=RUN, overlap=overlap)
    assert plan.windows[1].start == CP_MARK - overlap
    assert plan.windows[1].end == RUN + overlap


def test_resumed_window_params_are_its_own_bounds():
    cp = Checkpoint(utc(2026, 1, 10, 18, 0, 0), utc(2026, 1, 11, 19, 0, 0), "https://x/?c=1", None)
    window = plan_endpoint(ORDERS, EndpointState(checkpoint=cp), run_started_at=RUN).windows[0]
    assert window_params(ORDERS, window, CHICAGO) == {
        "updated_start": "2026-01-10T12:00:00",
        "updated_end": "2026-01-11T13:00:00",
    }


def test_checkpoint_ignored_by_full_refresh():
    cp = Checkpoint(utc(2026, 6, 13, 0, 0, 0), utc(2026, 6, 14, 1, 0, 0), "https://x/?c=1", CP_MARK)
    plan = plan_endpoint(
        ORDERS, EndpointState(checkpoint=cp), run_started_at=RUN, full_refresh=True
    )
    assert plan.mode == Mode.FULL_REFRESH
    assert only_window(plan).resume_url is None


# -- test windows -----------------------------------------------------------------------------


def test_since_until_is_a_test_window_leaving_watermark_alone():
    since, until = utc(2026, 6, 1, 0, 0, 0), utc(2026, 6, 2, 0, 0, 0)
    state = EndpointState(watermark=utc(2026, 6, 14, 0, 0, 0))
    plan = plan_endpoint(ORDERS, state, run_started_at=RUN, since=since, until=until)
    assert plan.mode == Mode.TEST_WINDOW
    assert not plan.resumable
    assert only_window(plan) == Window(since, until, None, None)
    assert window_params(ORDERS, only_window(plan), CHICAGO) == {
        "updated_start": "2026-05-31T19:00:00",
        "updated_end": "2026-06-01T19:00:00",
    }


def test_since_alone_ends_at_run_start():
    since = utc(2026, 6, 1, 0, 0, 0)
    plan = plan_endpoint(ORDERS, EndpointState(), run_started_at=RUN, since=since)
    assert plan.mode == Mode.TEST_WINDOW
    assert only_window(plan) == Window(since, RUN, None, None)


def test_until_alone_starts_at_beginning():
    until = utc(2026, 6, 1, 0, 0, 0)
    plan = plan_endpoint(ORDERS, EndpointState(), run_started_at=RUN, until=until)
    assert only_window(plan) == Window(None, until, None, None)


def test_test_window_has_no_overlap_and_ignores_checkpoint():
    since = utc(2026, 6, 1, 0, 0, 0)
    cp = Checkpoint(utc(2026, 5, 1, 0, 0, 0), utc(2026, 5, 2, 1, 0, 0), "https://x/?c=1", CP_MARK)
    plan = plan_endpoint(ORDERS, EndpointState(checkpoint=cp), run_started_at=RUN, since=since)
    assert only_window(plan).start == since
    assert only_window(plan).resume_url is None


def test_test_window_wins_over_full_refresh():
    since = utc(2026, 6, 1, 0, 0, 0)
    plan = plan_endpoint(
        ORDERS, EndpointState(), run_started_at=RUN, since=since, full_refresh=True
    )
    assert plan.mode == Mode.TEST_WINDOW
    assert only_window(plan).watermark_after is None


@pytest.mark.parametrize("ep", NOT_INCREMENTAL, ids=lambda e: e.name)
def test_test_window_on_non_incremental_endpoint_is_unbounded(ep):
    plan = plan_endpoint(ep, EndpointState(), run_started_at=RUN, since=utc(2026, 6, 1, 0, 0, 0))
    assert plan.mode == Mode.TEST_WINDOW
    assert only_window(plan) == Window(None, None, None, None)
    assert window_params(ep, only_window(plan), CHICAGO) == dict(ep.list_params)


# -- full refresh -----------------------------------------------------------------------------


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.name)
def test_full_refresh_flag_has_no_bounds(ep):
    state = EndpointState(watermark=utc(2026, 6, 14, 0, 0, 0))
    plan = plan_endpoint(ep, state, run_started_at=RUN, full_refresh=True)
    assert plan.mode == Mode.FULL_REFRESH
    assert not plan.resumable
    assert only_window(plan) == Window(None, None, None, RUN)
    assert window_params(ep, only_window(plan), CHICAGO) == dict(ep.list_params)


@pytest.mark.parametrize("ep", NOT_INCREMENTAL, ids=lambda e: e.name)
def test_non_incremental_endpoint_is_always_full_refresh(ep):
    plan = plan_endpoint(ep, EndpointState(watermark=utc(2026, 6, 14, 0, 0, 0)), run_started_at=RUN)
    assert plan.mode == Mode.FULL_REFRESH
    assert only_window(plan) == Window(None, None, None, RUN)


# -- plan_run ---------------------------------------------------------------------------------


def test_plan_run_orders_by_last_records_descending():
    states = {
        "customers": EndpointState(last_records=10),
        "orders": EndpointState(last_records=5000),
        "items": EndpointState(last_records=12000),
        "addresses": EndpointState(last_records=0),
    }
    plans = plan_run(ENDPOINTS, states, run_started_at=RUN)
    names = [p.endpoint.name for p in plans]
    assert names[:3] == ["items", "orders", "customers"]
    # Ties (and endpoints without state) keep table order.
    assert names[3:] == [
        "subscriptions",
        "addresses",
        "payments",
        "products",
        "offer_profiles",
        "one_time_incentives",
    ]


def test_a_first_run_starts_the_endpoints_the_data_model_makes_largest():
    """With no earlier counts, items (one or more an order), then orders (one a subscription
    each cycle), then subscriptions; the rest in table order. An endpoint with a count goes
    before those without."""
    names = [p.endpoint.name for p in plan_run(ENDPOINTS, {}, run_started_at=RUN)]
    assert names == [
        "items",
        "orders",
        "subscriptions",
        "customers",
        "addresses",
        "payments",
        "products",
        "offer_profiles",
        "one_time_incentives",
    ]
    counted = {"payments": EndpointState(last_records=1)}
    names = [p.endpoint.name for p in plan_run(ENDPOINTS, counted, run_started_at=RUN)]
    assert names[:4] == ["payments", "items", "orders", "subscriptions"]


def test_plan_run_uses_each_endpoints_state_and_passes_options():
    watermark = utc(2026, 6, 14, 0, 0, 0)
    states = {"orders": EndpointState(watermark=watermark)}
    overlap = timedelta(minutes=10)
    plans = {
        p.endpoint.name: p
        for p in plan_run(
            [ORDERS, ITEMS, BY_NAME["products"]], states, run_started_at=RUN, overlap=overlap
        )
    }
    assert only_window(plans["orders"]).start == watermark - overlap
    assert only_window(plans["items"]).start is None
    assert plans["products"].mode == Mode.FULL_REFRESH


def test_plan_run_since_and_full_refresh_apply_to_all():
    since = utc(2026, 6, 1, 0, 0, 0)
    plans = plan_run(ENDPOINTS, {}, run_started_at=RUN, since=since)
    assert {p.mode for p in plans} == {Mode.TEST_WINDOW}
    plans = plan_run(ENDPOINTS, {}, run_started_at=RUN, full_refresh=True)
    assert {p.mode for p in plans} == {Mode.FULL_REFRESH}


def test_plan_run_empty():
    assert plan_run([], {}, run_started_at=RUN) == []


# -- backfill windows ----------------------------------------------------------------------

CHICAGO = ZoneInfo("America/Chicago")


def test_monthly_windows_follow_the_api_calendar_and_leave_no_gap():
    start = datetime(2025, 1, 15, tzinfo=UTC)
    end = datetime(2025, 12, 31, 23, tzinfo=UTC)
    windows = backfill_windows(start, end, WindowSize.MONTH, CHICAGO)
    assert windows[0][0] == datetime(2025, 1, 1, 6, tzinfo=UTC)  # midnight in Chicago (CST)
    assert windows[3][0] == datetime(2025, 4, 1, 5, tzinfo=UTC)  # midnight in CDT
    for (_, previous_end), (next_start, _) in pairwise(windows):
        assert next_start - previous_end == timedelta(seconds=1)
    assert windows[-1][1] == end


@given(
    start=st.datetimes(datetime(2019, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    days=st.integers(1, 900),
    size=st.sampled_from(list(WindowSize)),
)
def test_backfill_windows_cover_the_range_exactly(start, days, size):
    end = start + timedelta(days=days)
    windows = backfill_windows(start, end, size, CHICAGO)
    assert windows[0][0] <= start and windows[-1][1] == end
    assert all(a < b for a, b in windows)
    for (_, previous_end), (next_start, _) in pairwise(windows):
        assert next_start - previous_end == timedelta(seconds=1)


def test_unclipped_windows_end_with_their_calendar_period():
    now = datetime(2025, 6, 10, 12, tzinfo=UTC)
    windows = backfill_windows(datetime(2025, 5, 1, tzinfo=UTC), now, WindowSize.MONTH, CHICAGO,
                               clip=False)  # fmt: skip
    assert windows[-1][1] == datetime(2025, 7, 1, 5, tzinfo=UTC) - timedelta(seconds=1)


def test_split_halves_a_window_down_to_the_floor():
    w = Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 31, tzinfo=UTC),
               watermark_after=datetime(2025, 2, 1, tzinfo=UTC))  # fmt: skip
    left, right = split_window(w, timedelta(days=1))
    assert left.start == w.start and right.end == w.end
    assert right.start - left.end == timedelta(seconds=1)
    assert left.watermark_after is None and right.watermark_after == w.watermark_after
    assert split_window(Window(w.start, w.start + timedelta(hours=3)), timedelta(hours=2)) is None
    assert split_window(Window(None, None), timedelta(hours=1)) is None


def test_plan_backfill_skips_done_windows_resumes_the_half_done_and_hands_over():
    windows = [(datetime(2025, m, 1, tzinfo=UTC), datetime(2025, m, 28, tzinfo=UTC))
               for m in (1, 2, 3)]  # fmt: skip
    progress = {windows[0]: None, windows[1]: "https://api/orders/?cursor=abc"}
    now = datetime(2025, 4, 1, tzinfo=UTC)
    plan = plan_backfill(BY_NAME["orders"], windows, progress, run_started_at=now,
                         reaches_now=True)  # fmt: skip
    assert [(w.start, w.end) for w in plan.windows] == windows[1:]
    assert plan.windows[0].resume_url == "https://api/orders/?cursor=abc"
    assert plan.windows[0].watermark_after is None and plan.windows[-1].watermark_after == now
    bounded = plan_backfill(BY_NAME["orders"], windows, {}, run_started_at=now,
                            reaches_now=False)  # fmt: skip
    assert all(w.watermark_after is None for w in bounded.windows)
    refresh = plan_backfill(BY_NAME["payments"], windows, {}, run_started_at=now,
                            reaches_now=True)  # fmt: skip
    assert refresh.mode.value == "full_refresh"
