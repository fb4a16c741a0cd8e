"""Markdown: one readable, well-formed document per session."""

from __future__ import annotations

import re
from typing import Any

from dataport.formats.markdown import (
    MarkdownWriter,
    balance_fences,
    fence_for,
    inline_code,
    slugify,
)
from tests.unit.format_sink import (
    CONTEXT,
    SESSION_ID,
    MemorySink,
    many_messages,
    messages,
    project_doc,
    session_doc,
    write_session,
)

PATH = "sessions/claudelens/2025-08-02-audit-unused-docker-compose-env-vars-環境変数-0bce4261.md"
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def export(docs: list[dict[str, Any]], split_bytes: int = 10_000_000,
           session: dict[str, Any] | None = None) -> MemorySink:
    sink = MemorySink()
    writer = MarkdownWriter(sink, context=CONTEXT, split_bytes=split_bytes)
    write_session(writer, project_doc(), session or session_doc(), docs)
    writer.close()
    return sink


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, CommonMark-style; fails on an unclosed one."""
    blocks: list[tuple[str, str]] = []
    open_fence: str | None = None
    info, body = "", list[str]()
    for line in text.split("\n"):
        match = FENCE.match(line)
        if open_fence is None:
            if match:
                open_fence, info, body = match.group(1), match.group(2), []
        elif match and match.group(1)[0] == open_fence[0] \
                and len(match.group(1)) >= len(open_fence) and not match.group(2).strip():
            blocks.append((info, "\n".join(body)))
            open_fence = None
        else:
            body.append(line)
    assert open_fence is None, "a code fence is left open"
    return blocks


def outside_code(text: str) -> str:
    kept, open_fence = [], None
    for line in text.split("\n"):
        match = FENCE.match(line)
        if open_fence is None and match:
            open_fence = match.group(1)
        elif open_fence and match and match.group(1).startswith(open_fence) \
                and not match.group(2).strip():
            open_fence = None
        elif open_fence is None:
            kept.append(line)
    return "\n".join(kept)


def test_path_title_and_metadata() -> None:
    sink = export(messages())
    [file] = sink.files
    assert file.path == PATH
    assert file.closed
    text = file.text
    assert text.startswith("# Audit unused docker-compose env vars — 環境変数 🐳\n\n")
    for line in ("- **Project:** claudelens", "- **Path:** `/Users/alex/github/claudelens`",
                 f"- **Session:** `{SESSION_ID}`", "- **Started:** 2025-08-02 04:52:07 UTC",
                 "- **Ended:** 2025-08-02 05:40:12 UTC", "- **Messages:** 9",
                 "- **Tokens:** 1,821,004 input · 22,206 output · 1,843,210 total",
                 "- **Cost:** 2.4187355 USD"):
        assert line in text.split("\n"), line
    assert text.rstrip().endswith(
        "**Models:** `claude-opus-4-1-20250805`, `claude-sonnet-4-20250514`")
    assert file.records == 6  # derived documents shown by their message are not sections


def test_roles_come_from_type_and_sidechains_are_marked() -> None:
    text = export(messages()).files[0].text
    headings = [line for line in text.split("\n") if line.startswith("### ")]
    roles = [h[4:].split(" · ")[0] for h in headings]
    assert roles == ["User", "Assistant", "Tool result", "Assistant", "User", "Assistant"]
    assert "External" not in text
    assert "external" not in text
    assert headings[1] == "### Assistant · 2025-08-02 04:52:12 UTC · `claude-opus-4-1-20250805`"
    assert [h for h in headings if "sidechain" in h] == [headings[-1]]
    assert "> *Sidechain: a sub-agent's message, outside the main thread.*" in text


def test_tool_calls_results_and_thinking() -> None:
    docs = messages()
    text = export(docs).files[0].text
    blocks = code_blocks(text)
    json_blocks = [body for info, body in blocks if info == "json"]
    assert len(json_blocks) == 2, "each tool call once, derived documents add none"
    assert '"file_path": "/Users/alex/github/claudelens/docker-compose.yml"' in json_blocks[0]
    assert "**Tool call:** `Read` · `toolu_01Ab`" in text
    assert "**Tool result** for `Read` · `toolu_01Ab`" in text
    assert "**Tool result** for `Bash` · `toolu_02Cd`" in text
    # the result holds ``` and ````: its fence is longer, and it comes back verbatim
    assert ("", docs[3]["messageData"]["content"]) in blocks
    assert "`````\nservices:" in text
    # the content's own code block stays Markdown
    assert ("yaml", "key: value") in blocks
    assert text.count("<details><summary>Thinking</summary>") == 1
    assert "&lt;/details> handling" in text
    assert outside_code(text).count("</details>") == 1


def test_unicode_survives() -> None:
    text = export(messages()).files[0].text
    assert "请检查 🙏 שלום" in text
    assert "環境変数 🐳" in text


def test_without_summary_the_title_and_slug_fall_back() -> None:
    sink = export(many_messages(2), session=session_doc(summary=None))
    [file] = sink.files
    assert file.path == "sessions/claudelens/2025-08-02-session-0bce4261.md"
    assert file.text.startswith(f"# Session {SESSION_ID}\n")


def test_an_empty_session_still_gets_its_document() -> None:
    [file] = export([], session=session_doc(messageCount=0)).files
    assert file.text.startswith("# ")
    assert file.closed
    assert file.records == 0


def test_split_parts_are_complete_documents_under_the_limit() -> None:
    docs = many_messages(60)
    split = 3_000
    sink = export(docs, split_bytes=split)
    assert len(sink.files) > 2
    assert {f.path for f in sink.files} == {PATH}
    assert all(f.closed and f.bytes_written <= split and not f.notes for f in sink.files)
    assert sink.files[0].text.split("\n")[0].endswith("🐳")
    for file in sink.files[1:]:
        assert file.text.split("\n")[0].endswith("(continued)")
    for file in sink.files:
        assert "- **Project:** claudelens" in file.text
        assert "**Models:**" in file.text.rsplit("---", 1)[-1]
        code_blocks(file.text)
    assert sum(f.records for f in sink.files) == 60
    assert sum(f.text.count("\n### ") for f in sink.files) == 60


def test_an_oversized_message_is_alone_with_a_note() -> None:
    docs = many_messages(12)
    docs[3]["messageData"] = {"role": "user", "content": "z" * 9_000}
    split = 3_000
    sink = export(docs, split_bytes=split)
    big = [f for f in sink.files if f.bytes_written > split]
    assert len(big) == 1
    assert big[0].notes
    assert big[0].records == 1


def test_markdown_helpers() -> None:
    assert fence_for("a ```` b") == "`````"
    assert fence_for("plain") == "```"
    assert inline_code("a`b") == "``a`b``"
    assert inline_code("`x") == "`` `x ``"
    assert balance_fences("x\n```py\nopen") == "x\n```py\nopen\n```"
    assert balance_fences("```\nclosed\n```") == "```\nclosed\n```"
    assert slugify("Fix: the BIG bug!! 🐛 in 日本") == "fix-the-big-bug-in-日本"
    assert slugify("") == ""
