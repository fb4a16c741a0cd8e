"""The progress throttle against (moto) DynamoDB: the job row, not a process, decides who may
publish and hands out seq; and the per-process Cadence only skips claims the row would refuse."""

from __future__ import annotations

import pytest

from dataport.jobs.store import JobStore
from dataport.models.exports import ExportRequest
from dataport.models.jobs import ExportState
from dataport.progress import throttle
from dataport.progress.throttle import (
    MIN_INTERVAL_MS,
    Cadence,
    claim_progress,
    claim_terminal,
)

USER = "66ad9b005f2b4a0012c0aaaa"
T0 = 1_750_000_000_000  # epoch ms


@pytest.fixture
def store(job_store: JobStore) -> JobStore:
    return job_store


def _running(store: JobStore) -> str:
    job = store.create(USER, ExportState(request=ExportRequest()))
    store.start(job.job_id)
    return job.job_id


def test_at_most_one_progress_event_per_half_second(store: JobStore) -> None:
    job_id = _running(store)
    assert claim_progress(job_id, T0) == 1
    assert claim_progress(job_id, T0 + 1) is None
    assert claim_progress(job_id, T0 + MIN_INTERVAL_MS - 1) is None
    assert claim_progress(job_id, T0 + MIN_INTERVAL_MS) == 2
    assert claim_progress(job_id, T0 + 3 * MIN_INTERVAL_MS) == 3
    job = store.require(job_id)
    assert (job.progress_seq, job.progress_sent_at) == (3, T0 + 3 * MIN_INTERVAL_MS)


def test_workers_claiming_at_the_same_instant_get_one_claim_between_them(
        store: JobStore) -> None:
    """Eight invocations at the same instant: exactly one publishes, with the next seq. (Made
    one after another: DynamoDB applies conditional writes atomically, moto does not under
    threads, so a threaded race here would test moto.)"""
    job_id = _running(store)
    claim_progress(job_id, T0)
    results = [claim_progress(job_id, T0 + MIN_INTERVAL_MS) for _ in range(8)]
    assert results == [2] + [None] * 7


def test_only_a_running_job_publishes_progress(store: JobStore) -> None:
    queued = store.create(USER, ExportState(request=ExportRequest()))
    assert claim_progress(queued.job_id, T0) is None
    assert claim_progress("f" * 32, T0) is None  # no job: no event, and no row created
    assert store.find("f" * 32) is None


def test_the_terminal_event_is_never_throttled_and_nothing_follows_it(store: JobStore) -> None:
    job_id = _running(store)
    assert claim_progress(job_id, T0) == 1
    store.cancel(job_id)
    assert claim_terminal(job_id, T0 + 1) == 2  # 1 ms after a progress event
    assert claim_progress(job_id, T0 + 10 * MIN_INTERVAL_MS) is None  # a late worker
    assert store.require(job_id).progress_seq == 2


def test_seq_survives_a_change_of_invocation(store: JobStore) -> None:
    """The next invocation (another process) continues the sequence: it lives in the row."""
    job_id = _running(store)
    seqs = [claim_progress(job_id, T0 + i * MIN_INTERVAL_MS) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert store.require(job_id).progress_seq == 5


def test_cadence_only_lets_a_try_through_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [T0]
    monkeypatch.setattr(throttle, "now_ms", lambda: clock[0])
    cadence = Cadence()
    assert cadence.due()  # the first try goes at once
    clock[0] += MIN_INTERVAL_MS - 1
    assert not cadence.due()
    clock[0] += 1
    assert cadence.due()
    assert not cadence.due()
    clock[0] += 5 * MIN_INTERVAL_MS  # a long session: the next chance comes at once
    assert cadence.due()
