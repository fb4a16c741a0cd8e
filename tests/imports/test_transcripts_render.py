"""The real Claude Code transcripts (tests/imports/transcripts) read by the import and written as
markdown and PDF: the compaction summary (2.1.0), the `isMeta` command expansion (1.0.98) and
the `system` compaction boundary (2.1.0) are shown as Claude Code's, labelled, never under the
user's heading; every other user line is the user's. tests/unit/test_formats_rendering.py
covers the same on small hand-made cases, with images, right-to-left text and code."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from typing import Any

import pypdf
import pytest

from dataport.formats.markdown import CONTEXT_NOTE, SUMMARY_NOTE, MarkdownWriter
from dataport.formats.pdf import PdfWriter
from dataport.models.documents import derived_ref, is_compact_summary, is_meta
from dataport.models.records import RecordKind
from tests.imports.fidelity import FIXTURES, upload
from tests.imports.support import kinds, read
from tests.imports.test_transcripts import export_sessions
from tests.unit.format_sink import CONTEXT, MemorySink

#: per fixture: (compaction summaries, isMeta lines) the transcript holds
EXPECTED = {
    "claude-code-log-2.0.46-sidechain": (0, 0),
    "claude-code-log-2.0.5-image": (0, 0),
    "claude-code-log-2.1.0-compact": (1, 0),
    "claude-code-log-2.1.173-subagents": (0, 0),
    "claude-code-viewer-1.0.98": (0, 1),
    "claude-code-viewer-2.0.28-agent-file": (0, 0),
    "session-share-2.1.14-thinking": (0, 0),
}
_PDF_LABEL = re.compile(r"^(USER|ASSISTANT|CONTEXT|CONVERSATION SUMMARY|TOOL RESULT|TOOL CALL) "
                        r"\d{4}-\d\d-\d\d ", re.MULTILINE)


def stored(fixture: str) -> tuple[list[Any], list[dict[str, Any]]]:
    records, issues = read(upload([fixture]), "claude.zip")
    assert [i for i in issues if i.severity == "error"] == []
    return records, kinds(records, RecordKind.MESSAGE)


def first_words(message: dict[str, Any]) -> str:
    """The start of a message's text, as a reader would find it (whitespace collapsed)."""
    return " ".join(str(message.get("content") or "").split())[:60]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_markdown_of_real_transcripts_labels_claude_codes_lines(fixture: str) -> None:
    records, messages = stored(fixture)
    summaries = [m for m in messages if m["type"] == "user" and is_compact_summary(m)]
    metas = [m for m in messages if m["type"] == "user" and is_meta(m)]
    assert (len(summaries), len(metas)) == EXPECTED[fixture]
    sink = MemorySink()
    export_sessions(MarkdownWriter(sink, context=CONTEXT, split_bytes=10**7), records)
    text = "\n".join(file.text for file in sink.files)
    sections = [(part.split("\n", 1)[0], " ".join(part.split("\n", 1)[1].split()))
                for part in re.split(r"^### ", text, flags=re.MULTILINE)[1:]]
    for heading, body in sections:
        if heading.startswith("User"):
            for message in summaries + metas:
                assert first_words(message) not in body
    shown = [(h.split(" · ")[0], b) for h, b in sections]
    for message in summaries:
        (body,) = [b for h, b in shown if h == "Conversation summary"
                   and first_words(message) in b]
        assert body.startswith(f"> *{SUMMARY_NOTE}*")
    for message in metas:
        (body,) = [b for h, b in shown if h == "Context" and first_words(message) in b]
        assert body.startswith(f"<details><summary>{CONTEXT_NOTE}</summary>")
    contexts = [b for h, b in shown if h == "Context"]
    for message in (m for m in messages if m["type"] == "system"):
        fields = message["claudeCode"]["fields"]
        if not first_words(message):  # a status line without text (turn duration): a heading
            continue
        (body,) = [b for b in contexts if first_words(message) in b]
        if "type" in fields:  # a progress line kept for the thread, labelled as what it was
            what = fields["data"]["type"].replace("_", " ")
            assert body.startswith(f"<details><summary>Claude Code {fields['type']} line "
                                   f"({what}), kept because the conversation's thread runs "
                                   "through it, not part of the conversation</summary>")
            continue
        subtype = fields["subtype"].replace("_", " ")
        assert body.startswith(f"<details><summary>Claude Code status note ({subtype}), not "
                               "part of the conversation</summary>")
    users = [m for m in messages if m["type"] == "user" and derived_ref(m["uuid"]) is None
             and m not in summaries + metas and first_words(m)]
    for message in users:  # the person's own lines stay theirs
        assert any(h == "User" and first_words(message) in b for h, b in shown), \
            first_words(message)


@pytest.mark.parametrize("fixture", ["claude-code-log-2.1.0-compact",
                                     "claude-code-viewer-1.0.98",
                                     "session-share-2.1.14-thinking"])
def test_pdf_of_real_transcripts_labels_claude_codes_lines(fixture: str) -> None:
    records, messages = stored(fixture)
    sink = MemorySink()
    export_sessions(PdfWriter(sink, context=replace(CONTEXT, format="pdf"),
                              split_bytes=100 << 20), records)
    reader = pypdf.PdfReader(io.BytesIO(bytes(sink.files[0].data)))
    text = "\n".join(page.extract_text() for page in reader.pages)
    starts = list(_PDF_LABEL.finditer(text))
    sections = [(m.group(1), " ".join(text[m.end():starts[i + 1].start()
                                           if i + 1 < len(starts) else None].split()))
                for i, m in enumerate(starts)]
    flagged = [m for m in messages if m["type"] == "user"
               and (is_compact_summary(m) or is_meta(m))]
    assert flagged or fixture == "session-share-2.1.14-thinking"
    for message in flagged:
        words = first_words(message)[:40]
        label = "CONVERSATION SUMMARY" if is_compact_summary(message) else "CONTEXT"
        holding = [name for name, body in sections if words in body]
        assert holding == [label], (words, holding)
        (body,) = [b for name, b in sections if words in b]
        assert "not typed by the user" in body
    for message in (m for m in messages if m["type"] == "system" and first_words(m)):
        (body,) = [b for name, b in sections if name == "CONTEXT"
                   and first_words(message) in b]
        kept_line = "type" in message["claudeCode"]["fields"]
        assert ("Claude Code progress line" if kept_line else "Claude Code status note") in body
