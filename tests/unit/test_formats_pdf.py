"""PDF: real PDFs that poppler (pdfinfo, pdftotext, pdftohtml, pdftoppm) reads, whatever the text.

Page 1 and the first body page of the sample export are rendered to tests/output/ so that a
person can look at them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dataport.formats.base import Numbering
from dataport.formats.pdf import (
    REPLACEMENT,
    PdfWriter,
    TextCleaner,
    filter_rows,
    shorten,
    split_fences,
    tool_input_text,
)
from dataport.formats.registry import writer_for
from dataport.models.exports import ExportFormat
from tests.unit.format_sink import (
    CONTEXT,
    MemoryFile,
    MemorySink,
    at,
    many_messages,
    messages,
    project_doc,
    session_doc,
    write_session,
)

OUTPUT = Path(__file__).resolve().parents[1] / "output"
PDF_CONTEXT = replace(CONTEXT, format="pdf", filters={
    "dateRange": {"start": "2025-08-01T00:00:00Z", "end": "2025-08-31T00:00:00Z"},
    "models": ["claude-opus-4-1-20250805"], "includeSidechains": True})
SCRIPTS = {
    "greek": "Καλημέρα κόσμε, αυτό είναι ελληνικό κείμενο",
    "cyrillic": "Съешь же ещё этих мягких французских булок",
    "chinese": "请检查环境变量的配置",
    "japanese": "日本語のテキストとカタカナ",
    "korean": "한국어 문장도 보입니다",
}
CODE = 'def greet(name: str) -> str:\n    return f"hello {name}"'


@pytest.fixture(scope="module", autouse=True)
def poppler() -> None:
    missing = [t for t in ("pdfinfo", "pdftotext", "pdftohtml", "pdftoppm") if not shutil.which(t)]
    assert not missing, f"poppler-utils is missing ({', '.join(missing)}): run `make system`"


def doc(uuid: str, kind: str, seconds: float, text: str, **extra: Any) -> dict[str, Any]:
    base = many_messages(1)[0]
    return base | {"uuid": uuid, "type": kind, "timestamp": at(seconds), "content": text,
                   "messageData": {"role": kind, "content": text}} | extra


def scripts_session() -> list[dict[str, Any]]:
    """A session in many scripts, with a code fence and a tool call whose input is code."""
    reply = (f"Greek: {SCRIPTS['greek']}\nCyrillic: {SCRIPTS['cyrillic']}\n\n"
             f"```python\n{CODE}\n```\nJapanese: {SCRIPTS['japanese']}")
    call = {"type": "tool_use", "id": "toolu_09", "name": "Write",
            "input": {"file_path": "greet.py", "content": CODE}}
    return [
        doc("s2-0001", "user", 100, f"Chinese: {SCRIPTS['chinese']} / Korean: {SCRIPTS['korean']}"),
        doc("s2-0002", "assistant", 101, reply, model="claude-opus-4-1-20250805",
            messageData={"role": "assistant", "model": "claude-opus-4-1-20250805",
                         "content": [{"type": "text", "text": reply}, call]}),
    ]


def export(plan: list[tuple[dict[str, Any], list[dict[str, Any]]]], *, max_pages: int = 500,
           split_bytes: int = 100 << 20) -> MemorySink:
    sink = MemorySink()
    writer = PdfWriter(sink, context=PDF_CONTEXT, split_bytes=split_bytes, max_pages=max_pages)
    for session, docs in plan:
        write_session(writer, project_doc(), session, docs)
    writer.close()
    return sink


def save(file: MemoryFile, path: Path) -> Path:
    path.write_bytes(bytes(file.data))
    return path


def run(*command: str | Path) -> str:
    return subprocess.run([str(c) for c in command], check=True, capture_output=True,
                          text=True).stdout


def info(path: Path) -> dict[str, str]:
    lines = run("pdfinfo", path).splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def text(path: Path, page: int | None = None, *, layout: bool = False) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return run("pdftotext", "-enc", "UTF-8", *(["-layout"] if layout else []), *pages, path,
               "-")


def outline(path: Path) -> list[tuple[str, int]]:
    """The PDF's bookmarks (title, page) as poppler reads them."""
    root = ET.fromstring(run("pdftohtml", "-xml", "-stdout", "-i", "-q", path))
    found = root.find("outline")
    return [] if found is None else [(item.text or "", int(item.get("page", "0")))
                                     for item in found.iter("item")]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[MemorySink, Path]:
    sink = export([(session_doc(), messages()),
                   (session_doc(sessionId="scripts-0002", summary="Ελληνικά, русский, 中文"),
                    scripts_session())])
    path = save(sink.files[0], tmp_path_factory.mktemp("pdf") / "sample.pdf")
    return sink, path


