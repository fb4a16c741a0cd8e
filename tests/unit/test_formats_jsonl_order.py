"""The jsonl export writes each file's lines in the order they had in the transcript they came
from (`claudeCode.order`), while it reads a session's messages in time order: a bounded wait,
never the whole session in memory."""

from __future__ import annotations

import json
from typing import Any

from dataport.formats.jsonl import LOOK_BEHIND_RECORDS, ORDER_RECORDS, JsonlWriter
from tests.unit.format_sink import CONTEXT, SESSION_ID, MemorySink, at, project_doc, session_doc

KEYS = ["parentUuid", "isSidechain", "userType", "cwd", "sessionId", "version", "type",
        "message", "uuid", "timestamp"]


def line_message(order: int, seconds: float) -> dict[str, Any]:
    """A user message imported from line `order` of its file, written at `seconds`."""
    return {"uuid": f"u-{order:05d}", "sessionId": SESSION_ID, "type": "user",
            "timestamp": at(seconds), "parentUuid": None, "isSidechain": False,
            "userType": "external", "cwd": "/w", "version": "2.1.0",
            "content": f"line {order}", "messageData": {"role": "user", "content": f"line {order}"},
            "claudeCode": {"keys": KEYS, "fields": {}, "order": order}}


def exported_uuids(docs: list[dict[str, Any]], watch: list[int] | None = None) -> list[str]:
    """The docs written in (timestamp, uuid) order, as the export reads them; the uuids of the
    session's file in the order they were written. `watch` gets the number of lines the writer
    held after each message."""
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=10**8)
    writer.begin_session(project_doc(), session_doc(summary=None))
    for doc in sorted(docs, key=lambda d: (d["timestamp"], d["uuid"])):
        writer.write_message(doc)
        if watch is not None:
            watch.append(len(writer._held) + len(writer._pending))
    writer.end_session()
    (file,) = sink.files
    return [json.loads(line)["uuid"] for line in file.text.splitlines()]


def test_lines_written_out_of_time_order_come_back_in_their_order() -> None:
    # every block of 20 lines was written newest first (a sub-agent's lines kept in the main
    # file, lines of one millisecond), and two lines share a timestamp across blocks
    docs = [line_message(order, (order // 20) * 60 + (19 - order % 20) * 2)
            for order in range(200)]
    uuids = exported_uuids(docs)
    assert uuids == [f"u-{order:05d}" for order in range(200)]
    # what a plain time-ordered export would have written instead
    assert uuids != [d["uuid"] for d in sorted(docs, key=lambda d: d["timestamp"])]


def test_a_missing_line_holds_the_rest_only_for_a_bounded_while() -> None:
    # lines 10 and 150 were deleted in ClaudeLens: nothing waits for them for ever
    docs = [line_message(order, order) for order in range(300) if order not in (10, 150)]
    watch: list[int] = []
    uuids = exported_uuids(docs, watch)
    assert uuids == [d["uuid"] for d in docs]
    assert max(watch) <= ORDER_RECORDS + LOOK_BEHIND_RECORDS + 1


def test_a_file_in_reverse_time_order_is_written_whole_within_the_bound() -> None:
    # far beyond the bound: the order is kept as far as the bound allows, every line is written
    docs = [line_message(order, 1000 - order) for order in range(500)]
    watch: list[int] = []
    uuids = exported_uuids(docs, watch)
    assert sorted(uuids) == sorted(d["uuid"] for d in docs)
    assert max(watch) <= ORDER_RECORDS + LOOK_BEHIND_RECORDS + 1


def test_messages_without_a_place_are_written_in_time_order_beside_them() -> None:
    docs = [line_message(order, order * 10) for order in range(5)]
    plain = {**line_message(99, 25), "uuid": "plain", "claudeCode": None}
    uuids = exported_uuids([*docs, plain])
    assert uuids == ["u-00000", "u-00001", "u-00002", "plain", "u-00003", "u-00004"]


def summary_session(orders: list[int] | None) -> dict[str, Any]:
    lines = [{"type": "summary", "summary": f"s{i}", "leafUuid": None} for i in range(3)]
    kept: dict[str, Any] = {"summaries": lines}
    if orders is not None:
        kept["summaryOrders"] = orders
    return session_doc(claudeCode=kept)


def exported_lines(session: dict[str, Any], docs: list[dict[str, Any]]) -> list[str]:
    """The session's file as uuids, a summary line as its text."""
    sink = MemorySink()
    writer = JsonlWriter(sink, context=CONTEXT, split_bytes=10**8)
    writer.begin_session(project_doc(), session)
    for doc in sorted(docs, key=lambda d: (d["timestamp"], d["uuid"])):
        writer.write_message(doc)
    writer.end_session()
    (file,) = sink.files
    return [line.get("uuid") or line["summary"]
            for line in map(json.loads, file.text.splitlines())]


def test_summary_lines_are_written_when_their_turn_comes() -> None:
    # out of time order too: a summary waits for the line it preceded, not for a timestamp
    docs = [line_message(order, (order // 20) * 60 + (19 - order % 20) * 2)
            for order in range(200)]
    written = exported_lines(summary_session([0, 150, 200]), docs)
    assert written == ["s0", *(f"u-{o:05d}" for o in range(150)), "s1",
                       *(f"u-{o:05d}" for o in range(150, 200)), "s2"]


def test_summary_lines_without_a_place_open_the_file() -> None:
    """A session imported before summary places were kept."""
    docs = [line_message(order, order) for order in range(3)]
    assert exported_lines(summary_session(None), docs) == [
        "s0", "s1", "s2", "u-00000", "u-00001", "u-00002"]
