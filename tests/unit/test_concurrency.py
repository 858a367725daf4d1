"""Worker slots: granted in plan order, one at first, widened by pages the API was slow on."""

from __future__ import annotations

import threading
import time

import pytest

from ogsync.concurrency import Widening, WorkerSlots, timed

SLOW, FAST = 0.050, 0.001


def _start(slots: WorkerSlots, turn: int, started: list[int]) -> threading.Thread:
    def run() -> None:
        slots.acquire(turn)
        started.append(turn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_one_slot_at_first_then_the_next_turn_when_it_is_released():
    slots = WorkerSlots(5)
    started: list[int] = []
    first, second = _start(slots, 0, started), _start(slots, 1, started)
    first.join(1)
    second.join(0.2)
    assert started == [0] and second.is_alive()
    slots.release()
    second.join(1)
    assert started == [0, 1] and slots.peak == 1


def test_turns_start_in_plan_order_even_with_slots_free():
    slots = WorkerSlots(3, widening=Widening(slow_page=0.010, in_a_row=1))
    slots.page_waited(SLOW)
    slots.page_waited(SLOW)
    assert slots.open == 3
    started: list[int] = []
    later = _start(slots, 1, started)
    later.join(0.2)
    assert started == [] and later.is_alive()  # turn 0 has not started yet
    _start(slots, 0, started).join(1)
    later.join(1)
    assert started == [0, 1] and slots.peak == 2


def test_slow_pages_in_a_row_open_one_more_slot_up_to_the_maximum():
    slots = WorkerSlots(3, widening=Widening(slow_page=0.010, in_a_row=3))
    for _ in range(2):
        slots.page_waited(SLOW)
    assert slots.open == 1
    slots.page_waited(SLOW)
    assert slots.open == 2
    for _ in range(30):
        slots.page_waited(SLOW)
    assert slots.open == 3  # never beyond the maximum


def test_a_fast_page_breaks_the_streak():
    slots = WorkerSlots(5, widening=Widening(slow_page=0.010, in_a_row=3))
    for _ in range(10):
        slots.page_waited(SLOW)
        slots.page_waited(SLOW)
        slots.page_waited(FAST)
    assert slots.open == 1


def test_widening_lets_a_waiting_turn_start():
    slots = WorkerSlots(2, widening=Widening(slow_page=0.010, in_a_row=1))
    started: list[int] = []
    _start(slots, 0, started).join(1)
    waiting = _start(slots, 1, started)
    waiting.join(0.2)
    assert waiting.is_alive()
    slots.page_waited(SLOW)  # the running worker waited on the API
    waiting.join(1)
    assert started == [0, 1] and slots.peak == 2


def test_timed_reports_how_long_each_page_was_waited_for():
    waits: list[float] = []

    class Recorder(WorkerSlots):
        def page_waited(self, seconds: float) -> None:
            waits.append(seconds)

    def pages():
        for delay in (0.06, 0.0, 0.03):
            time.sleep(delay)
            yield delay

    got = []
    for page in timed(pages(), Recorder(1)):
        got.append(page)
        time.sleep(0.04)  # working on a page is not waiting for the next
    assert got == [0.06, 0.0, 0.03]
    assert waits[0] >= 0.06 and waits[1] < 0.03 and 0.03 <= waits[2] < 0.07


def test_no_slots_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        WorkerSlots(0)
