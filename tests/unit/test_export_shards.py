"""Export shards sized by work (workflows/shards.py): enough shards that every worker has a
useful share, never more than the Map runs at once unless a shard would grow past its bound,
never an empty one, and keyset bounds that hold every session exactly once."""

from __future__ import annotations

import random
import uuid
from itertools import pairwise

import pytest

from dataport.workflows.shards import Bounds, ShardSizing, cut

DEFAULTS = ShardSizing()


def _sessions(count: int, seed: int = 7, most: int = 120) -> list[tuple[str, int]]:
    generator = random.Random(seed)
    ids = sorted(str(uuid.UUID(int=generator.getrandbits(128))) for _ in range(count))
    return [(session_id, generator.randint(0, most)) for session_id in ids]


def _plan(sessions: list[tuple[str, int]], sizing: ShardSizing = DEFAULTS) -> list[Bounds]:
    messages = sum(m for _, m in sessions)
    count = sizing.count(len(sessions), messages)
    work = len(sessions) * sizing.messages_per_session + messages
    return list(cut(iter(sessions), count=count, work=work, sizing=sizing))


def _members(bounds: Bounds, keys: list[str]) -> list[str]:
    return [k for k in keys if (bounds.after is None or k > bounds.after)
            and (bounds.upto is None or k <= bounds.upto)]


def _assert_partition(shards: list[Bounds], sessions: list[tuple[str, int]]) -> None:
    keys = [k for k, _ in sessions]
    held = [_members(bounds, keys) for bounds in shards]
    assert all(held), "an empty shard"
    assert [k for shard in held for k in shard] == keys  # each exactly once, in order
    assert shards[0].after is None
    assert shards[-1].upto is None
    for left, right in pairwise(shards):
        assert left.upto == right.after


def test_a_2000_session_export_runs_on_8_workers() -> None:
    sessions = _sessions(2000)
    shards = _plan(sessions)
    assert len(shards) == 8
    _assert_partition(sessions=sessions, shards=shards)
    sizes = [len(_members(b, [k for k, _ in sessions])) for b in shards]
    assert min(sizes) > 150  # a useful share each (about 250)


def test_an_empty_export_has_one_shard_that_holds_everything() -> None:
    assert DEFAULTS.count(0, 0) == 1
    assert _plan([]) == [Bounds(None, None)]


@pytest.mark.parametrize("count", [1, 2, 3, 249, 250, 251, 500, 1999, 2000, 5000, 10_000])
def test_bounds_cover_every_session_exactly_once(count: int) -> None:
    sessions = _sessions(count, seed=count)
    shards = _plan(sessions)
    _assert_partition(shards, sessions)
    assert 1 <= len(shards) <= min(count, DEFAULTS.concurrency)


def test_an_exact_multiple_of_the_share_adds_no_empty_shard() -> None:
    sessions = [(f"s{i:04d}", 0) for i in range(2000)]  # equal weights: cuts land exactly
    shards = _plan(sessions)
    assert len(shards) == 8
    _assert_partition(shards, sessions)


def test_small_exports_get_fewer_workers_and_messages_count_as_work() -> None:
    assert DEFAULTS.count(10, 100) == 1
    assert DEFAULTS.count(300, 0) == 2
    assert DEFAULTS.count(10, 100_000) == 5  # few sessions, many messages: 101,000 / 25,000
    assert DEFAULTS.count(3, 10**7) == 3  # never more shards than sessions


def test_huge_exports_get_more_shards_than_workers_each_bounded() -> None:
    sessions, messages = 20_000_000, 10**9
    count = DEFAULTS.count(sessions, messages)
    work = sessions * DEFAULTS.messages_per_session + messages
    assert count > DEFAULTS.concurrency
    assert work / count <= DEFAULTS.limit * DEFAULTS.messages_per_session


def test_one_heavy_session_never_leaves_an_empty_shard() -> None:
    sessions = [("a", 0), ("b", 10**6), ("c", 0), ("d", 0)]
    shards = _plan(sessions, ShardSizing(target=1, concurrency=4))
    _assert_partition(shards, sessions)


def test_fewer_sessions_than_counted_cut_fewer_shards() -> None:
    sessions = _sessions(10)
    shards = list(cut(iter(sessions), count=8, work=10**9, sizing=DEFAULTS))
    _assert_partition(shards, sessions)
