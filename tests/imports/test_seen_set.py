"""SeenSet (imports/validate.py) answers as a plain dict would, in memory and spilled to SQLite
(its Bloom filter's "never seen", its buffer of new keys not yet written, the rows written),
whatever the order of adds, puts and gets; and a parent cycle is found across all three."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataport.imports import validate
from dataport.imports.validate import ParentForest, SeenSet

keys = st.sampled_from([f"k{i}" for i in range(40)])
operations = st.lists(st.tuples(st.sampled_from(["add", "put", "get"]), keys,
                                st.sampled_from([b"", b"a", b"bb"])), max_size=300)


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """New keys go to SQLite every 3 (not 4,096), so a few dozen keys cross every path."""
    monkeypatch.setattr(validate, "SPILL_BATCH", 3)


@settings(max_examples=200, deadline=None)
@given(operations, st.sampled_from([0, 4, 1_000]))
def test_a_seen_set_answers_as_a_dict_in_memory_and_spilled(
        steps: list[tuple[str, str, bytes]], spill_after: int) -> None:
    seen, model = SeenSet(spill_after), dict[str, bytes]()
    try:
        for operation, key, value in steps:
            if operation == "add":
                assert seen.add(key, value) == (key not in model)
                model.setdefault(key, value)
            elif operation == "put":
                seen.put_digest(validate.digest(key), value)
                model[key] = value
            else:
                assert seen.get(key) == model.get(key)
        assert all(seen.get(key) == value for key, value in model.items())
        assert (seen._db is not None) == (len(model) > spill_after)
    finally:
        seen.close()


def test_a_spilled_set_answers_most_new_keys_without_a_query() -> None:
    seen = SeenSet(spill_after=10)
    queries: list[str] = []
    try:
        for i in range(11):
            seen.add(f"uuid-{i}")
        assert seen._db is not None
        seen._db.set_trace_callback(queries.append)
        assert all(seen.add(f"new-{i}") for i in range(1_000))
        assert not seen.add("uuid-3")
        assert not seen.add("new-999")
        selects = [q for q in queries if q.startswith("SELECT")]
        assert len(selects) < 10  # the filter said "never seen" for the others
        assert any(q.startswith("INSERT OR REPLACE") for q in queries)  # the batches
    finally:
        seen.close()


@pytest.mark.parametrize("spill_after", [1_000_000, 5, 0])
def test_a_cycle_is_found_across_memory_buffer_and_rows(spill_after: int) -> None:
    links = [(f"m{i}", f"m{i - 1}") for i in range(1, 200)]
    random.Random(11).shuffle(links)
    forest = ParentForest(spill_after)
    try:
        assert not any(forest.link("s", child, parent) for child, parent in links)
        assert forest.link("s", "m0", "m199")
        assert not forest.link("s", "m200", "m150")
    finally:
        forest.close()
