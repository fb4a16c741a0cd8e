"""What one export worker invocation reports while its page loop runs: `ShardReporter`.

The loop calls it after every message (`heartbeat`) and every session (`session_written`);
those calls only keep counts and read a monotonic clock. Half a second into the invocation, then
at most once a second (FLUSH_INTERVAL_MS), and once more at the end (`close`), the reporter
flushes, which is the only time the loop touches the control plane:

1. the job row and every shard row in one consistent Query: the job's status is the cancel check
   (JobCancelled when the job is no longer running: the loop stops within about a second), the
   other shards' rows and this invocation's own counts sum to the job's progress;
2. the shard's counts into its row (PutItem: SET, so a retried invocation never double counts;
   the job's `expires_at` comes from the job the invocation read at its start, no read first),
   when other shards' workers read it (a one-shard job's row is written by the closing report
   alone, in the same request as the invocation's file records);
3. that progress to the row and, when the job-wide throttle (throttle.py: at most two events a
   second per job) grants it, out to the subscribers, in one conditional write
   (`publish_progress(record=True)`); when the row just read says the last event is less than
   500 ms old, the claim would be refused, so the progress is written alone (throttle.refused).

A worker that advances therefore reports about once a second, within the "at least one event every
two seconds" of docs/progress.md, and writes at most three job-table items a second however fast
it writes sessions. When the control plane is slow (a flush of more than ~100 ms: a loaded
endpoint), flushes space out so that they take about a tenth of the loop, never more than two
seconds apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from dataport.errors import JobCancelled
from dataport.jobs.keys import PLAN_SHARD, shard_sk
from dataport.jobs.store import JobStore, require_running
from dataport.models.jobs import Job, Progress
from dataport.progress.publisher import publish_progress

#: the most often one worker invocation writes progress (and checks for a cancel)
FLUSH_INTERVAL_MS = 1000
#: after a flush that took t seconds the next waits at least this many times t (flushes take at
#: most about a tenth of the loop), and comes at most MAX_FLUSH_GAP_S after the last one began
FLUSH_COST_FACTOR = 9
MAX_FLUSH_GAP_S = 2.0


class ShardReporter:
    """Reports one worker invocation of shard `shard` of `job` (as read at the invocation's
    start). `bytes_written()` is what the invocation wrote so far (uncompressed); the shard's
    earlier invocations' `bytes_before` are added to it."""

    def __init__(self, store: JobStore, job: Job, shard: int, *, sessions: int, messages: int,
                 bytes_before: int, bytes_written: Callable[[], int],
                 interval_ms: int = FLUSH_INTERVAL_MS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._job = job
        self._shard = shard
        self._sessions = sessions
        self._messages = messages
        self._bytes_before = bytes_before
        self._bytes_written = bytes_written
        self._interval = interval_ms / 1000
        self._clock = clock
        # the first flush comes after half an interval: a subscriber hears from a new invocation
        # soon, and its closing flush (the invocation may last only a second or two) is far
        # enough from it for the job-wide throttle to let that one out too
        self._due = clock() + self._interval / 2
        self.flushes = 0

    @property
    def job(self) -> Job:
        """The job as the last flush read it."""
        return self._job

    def heartbeat(self) -> None:
        """Work advanced (a message was written): flush if a second has passed."""
        if self._clock() >= self._due:
            self.flush()

    def session_written(self, *, sessions: int, messages: int) -> None:
        """The shard's counts after a whole session (not added: the shard's totals)."""
        self._sessions = sessions
        self._messages = messages
        if self._clock() >= self._due:
            self.flush()

    def close(self, *, sessions: int, messages: int, bytes_total: int, seq: int,
              store: Callable[[Mapping[str, Any]], None]) -> Job:
        """The invocation's last report, always written: the counts the shard ends this
        invocation with (finalize sums them). The job is read first (JobCancelled if it stopped
        running: nothing is stored), then `store(shard_state)` writes the shard's row, with
        whatever the caller stores in the same request (the invocation's file records), then
        the progress goes out: three calls, where a flush and a separate write took four.
        The row ends with `seq`, the shard's next file number: the finalizer keeps the shard's
        file records up to it (JobStore.for_packaging)."""
        self._sessions = sessions
        self._messages = messages
        return self._report(bytes_total, lambda state: store({**state, "seq": seq}))

    def flush(self) -> Job:
        """Read the job, write the counts, publish (see the module's docstring)."""
        return self._report(self._bytes_before + self._bytes_written(), None)

    def _report(self, written: int, store: Callable[[Mapping[str, Any]], None] | None) -> Job:
        started = self._clock()
        self._due = started + self._interval
        self.flushes += 1
        try:
            return self._flush_once(written, store)
        finally:
            self._slow_down(started)

    def _slow_down(self, started: float) -> None:
        """A slow control plane (a loaded DynamoDB endpoint: a flush of 250 ms instead of 15)
        must not take a quarter of the loop: the next flush waits FLUSH_COST_FACTOR times this
        one's duration, but never so long that subscribers go MAX_FLUSH_GAP_S without one."""
        ended = self._clock()
        spent = ended - started
        self._due = max(self._due, min(ended + FLUSH_COST_FACTOR * spent,
                                       started + MAX_FLUSH_GAP_S))

    def _flush_once(self, written: int,
                    store: Callable[[Mapping[str, Any]], None] | None) -> Job:
        job_id = self._job.job_id
        job, shards = self._store.job_and_shards(job_id)
        if job is None:
            raise JobCancelled(f"Job {job_id} no longer exists; stopping.")
        require_running(job)
        self._job = job
        state = {"sessions": self._sessions, "messages": self._messages, "bytes": written}
        others = [s for s in shards if s["sk"] != shard_sk(self._shard)]
        if store is not None:
            store(state)
        elif any(s["sk"] != shard_sk(PLAN_SHARD) for s in others):
            # other workers sum this row into the progress they send; with no other shard,
            # nobody reads it before the closing report writes it
            self._store.put_shard(job_id, self._shard, state, expires_at=self._job.expires_at)
        progress: Progress = job.progress.model_copy(update={
            "current": self._sessions + sum(int(s["sessions"]) for s in others),
            "bytes": written + sum(int(s["bytes"]) for s in others)})
        publish_progress(job, progress, record=True)
        return job
