"""The progress throttle: at most two progress events a second per job, however many workers.

A job's workers run in many Lambda invocations at once, so no process can keep the time of the
last event: the job row does. `progress_sent_at` (epoch ms) and `progress_seq` move together in
one conditional UpdateItem, which both grants the right to publish and hands out the next seq:

    SET progress_sent_at = :now ADD progress_seq :1
    IF status = running AND progress_sent_at <= :now - 500

The loser of a race (or a caller within 500 ms of the last event) gets ConditionalCheckFailed and
publishes nothing: one cheap write. The writes are the job store's (JobStore.claim_progress,
claim_terminal); the rule is here. The terminal event takes its seq unconditionally, so it is
never throttled, and being conditional on `running`, no progress event can be claimed after it.

`Cadence` is a per-process pre-check on top, for callers that would otherwise try on every
message written: it spaces this process's tries 500 ms apart, which keeps the writes cheap and
loses nothing (a try it skips could at best have published a few ms earlier).
"""

from __future__ import annotations

import time

from dataport.jobs.store import JobStore
from dataport.models.jobs import Job, Progress

#: at most two progress events a second per job
MIN_INTERVAL_MS = 500
#: a worker that advances reports at least this often (it reports every MIN_INTERVAL_MS it can)
MAX_INTERVAL_MS = 2000


def now_ms() -> int:
    """Wall-clock epoch milliseconds: the one clock the row, `at` and `Cadence` share."""
    return time.time_ns() // 1_000_000


def claim_progress(job_id: str, at_ms: int, progress: Progress | None = None) -> int | None:
    """The next seq if a progress event may be published at `at_ms`, else None (throttled, or
    the job is not running). With `progress`, it is recorded on the job row as well, by the
    same write when the claim succeeds."""
    return JobStore().claim_progress(job_id, at_ms, MIN_INTERVAL_MS, progress=progress)


def refused(job: Job, at_ms: int) -> bool:
    """True when `job`, as read, already shows an event less than MIN_INTERVAL_MS before
    `at_ms`: the row (whose value can only be the same or later) would refuse the claim, so
    a caller can skip that write. False says nothing: the row decides."""
    return job.progress_sent_at is not None and at_ms - job.progress_sent_at < MIN_INTERVAL_MS


def claim_terminal(job_id: str, at_ms: int) -> int:
    """The seq of the job's terminal event: never throttled (the caller made the one transition
    that ended the job, so this happens once)."""
    return JobStore().claim_terminal(job_id, at_ms)


class Cadence:
    """When this process last tried to claim: `due()` is True at most every MIN_INTERVAL_MS.

    Only an optimisation, the row decides. A worker that calls `due()` after every message and
    session tries about twice a second while it advances, so some event goes out well within
    MAX_INTERVAL_MS.
    """

    def __init__(self, interval_ms: int = MIN_INTERVAL_MS) -> None:
        self.interval_ms = interval_ms
        self._last: int | None = None

    def due(self) -> bool:
        now = now_ms()
        if self._last is not None and now - self._last < self.interval_ms:
            return False
        self._last = now
        return True
