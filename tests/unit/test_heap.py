"""dataport.heap: a long task's collections leave out what was alive before it, and everything
is as it was once the last task has ended."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator

import pytest

from dataport.heap import TASK_YOUNG_THRESHOLD, freezes_runtime, frozen_runtime


class _Node:
    """A container the collector tracks, able to be part of a cycle."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> tuple[_Node, weakref.ref[_Node]]:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    return first, weakref.ref(first)


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """No task of this process runs (a local stack's execution of an earlier test may still be
    ending in its threads): the freeze is the process's."""
    deadline = time.monotonic() + 30
    while gc.get_freeze_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gc.get_freeze_count() == 0, "a task of this process is still running"
    thresholds = gc.get_threshold()
    yield
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


def test_what_was_alive_before_the_task_is_frozen_and_put_back_after() -> None:
    before = _Node()
    thresholds = gc.get_threshold()
    with frozen_runtime():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (TASK_YOUNG_THRESHOLD, *thresholds[1:])
        assert all(obj is not before for obj in gc.get_objects())  # out of every generation
    assert gc.get_freeze_count() == 0
    assert any(obj is before for obj in gc.get_objects())


def test_cyclic_garbage_the_task_makes_is_collected_during_it() -> None:
    with frozen_runtime():
        node, alive = _cycle()
        del node
        gc.collect()
        assert alive() is None


def test_cyclic_garbage_of_what_was_frozen_is_collected_after_the_task() -> None:
    node, alive = _cycle()
    with frozen_runtime():
        del node  # garbage now, but frozen: no collection of the task looks at it
        gc.collect()
        assert alive() is not None
    gc.collect()
    assert alive() is None


def test_overlapping_tasks_share_the_freeze_and_the_last_to_end_puts_it_back() -> None:
    inner_entered, inner_may_leave, inner_left = (threading.Event() for _ in range(3))

    def other_task() -> None:
        with frozen_runtime():
            inner_entered.set()
            inner_may_leave.wait(5)
        inner_left.set()

    with frozen_runtime():
        thread = threading.Thread(target=other_task)
        thread.start()
        assert inner_entered.wait(5)
        inner_may_leave.set()
        assert inner_left.wait(5)
        thread.join(5)
        assert gc.get_freeze_count() > 0  # the other task ended; this one still runs
        assert gc.get_threshold()[0] == TASK_YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0


def test_a_task_that_raises_still_puts_everything_back() -> None:
    @freezes_runtime
    def task(value: int) -> int:
        assert gc.get_freeze_count() > 0
        if value < 0:
            raise ValueError("refused")
        return value * 2

    assert task(21) == 42
    with pytest.raises(ValueError, match="refused"):
        task(-1)
