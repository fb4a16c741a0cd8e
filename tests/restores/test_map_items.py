"""The restore Map's items (workflows.restore_shards.groups): a large shard alone, small ones
`restore_group_shards` to an item, every shard once and in the plan's order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dataport.settings import get_settings
from dataport.workflows.restore_shards import groups


@pytest.fixture
def group_of_three(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RESTORE_GROUP_SHARDS", "3")
    monkeypatch.setenv("RESTORE_PACK_MESSAGES", "100")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def shard(n: int) -> dict[str, object]:
    return {"jobId": f"job-{n}", "records": n}


@pytest.mark.usefixtures("group_of_three")
def test_small_shards_go_three_to_an_item_and_a_large_one_alone() -> None:
    messages = [5, 100, 7, 101, 8, 9, 10, 11, 5000]
    items = groups([shard(n) for n in range(len(messages))], messages)
    assert [[s["jobId"] for s in item["shards"]] for item in items] == [
        ["job-0", "job-1", "job-2"],  # at most restore_pack_messages (100): small
        ["job-3"],                    # 101 messages: alone
        ["job-4", "job-5", "job-6"],
        ["job-8"],                    # large, before the small ones' last, short group
        ["job-7"],
    ]


@pytest.mark.usefixtures("group_of_three")
def test_every_shard_is_in_exactly_one_item() -> None:
    messages = [n * 37 % 250 for n in range(50)]
    items = groups([shard(n) for n in range(50)], messages)
    ids = [s["jobId"] for item in items for s in item["shards"]]
    assert sorted(ids) == sorted(f"job-{n}" for n in range(50))
    assert len(ids) == len(set(ids))
    assert all(1 <= len(item["shards"]) <= 3 for item in items)
    assert all(len(item["shards"]) == 1 for item in items
               if any(messages[int(str(s["jobId"])[4:])] > 100 for s in item["shards"]))


def test_no_shards_no_items() -> None:
    assert groups([], []) == []