def test_the_sample_is_one_complete_volume_poppler_reads(sample: tuple[MemorySink, Path]) -> None:
    sink, path = sample
    [file] = sink.files
    assert (file.path, file.numbering, file.closed) == ("conversations.pdf", Numbering.ALWAYS,
                                                        True)
    assert file.records == len(messages()) + len(scripts_session())
    assert file.notes == []  # every character of the sample has a glyph
    assert bytes(file.data[:5]) == b"%PDF-"
    assert bytes(file.data).rstrip().endswith(b"%%EOF")
    meta = info(path)
    assert meta["Title"] == "ClaudeLens conversations"
    assert meta["Page size"].endswith("(A4)")
    assert int(meta["Pages"]) >= 4  # title, contents, one section per session


def test_pdftotext_finds_summaries_messages_scripts_and_code(
        sample: tuple[MemorySink, Path]) -> None:
    _, path = sample
    body = text(path)
    flat = " ".join(body.split())
    for expected in ["Audit unused docker-compose env vars — 環境変数 🐳",
                     "Ελληνικά, русский, 中文", "I'll read docker-compose.yml first.", "请检查",
                     "Two variables are unused.",
                     "The user wants an audit.", "key: value", "file_path: greet.py",
                     'return f"hello {name}"', "-2+3 is what the sub-agent says",
                     "claude-sonnet-4-20250514", *SCRIPTS.values()]:
        assert expected in flat, expected
    assert "result of Read" in flat
    assert "result of Bash" in flat


def test_title_page_shows_the_volume_totals_and_the_filters(
        sample: tuple[MemorySink, Path]) -> None:
    _, path = sample
    title = " ".join(text(path, 1).split())
    assert "Conversations" in title
    assert "Owner 66ad9b005f2b4a0012c0aaaa" in title
    assert "Exported 2025-08-03 09:00:00 UTC" in title
    docs = messages() + scripts_session()
    assert f"SESSIONS MESSAGES PAGES 2 {len(docs)} " in title
    assert "SESSIONS" in title
    assert "TOKENS" in title
    assert "COST" in title
    # cost of the messages in the volume: 0.056628 + 0.0000001 - 0.5 + 2 * 0.001
    assert "-0.4413719 USD" in title
    assert "Date range from 2025-08-01 00:00:00 UTC to 2025-08-31 00:00:00 UTC" in title
    assert "Models claude-opus-4-1-20250805" in title
    assert "Include sidechains" not in title  # the default is no filter
    assert "this volume" in title


def test_contents_and_outline_list_every_session_on_its_page(
        sample: tuple[MemorySink, Path]) -> None:
    _, path = sample
    contents = " ".join(text(path, 2).split())
    assert contents.startswith("Contents")
    marks = outline(path)
    assert [title for title, _ in marks] == [
        "Audit unused docker-compose env vars — 環境変数 🐳", "Ελληνικά, русский, 中文"]
    for title, page in marks:
        assert title in " ".join(text(path, page).split())
        assert title in contents
    # the contents number body pages from 1, as the footers and the page labels do
    assert re.search(r"環境変数 🐳 [ .]*1\b", contents)


def test_a_long_contents_keeps_its_numbers_equal_to_the_printed_ones(tmp_path: Path) -> None:
    plan = [(session_doc(sessionId=f"s{i:03d}", summary=f"Session number {i}"), many_messages(2))
            for i in range(50)]
    path = save(export(plan).files[0], tmp_path / "many.pdf")
    marks = outline(path)
    assert len(marks) == 50
    front = int(info(path)["Pages"]) - 50  # one page per session here
    assert front >= 4  # the title page and contents spanning several pages
    contents = "".join(text(path, page, layout=True) for page in range(2, front + 1))
    for index in (0, 21, 49):
        title, page = marks[index]
        printed = text(path, page).split()[-1]  # the footer's page number
        assert printed == str(page - front)
        assert re.search(rf"{title} [ .]*{printed}\n", contents), title


