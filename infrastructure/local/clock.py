"""The local stack's clock: the time its EventBridge rules fire at and its REST gateway stamps
requests with (`requestContext.requestTimeEpoch`), which a test can set and advance instead of
sleeping for real minutes.

It follows the real time until `set()` freezes it; then it moves only with `advance()`, which
fires every `Type: Schedule` rule of the template at each of its ticks on the way (rate rules
tick on multiples of their rate since the epoch, as a whole-minute rule does on AWS), each an
in-process invocation of the function with the event EventBridge sends. Only the rules' event
time and the request time move: JWT expiry, TTLs and job timestamps keep the real time.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from infrastructure.local.template import Function

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fired:
    """One rule invocation the clock made: when, which function, its answer or its error."""

    at: datetime
    function: str  # logical id
    rule: str
    result: Any = None
    error: BaseException | None = None


class LocalClock:
    def __init__(self, functions: dict[str, Function], invoke: Callable[[str, Any], Any],
                 region: str, account_id: str, stack_name: str) -> None:
        self._rules = [(function, rule) for function in functions.values()
                       for rule in function.schedule_events if rule.enabled]
        self._invoke = invoke
        self._region, self._account, self._stack = region, account_id, stack_name
        self._frozen: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._frozen if self._frozen is not None else datetime.now(UTC)

    def set(self, instant: datetime) -> None:
        """Stand still at `instant` (aware); no rule fires for the jump."""
        if instant.tzinfo is None:
            raise ValueError("the clock takes aware datetimes")
        with self._lock:
            self._frozen = instant.astimezone(UTC)

    def release(self) -> None:
        """Follow the real time again (reset() does this)."""
        with self._lock:
            self._frozen = None

    def advance(self, by: timedelta, *, tick: timedelta | None = None) -> list[Fired]:
        """Move forward by `by`, firing every rule at each of its ticks in (now, now + by], in
        time order (functions of one tick in template order). `tick` makes every rule fire no
        more often than that, to cross days quickly; a scheduled run then fires up to `tick`
        after its due time, as after a short outage."""
        start = self.now()
        end = start + by
        fired: list[Fired] = []
        for at, function, rule in self._ticks(start, end, tick):
            self.set(at)
            fired.append(self.fire(function, at, rule))
        self.set(end)
        return fired

    def follow(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Fire the rules as the real time passes their ticks, until `stop` is set (`make
        local`: schedules and the retention sweep run as they would on AWS). The clock must
        not be frozen meanwhile."""
        last = self.now()
        while not stop.wait(poll_s):
            now = self.now()
            for at, function, rule in self._ticks(last, now, None):
                self.fire(function, at, rule)
            last = now

    def fire(self, function: str, at: datetime | None = None, rule: str = "manual") -> Fired:
        """Invoke `function` as its rule would at `at` (default: now), not moving the clock."""
        at = at or self.now()
        event = {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": self._account,
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": self._region,
            "resources": [f"arn:aws:events:{self._region}:{self._account}:rule/"
                          f"{self._stack}-{function}{rule}"],
            "detail": {}}
        try:
            return Fired(at, function, rule, result=self._invoke(function, event))
        except Exception as error:  # EventBridge would retry; the test sees it
            LOG.warning("%s at %s failed: %s", function, at.isoformat(), error)
            return Fired(at, function, rule, error=error)

    def _ticks(self, start: datetime, end: datetime,
               tick: timedelta | None) -> list[tuple[datetime, str, str]]:
        ticks = []
        for function, rule in self._rules:
            every = max(rule.every_s, int(tick.total_seconds())) if tick else rule.every_s
            first = (int(start.timestamp()) // every + 1) * every
            for epoch in range(first, int(end.timestamp()) + 1, every):
                ticks.append((datetime.fromtimestamp(epoch, UTC), function.logical_id,
                              rule.name))
        order = {f.logical_id: i for i, (f, _) in enumerate(self._rules)}
        return sorted(ticks, key=lambda t: (t[0], order[t[1]]))
