"""What every writer promises: split size honoured, oversized records alone and noted, every file
closed by close(), and the registry that picks them."""

from __future__ import annotations

from typing import Any

import pytest

from dataport.errors import NotSupported
from dataport.formats.base import ExportWriter
from dataport.formats.csv_format import CsvWriter
from dataport.formats.json_format import JsonWriter
from dataport.formats.jsonl import JsonlWriter
from dataport.formats.markdown import MarkdownWriter
from dataport.formats.pdf import PdfWriter
from dataport.formats.registry import writer_for
from dataport.models.exports import ExportFormat
from tests.unit.format_sink import (
    CONTEXT,
    MemorySink,
    many_messages,
    messages,
    project_doc,
    session_doc,
)

WRITERS = [JsonWriter, JsonlWriter, CsvWriter, MarkdownWriter]


def export_mixed(writer_class: type[ExportWriter], split_bytes: int) -> MemorySink:
    """Two invocations' worth of sessions, one continued, one holding a huge message."""
    sink = MemorySink()
    huge = many_messages(1)[0] | {"uuid": "huge-0001", "content": "🐘" * 20_000}
    huge["messageData"] = {"role": "user", "content": huge["content"]}
    plan: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        (session_doc(), messages()),
        (session_doc(sessionId="second", summary="Second"), many_messages(40)[:20]),
    ]
    writer = writer_class(sink, context=CONTEXT, split_bytes=split_bytes)
    for session, docs in plan:
        writer.begin_session(project_doc(), session)
        for doc in docs:
            writer.write_message(doc)
        writer.end_session()
    writer.close()
    assert sink.open_files() == []
    # the next invocation continues session "second" and then writes a huge message
    writer = writer_class(sink, context=CONTEXT, split_bytes=split_bytes)
    writer.begin_session(project_doc(), session_doc(sessionId="second", summary="Second"))
    for doc in [*many_messages(40)[20:30], huge, *many_messages(40)[30:]]:
        writer.write_message(doc)
    writer.end_session()
    writer.close()
    return sink


@pytest.mark.parametrize("writer_class", WRITERS)
@pytest.mark.parametrize("split_bytes", [3_000, 9_000])
def test_split_size_is_honoured_except_for_a_record_alone(writer_class: type[ExportWriter],
                                                          split_bytes: int) -> None:
    sink = export_mixed(writer_class, split_bytes)
    assert sink.open_files() == [], "close() closes every file"
    over = [f for f in sink.files if f.bytes_written > split_bytes]
    assert len(over) == 1, [(f.path, f.bytes_written) for f in over]
    assert over[0].records == 1
    assert over[0].notes
    assert "🐘" * 1000 in over[0].text
    assert all(not f.notes for f in sink.files if f is not over[0])
    assert all(f.bytes_written > 0 for f in sink.files)


@pytest.mark.parametrize("writer_class", WRITERS)
def test_close_without_end_session_still_closes_every_file(
        writer_class: type[ExportWriter]) -> None:
    sink = MemorySink()
    writer = writer_class(sink, context=CONTEXT, split_bytes=10_000)
    writer.begin_session(project_doc(), session_doc())
    for doc in messages():
        writer.write_message(doc)
    writer.end_session()
    writer.close()
    writer.close()
    assert sink.files
    assert sink.open_files() == []


def test_registry_knows_every_format() -> None:
    assert {fmt: writer_for(fmt) for fmt in ExportFormat} == {
        ExportFormat.JSON: JsonWriter, ExportFormat.JSONL: JsonlWriter,
        ExportFormat.CSV: CsvWriter, ExportFormat.MARKDOWN: MarkdownWriter,
        ExportFormat.PDF: PdfWriter}
    assert {w.extension for w in WRITERS} == {"json", "jsonl", "csv", "md"}


def test_an_unknown_format_is_not_supported() -> None:
    with pytest.raises(NotSupported) as caught:
        writer_for("xlsx")  # type: ignore[arg-type]
    assert caught.value.http_status == 400


@pytest.mark.parametrize("writer_class", WRITERS)
def test_every_split_size_is_honoured_to_the_byte(writer_class: type[ExportWriter]) -> None:
    """A sweep over neighbouring split sizes lands rollovers on every possible boundary, so a
    footer or trailer not accounted for shows up as a file a few bytes too big."""
    docs = [doc | {"content": "a" * (i * 37 % 101), "model": f"claude-{i}"}
            for i, doc in enumerate(many_messages(60, repeat=1))]
    for split_bytes in range(4_000, 4_100):
        sink = MemorySink()
        writer = writer_class(sink, context=CONTEXT, split_bytes=split_bytes)
        writer.begin_session(project_doc(), session_doc())
        for doc in docs:
            writer.write_message(doc)
        writer.end_session()
        writer.close()
        sizes = [f.bytes_written for f in sink.files]
        assert len(sizes) > 1
        assert max(sizes) <= split_bytes, (split_bytes, sizes)