def test_text_after_a_line_that_starts_in_a_fallback_font_keeps_its_font(
        caplog: pytest.LogCaptureFixture) -> None:
    body = "中文 first, then Latin\nplain latin after it\n🐳 whale\nand more latin"
    with caplog.at_level("WARNING", logger="fpdf"):
        sink = export([(session_doc(summary="中文 summary"), [doc("f-0001", "user", 1, body)])])
    assert sink.files[0].notes == []
    assert "missing the following glyphs" not in caplog.text


def test_derived_tool_documents_do_not_repeat_what_their_message_showed(
        sample: tuple[MemorySink, Path]) -> None:
    _, path = sample
    body = text(path)
    assert body.count("file_path: /Users/alex/github/claudelens/docker-compose.yml") == 1
    assert body.count("command: grep -n '```' README.md") == 1
    assert body.count("12:```") == 1


def test_page_one_and_a_body_page_are_rendered_for_people(
        sample: tuple[MemorySink, Path]) -> None:
    _, path = sample
    OUTPUT.mkdir(exist_ok=True)
    for page, name in ((1, "pdf-page1"), (3, "pdf-page3")):
        run("pdftoppm", "-png", "-r", "110", "-f", str(page), "-l", str(page), "-singlefile",
            path, OUTPUT / name)
        assert (OUTPUT / f"{name}.png").stat().st_size > 10_000


def test_no_character_makes_an_export_fail(tmp_path: Path) -> None:
    undrawable = ["\U0001fae0", "\U0001f972", "\x00", "\x07", "\ud800", "\U0010ffff", "\uffff",
                  "\ue000"]
    nasty = ("emoji 🐳🚀✅👍🏽 👨\u200d👩\u200d👧 🇫🇷 ❤\ufe0f new " + "".join(undrawable)
             + " \x1b[31mred\x1b[0m tab\there {nb} e\u0301 \u202eevil\u202c עברית العربية "
             + "W" * 300)
    docs = [doc("e-0001", "user", 1, nasty),
            doc("e-0002", "assistant", 2, nasty, messageData={"role": "assistant", "content": [
                {"type": "thinking", "thinking": nasty}, {"type": "text", "text": nasty},
                {"type": "tool_use", "id": "t1", "name": nasty, "input": {nasty: nasty}}]})]
    sink = export([(session_doc(summary=nasty), docs)])
    [file] = sink.files
    path = save(file, tmp_path / "nasty.pdf")
    assert int(info(path)["Pages"]) >= 3
    flat = text(path)
    assert "🐳" in flat
    assert "🚀" in flat
    assert REPLACEMENT in flat
    assert "\x1b" not in flat
    assert "red" in flat
    assert "{nb}" in flat  # not fpdf2's page-count alias
    # each undrawable character counted once per place it is shown (title: heading, running
    # header on each page, outline, contents; texts: user, thinking, text, tool name and input)
    [note] = file.notes
    count = int(note.rsplit(maxsplit=1)[-1])
    assert count % len(undrawable) == 0, note
    assert count >= 7 * len(undrawable), note
    assert "U+FFFD" in note


def test_volumes_split_at_the_page_cap_each_complete(tmp_path: Path) -> None:
    first = many_messages(120, repeat=12)
    sink = export([(session_doc(summary="Long one"), first),
                   (session_doc(sessionId="second", summary="Short two"), messages())],
                  max_pages=4)
    assert len(sink.files) >= 3
    assert all(f.closed and f.path == "conversations.pdf" for f in sink.files)
    assert sum(f.records for f in sink.files) == len(first) + len(messages())
    titles: list[str] = []
    for index, file in enumerate(sink.files):
        path = save(file, tmp_path / f"volume-{index}.pdf")
        pages = int(info(path)["Pages"])
        assert pages <= 2 + 4 + 3  # front matter + cap + one message's overshoot
        titles.extend(title for title, _ in outline(path))
    assert titles[0] == "Long one"
    assert titles[-1] == "Short two"
    assert set(titles[1:-1]) <= {"Long one (continued)", "Short two"}
    assert "Long one (continued)" in titles
    assert "120 messages" not in text(save(sink.files[0], tmp_path / "v0.pdf"), 2)


