"""Markdown: one readable document per session, for people rather than programs.

`sessions/<project name>/<YYYY-MM-DD>-<slug of summary>-<first 8 of sessionId>.md` (numbered
only when split). The summary is the H1 title ("Session <id>" without one), then a metadata
list (project, path, session, started/ended, messages, tokens, tools, cost), then one section per
message: its role from `type` (never from userType), time and model, thinking folded in
`<details>`, text kept as Markdown, tool calls and results as fenced blocks, images as a
placeholder with their media type and size (never their base64). Lines Claude Code wrote into
the user's turn are not the user's (`common.message_role`): the compaction summary is a
"Conversation summary" section quoted under a note, `isMeta` lines a "Context" section folded
in a labelled `<details>`. Sidechain messages are marked in their heading and with a note;
derived tool documents are not sidechains to a reader, so they are not marked.

The models a session used are only known once its messages have been read, and a document is
streamed, so they close each file (`**Models:**`) rather than open it. A tool call or result
that its message already showed is not shown again by its derived document. Each part of a
split session repeats the title (marked "continued") and the metadata. Records are message
sections.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dataport.formats.base import ExportContext, ExportWriter, FileSink
from dataport.formats.common import (
    BoundedMemo,
    ToolNames,
    as_utc,
    block_key,
    content_blocks,
    context_note,
    count_text,
    decimal_text,
    image_placeholder,
    is_base64_document,
    message_role,
    message_thinking,
    model_of,
    plain_content,
    plain_json,
    safe_segment,
    text_of,
)
from dataport.formats.rolling import RollingFile
from dataport.models.documents import RawDocument, derived_ref

ROLES = {"user": "User", "assistant": "Assistant", "tool_use": "Tool call",
         "tool_result": "Tool result", "summary": "Conversation summary", "context": "Context"}
#: what a reader is told about lines the person did not type (see `common.message_role`)
SUMMARY_NOTE = ("Written by Claude Code when it compacted the conversation: a summary of the "
                "earlier messages, not typed by the user.")
CONTEXT_NOTE = "Added by Claude Code (a command expansion, a caveat), not typed by the user"
SHOWN_BLOCKS_MEMORY = 4096

_BACKTICKS = re.compile(r"`+")
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_NOT_WORD = re.compile(r"[\W_]+")
_CLOSING_DETAILS = re.compile(r"</details", re.IGNORECASE)
_PARAGRAPHS = "\n\n"


# --- Markdown text helpers ----------------------------------------------------------------------

def fence_for(text: str, char: str = "`") -> str:
    """A code fence longer than any backtick run inside `text` (at least three)."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    return char * max(3, longest + 1)


def fenced(text: str, info: str = "") -> str:
    """`text` verbatim in a code block that nothing inside it can close."""
    fence = fence_for(text)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{info}\n{body}{fence}"


