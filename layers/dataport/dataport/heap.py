"""The garbage collector during a long task: the objects alive when it starts are left out.

CPython's cyclic collector scans every tracked object in a full (oldest-generation) collection,
and a task that streams records creates enough surviving objects to set one off every few
hundred thousand: each then walks the whole runtime too (modules, boto3's service models,
pydantic's schemas, pymongo's pools; on the local stack also moto and the other in-process
Lambdas, about 700,000 objects and 0.4 s a collection). None of that is the task's garbage.
`frozen_runtime` moves everything alive at the task's start into the collector's permanent
generation (`gc.freeze`, which exists for this) and puts it back when the task ends
(`gc.unfreeze`), so that a collection during the task scans only what the task made. Cyclic
garbage the task makes is still collected; what was alive before it is collected after it.
Young collections come every TASK_YOUNG_THRESHOLD allocations while a task runs, not every
700: each walks the records still alive in the batch being built.

Measured on the 30 MB import (docs/performance.md, "Session 8"): the collector stopped the
import's threads for 0.9-1.0 s (two full collections, 0.78-0.86 s); with this, 0.02-0.05 s.

Tasks that run at once in one process (the local stack's in-process Lambdas) share the freeze:
the last to end unfreezes. A freeze only changes what a collection looks at, never what is
freed by reference counting, so any overlap of tasks is safe.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

#: allocations between two young collections during a task (CPython's default is 700): a
#: streaming task keeps a batch of records alive, which each young collection would walk again
TASK_YOUNG_THRESHOLD = 10_000

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _Freeze:
    """How many tasks of this process are inside `frozen_runtime`: the last out unfreezes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._thresholds = gc.get_threshold()

    def enter(self) -> None:
        with self._lock:
            if self._running == 0:
                self._thresholds = gc.get_threshold()
                gc.set_threshold(TASK_YOUNG_THRESHOLD, *self._thresholds[1:])
            self._running += 1
            gc.freeze()  # cheap: the generations' lists are spliced, nothing is walked

    def leave(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                gc.unfreeze()
                gc.set_threshold(*self._thresholds)


_FREEZE = _Freeze()


@contextmanager
def frozen_runtime() -> Iterator[None]:
    """The block runs with every object alive at its start out of the collector's scans."""
    _FREEZE.enter()
    try:
        yield
    finally:
        _FREEZE.leave()


def freezes_runtime(task: Callable[_P, _R]) -> Callable[_P, _R]:
    """A task (a Lambda handler; a benchmark's raw pipeline) run inside `frozen_runtime`."""

    @functools.wraps(task)
    def frozen(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with frozen_runtime():
            return task(*args, **kwargs)

    return frozen
