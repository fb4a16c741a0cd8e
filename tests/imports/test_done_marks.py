"""DoneMarks: the batches' results become ready to be marked `done` in batch order only, whatever
order the writes threads end the batches in (imports.executor)."""

from __future__ import annotations

import itertools

from bson import ObjectId

from dataport.imports.executor import DoneMarks, Marks


def _results(number: int) -> Marks:
    return [(ObjectId(f"{number:024x}"), {"st": "done", "batch": number})]


def test_a_batch_that_ends_first_waits_for_the_ones_before_it() -> None:
    marks = DoneMarks()
    marks.ended(2, _results(2), 20)
    marks.ended(3, _results(3), 30)
    assert marks.take() == ([], 0)  # batch 1 is still being written
    marks.ended(1, _results(1), 10)
    assert marks.take() == (_results(1) + _results(2) + _results(3), 60)
    assert marks.take() == ([], 0)


def test_every_order_of_ending_gives_the_results_in_batch_order() -> None:
    for order in itertools.permutations(range(1, 6)):
        marks = DoneMarks()
        taken: Marks = []
        for number in order:
            marks.ended(number, _results(number), number)
            ready, _ = marks.take()
            taken.extend(ready)
            # only a prefix of the batches is ever ready
            assert [entry["batch"] for _, entry in taken] == list(range(1, len(taken) + 1))
        assert taken == [result for number in range(1, 6) for result in _results(number)]


def test_marks_that_could_not_be_written_come_back_first() -> None:
    marks = DoneMarks()
    marks.ended(1, _results(1), 1)
    lost, records = marks.take()
    marks.ended(2, _results(2), 2)
    marks.give_back(lost, records)
    assert marks.take() == (_results(1) + _results(2), 3)