def inline_code(text: str) -> str:
    ticks = "`" * (max((len(r) for r in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def escape_inline(text: str) -> str:
    """Plain text on one line, with Markdown's inline syntax escaped."""
    return _INLINE_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def balance_fences(text: str) -> str:
    """Close a code fence the text leaves open, so it cannot swallow the rest of the document."""
    open_fence: str | None = None
    for line in text.splitlines():
        match = _FENCE_LINE.match(line)
        if match is None:
            continue
        fence, rest = match.group(1), match.group(2)
        if open_fence is None:
            if not (fence[0] == "`" and "`" in rest):  # a backtick fence's info has no backtick
                open_fence = fence
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not rest.strip():
            open_fence = None
    return text if open_fence is None else f"{text.rstrip()}\n{open_fence}"


def slugify(text: str, max_chars: int = 60) -> str:
    """Lower-case words joined by `-` (letters of any script kept), cut at a word boundary."""
    slug = _NOT_WORD.sub("-", text.lower()).strip("-")
    if len(slug) > max_chars:
        slug = slug[:max_chars].rsplit("-", 1)[0] if "-" in slug[:max_chars] else slug[:max_chars]
    return slug


def readable_time(value: object) -> str:
    moment = as_utc(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "unknown"


# --- the writer ---------------------------------------------------------------------------------

class MarkdownWriter(ExportWriter):
    """Writes one `sessions/<project>/<date>-<slug>-<id8>.md` per session (see the module
    docstring)."""

    extension = "md"

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int) -> None:
        super().__init__(sink, context=context, split_bytes=split_bytes)
        self._file: RollingFile | None = None
        self._models: list[str] = []
        self._shown: BoundedMemo[str, bool] = BoundedMemo(SHOWN_BLOCKS_MEMORY)
        self._tools = ToolNames()

    @staticmethod
    def path_for(project: RawDocument, session: RawDocument) -> str:
        session_id = str(session.get("sessionId") or session.get("_id") or "")
        project_name = str(project.get("name") or "")
        if not project_name:
            project_name = str(project.get("path") or "").rstrip("/").rsplit("/", 1)[-1]
        started = as_utc(session.get("startedAt"))
        day = started.strftime("%Y-%m-%d") if started else "undated"
        summary = session.get("summary")
        slug = slugify(summary) if isinstance(summary, str) else ""
        name = "-".join(part for part in (day, slug or "session",
                                          safe_segment(session_id[:8], fallback="")) if part)
        folder = safe_segment(project_name, fallback="project", max_chars=100)
        return f"sessions/{folder}/{name}.md"

    def begin_session(self, project: RawDocument, session: RawDocument) -> None:
        self._models = []
        self._shown = BoundedMemo(SHOWN_BLOCKS_MEMORY)
        header = self._header(project, session)
        file: RollingFile | None = None

        def part_header() -> bytes:
            continued = file is not None and file.parts_opened > 1
            return header(continued)

        file = RollingFile(self.sink, self.path_for(project, session),
                           split_bytes=self.split_bytes, header=part_header,
                           footer=lambda: self._footer(self._models))
        self._file = file

    def write_message(self, message: RawDocument) -> None:
        assert self._file is not None, "write_message outside a session"
        section = self._section(message)
        if section is None:
            return
        models = self._models
        model = model_of(message)
        if model and model not in models:
            models = [*models, model]
        data = section.encode("utf-8")
        self._file.write(lambda: data, trailer_bytes=len(self._footer(models)),
                         label=f"message {message.get('uuid')}")
        self._models = models

    def end_session(self) -> None:
        if self._file is not None:
            self._file.ensure_open()  # a session without messages still gets its document
            self._file.close()
            self._file = None

    def close(self) -> None:
        self.end_session()

    # --- document parts -----------------------------------------------------------------------

    @staticmethod
    def _header(project: RawDocument, session: RawDocument) -> Callable[[bool], bytes]:
        session_id = str(session.get("sessionId") or session.get("_id") or "")
        summary = session.get("summary")
        title = escape_inline(summary) if isinstance(summary, str) and summary.strip() else \
            f"Session {escape_inline(session_id)}"
        cost = decimal_text(session.get("totalCost"))
        lines = [
            f"- **Project:** {escape_inline(str(project.get('name') or ''))}",
            f"- **Path:** {inline_code(str(project.get('path') or ''))}",
            f"- **Session:** {inline_code(session_id)}",
            f"- **Started:** {readable_time(session.get('startedAt'))}",
            f"- **Ended:** {readable_time(session.get('endedAt'))}",
            f"- **Messages:** {count_text(session.get('messageCount'))}",
            f"- **Tokens:** {count_text(session.get('inputTokens'))} input · "
            f"{count_text(session.get('outputTokens'))} output · "
            f"{count_text(session.get('totalTokens'))} total",
            f"- **Tools used:** {count_text(session.get('toolsUsed'))}",
            f"- **Cost:** {cost + ' USD' if cost else '—'}",
        ]

        def render(continued: bool) -> bytes:
            heading = f"# {title} (continued)" if continued else f"# {title}"
            return ("\n".join([heading, "", *lines]) + "\n").encode("utf-8")

        return render

    @staticmethod
    def _footer(models: Iterable[str]) -> bytes:
        shown = ", ".join(inline_code(model) for model in models) or "—"
        return f"\n---\n\n**Models:** {shown}\n".encode()

    def _section(self, message: RawDocument) -> str | None:
        """The Markdown of one message, None when all it holds has been shown already."""
        kind = message_role(message)
        derived = derived_ref(message.get("uuid")) is not None
        sidechain = bool(message.get("isSidechain")) and not derived
        heading = f"### {ROLES.get(kind, escape_inline(kind.title()))} · " \
                  f"{readable_time(message.get('timestamp'))}"
        model = model_of(message)
        if model and kind == "assistant":
            heading += f" · {inline_code(model)}"
        if sidechain:
            heading += " · sidechain"
        parts: list[str] = []
        if sidechain:
            parts.append("> *Sidechain: a sub-agent's message, outside the main thread.*")
        blocks = content_blocks(message)
        self._tools.learn(blocks)
        thinking = message_thinking(message, blocks)
        if thinking:
            parts.append(_details("Thinking", thinking))
        body: list[str] = []
        if blocks:
            body.extend(self._block(block) for block in blocks if block.get("type") != "thinking")
        else:
            body.append(balance_fences(plain_content(message)))
        body = [part for part in body if part]
        if body and kind == "summary":
            body = [f"> *{SUMMARY_NOTE}*\n>\n{_quoted(_PARAGRAPHS.join(body))}"]
        elif body and kind == "context":
            body = [_details(context_note(message, CONTEXT_NOTE), _PARAGRAPHS.join(body))]
        parts = [part for part in (*parts, *body) if part]
        if not parts and derived:
            return None
        return "\n" + "\n\n".join([heading, *parts]) + "\n"

    def _block(self, block: Mapping[str, Any]) -> str:
        kind = block.get("type")
        key = block_key(block)
        if key is not None:
            if key in self._shown:
                return ""
            self._shown.put(key, True)
        if kind == "text":
            return balance_fences(str(block.get("text") or ""))
        if kind == "tool_use":
            name = str(block.get("name") or "tool")
            label = f"**Tool call:** {inline_code(name)}"
            if block.get("id"):
                label += f" · {inline_code(str(block['id']))}"
            body = plain_json(block.get("input", {}), indent=True).decode("utf-8")
            return f"{label}\n\n{fenced(body, 'json')}"
        if kind == "tool_result":
            label = "**Tool result**"
            tool = self._tools.name_for(block)
            if tool:
                label += f" for {inline_code(tool)}"
            if block.get("tool_use_id"):
                label += f" · {inline_code(str(block['tool_use_id']))}"
            if block.get("is_error"):
                label += " · **error**"
            content = text_of(block.get("content"), image=image_placeholder)
            return f"{label}\n\n{fenced(content)}"
        if kind == "image" or is_base64_document(block):
            return f"*{escape_inline(image_placeholder(block))}*"
        return fenced(plain_json(block, indent=True).decode("utf-8"), "json")


def _quoted(text: str) -> str:
    """Markdown as a block quote: every line behind `> ` (fences balanced first, so none can
    run out of the quote)."""
    return "\n".join(f"> {line}" if line else ">" for line in balance_fences(text).split("\n"))


def _details(summary: str, text: str) -> str:
    """Folded text; a `</details` inside it is escaped so it cannot close the fold early."""
    inner = balance_fences(_CLOSING_DETAILS.sub("&lt;/details", text))
    return f"<details><summary>{summary}</summary>\n\n{inner}\n\n</details>"