def test_volumes_split_before_the_split_size(tmp_path: Path) -> None:
    paragraph = "Latin words in a paragraph, Ελληνικά and 中文 too. " * 70
    docs = [doc(f"c-{i:04d}", "user", i, f"{i} {paragraph}") for i in range(40)]
    split = 150_000
    sink = export([(session_doc(), docs)], split_bytes=split)
    assert len(sink.files) >= 2
    assert all(f.bytes_written <= split for f in sink.files)
    assert sum(f.records for f in sink.files) == len(docs)
    for index, file in enumerate(sink.files):
        assert int(info(save(file, tmp_path / f"part-{index}.pdf"))["Pages"]) >= 3


def test_long_texts_are_shortened_visibly_and_noted(tmp_path: Path) -> None:
    output = "\n".join(f"line {n}" for n in range(5000))
    result = {"type": "tool_result", "tool_use_id": "toolu_x", "content": output}
    sink = export([(session_doc(), [doc("l-0001_result_0", "tool_result", 1, output,
                                        messageData=result)])])
    [file] = sink.files
    assert file.notes == ["very long texts shortened in this PDF (marked where they are cut; the "
                          "JSON export has them whole): 1"]
    body = text(save(file, tmp_path / "long.pdf"))
    assert "line 399" in body
    assert "line 400\n" not in body
    assert "shortened in the PDF" in body


def test_close_closes_everything_and_an_empty_writer_writes_nothing() -> None:
    sink = MemorySink()
    writer = PdfWriter(sink, context=PDF_CONTEXT, split_bytes=1 << 20)
    writer.close()
    assert sink.files == []
    writer.begin_session(project_doc(), session_doc())
    for message in messages()[:2]:
        writer.write_message(message)
    writer.close()  # without end_session
    writer.close()
    assert len(sink.files) == 1
    assert sink.open_files() == []
    assert sink.files[0].records == 2


def test_a_session_without_messages_still_has_its_section(tmp_path: Path) -> None:
    sink = export([(session_doc(summary="Nothing said"), [])])
    path = save(sink.files[0], tmp_path / "empty.pdf")
    assert [t for t, _ in outline(path)] == ["Nothing said"]


def test_the_registry_knows_the_pdf_writer() -> None:
    assert writer_for(ExportFormat.PDF) is PdfWriter
    assert PdfWriter.extension == "pdf"


# --- the helpers -------------------------------------------------------------------------------

def test_text_cleaner_replaces_counts_and_drops() -> None:
    clean = TextCleaner()
    assert clean("plain ascii\nlines") == "plain ascii\nlines"
    assert clean("a\tb\r\nc\rd") == "a   b\nc\nd"
    assert clean("\x1b[1;31mbold red\x1b[0m") == "bold red"
    assert clean("x\U0001fae0y\x00z") == f"x{REPLACEMENT}y{REPLACEMENT}z"
    assert clean("\U000e0100tag") == "tag"  # an invisible variation selector no font has
    assert clean.replaced == 2
    assert clean.families == set()
    clean("中文 and 🐳")
    assert clean.families == {"cjk", "emoji"}


def test_split_fences_follows_markdown() -> None:
    assert list(split_fences("intro\n```py\nx = 1\n```\nafter")) == [
        ("text", "", "intro"), ("code", "py", "x = 1"), ("text", "", "after")]
    assert list(split_fences("````\n```\ninner\n```\n````")) == [
        ("code", "", "```\ninner\n```")]
    assert list(split_fences("open\n~~~\nnever closed")) == [
        ("text", "", "open"), ("code", "", "never closed")]
    assert list(split_fences("```\n```")) == [("code", "", "")]


def test_tool_input_and_filters_read_like_text() -> None:
    assert tool_input_text({"command": "ls -la", "timeout": 5}) == "command: ls -la\ntimeout: 5"
    assert tool_input_text({"content": "a\nb"}) == "content:\n  a\n  b"
    assert filter_rows({"costRange": {"min": "0.5"}, "sessionIds": [str(i) for i in range(20)],
                        "includeSidechains": False, "models": []}) == [
        ("Cost range", "from 0.5"),
        ("Session ids", "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, … (20 in all)"),
        ("Include sidechains", "no")]
    assert shorten("abc", 10) == ("abc", False)
    assert shorten("a\nb\nc", 100, max_lines=2)[0].startswith("a\nb\n[… shortened")
