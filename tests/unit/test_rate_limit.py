"""The rate limit's counter in (moto) DynamoDB: one conditional write counts and refuses;
a refund gives one back, never below zero."""

from __future__ import annotations

import pytest

from dataport.errors import RateLimited
from dataport.jobs import rate_limit
from dataport.jobs.store import JobStore

USER = "66ad9b005f2b4a0012c0aaaa"
NOW = 1_750_003_800.0  # 10 minutes into a clock hour
HOUR = 3600


def consume(limit: int = 2, now: float = NOW) -> rate_limit.RateLimitState:
    return rate_limit.consume(USER, "export", limit, HOUR, now=now)


def test_the_limit_refuses_with_when_to_retry_and_a_new_window_counts_afresh(
        job_store: JobStore) -> None:
    assert [consume().remaining for _ in range(2)] == [1, 0]
    with pytest.raises(RateLimited) as refused:
        consume()
    window_end = NOW - NOW % HOUR + HOUR
    assert refused.value.retry_after == int(window_end - NOW)
    assert consume(now=window_end).remaining == 1


def test_a_refund_gives_one_back_and_never_goes_below_zero(job_store: JobStore) -> None:
    first = consume()
    consume()
    rate_limit.refund(first)
    assert consume().remaining == 0  # the refunded place was taken again
    for _ in range(4):
        rate_limit.refund(first)
    assert [consume().remaining for _ in range(2)] == [1, 0]  # not a single place more
    with pytest.raises(RateLimited):
        consume()
