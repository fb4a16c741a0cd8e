"""parentUuid cycles are found whatever order messages arrive in, in memory and spilled to disk."""

from __future__ import annotations

import random

import pytest

from dataport.imports.validate import ParentForest


@pytest.mark.parametrize("spill_after", [1_000_000, 5])
def test_a_cycle_is_found_when_its_last_link_arrives_in_any_order(spill_after: int) -> None:
    links = [(f"m{i}", f"m{i - 1}") for i in range(1, 60)]  # one thread: m59 -> ... -> m0
    random.Random(8).shuffle(links)
    forest = ParentForest(spill_after)
    try:
        assert not any(forest.link("s", child, parent) for child, parent in links)
        assert forest.link("s", "m0", "m59")  # m0's parent would be its own descendant
        assert forest.link("s", "m60", "m60")  # its own parent
        assert not forest.link("other", "m0", "m59")  # threads stay in their session
        assert not forest.link("s", "m61", "m59")  # a branch is not a cycle
    finally:
        forest.close()
