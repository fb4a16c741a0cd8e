"""CSV for spreadsheets: `sessions.csv` and `messages.csv` (numbered only when split).

RFC 4180 through the csv module (quoted where needed, CRLF row ends), UTF-8 with a BOM at the
start of every file and the header row in every file, so each part opens on its own in Excel.
Decimals (totalCost, costUsd) are exact positional decimal strings (`0.0000001`, never `1E-7`),
times ISO 8601 UTC with milliseconds, booleans `true`/`false`, absent values empty. Messages
carry `costComputedBy` (a cost dataport computed, docs/imports.md) and Claude Code's flags
`isMeta`, `isCompactSummary`, `agentId` from the line they were imported from.

Formula injection: a text cell taken from the data (content, summary, names, paths, ids, model,
tool names) that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
so a spreadsheet shows it instead of evaluating it. Cells we produce ourselves from numbers,
dates and booleans are never changed: they are plain values (a negative number stays a number),
and an import must not strip anything from them. An importer reading text columns back should
drop one leading `'` when the character after it is one of those six.

A session continued by the next worker invocation gets its row again in that invocation's file:
the rows are identical and `sessionId` is the identity. Records are rows (the header row is not
one). Both files are open at the same time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Final

from dataport.formats.base import ExportContext, ExportWriter, FileSink
from dataport.formats.common import (
    ToolNames,
    content_blocks,
    decimal_text,
    iso_ms,
    model_of,
    usage_of,
)
from dataport.formats.rolling import RollingFile
from dataport.models.documents import COST_COMPUTED_BY, RawDocument, agent_id, transcript_field

SESSION_COLUMNS: Final = (
    "sessionId", "projectName", "projectPath", "summary", "startedAt", "endedAt",
    "messageCount", "inputTokens", "outputTokens", "totalTokens", "toolsUsed", "totalCost",
)
#: the message columns before issue 12 (still read back as ours)
MESSAGE_COLUMNS_V1: Final = (
    "sessionId", "uuid", "parentUuid", "timestamp", "type", "isSidechain", "model",
    "inputTokens", "outputTokens", "cacheCreationInputTokens", "cacheReadInputTokens",
    "costUsd", "toolName", "content",
)
#: costComputedBy: what computed costUsd (empty: the source reported it); isMeta,
#: isCompactSummary, agentId: Claude Code's flags (docs/imports.md), empty when the line had none
MESSAGE_COLUMNS: Final = (*MESSAGE_COLUMNS_V1, "costComputedBy", "isMeta", "isCompactSummary",
                          "agentId")
BOM: Final = "\ufeff".encode()
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: object) -> str:
    """A text cell from the data, neutralised against formula injection."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def number_cell(value: object) -> str:
    """An integer we show as it is stored ("" when absent or not a number)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else ""


def bool_cell(value: object) -> str:
    return "" if value is None else ("true" if value else "false")


def csv_row(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


class _RowEncoder:
    """`csv_row` for a stream of rows: one buffer and csv writer reused for every row."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def __call__(self, cells: Sequence[str]) -> bytes:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.writerow(cells)
        return buffer.getvalue().encode("utf-8")


class CsvWriter(ExportWriter):
    """Writes `sessions.csv` and `messages.csv` (see the module docstring)."""

    extension = "csv"

    def __init__(self, sink: FileSink, *, context: ExportContext, split_bytes: int) -> None:
        super().__init__(sink, context=context, split_bytes=split_bytes)
        session_header = BOM + csv_row(SESSION_COLUMNS)
        message_header = BOM + csv_row(MESSAGE_COLUMNS)
        self._sessions = RollingFile(sink, "sessions.csv", split_bytes=split_bytes,
                                     header=lambda: session_header)
        self._messages = RollingFile(sink, "messages.csv", split_bytes=split_bytes,
                                     header=lambda: message_header)
        self._tools = ToolNames()
        self._session_id = ""
        self._row = _RowEncoder()

    def begin_session(self, project: RawDocument, session: RawDocument) -> None:
        self._session_id = str(session.get("sessionId") or "")
        row = self._row([
            text_cell(session.get("sessionId")),
            text_cell(project.get("name")),
            text_cell(project.get("path")),
            text_cell(session.get("summary")),
            iso_ms(session.get("startedAt")) or "",
            iso_ms(session.get("endedAt")) or "",
            number_cell(session.get("messageCount")),
            number_cell(session.get("inputTokens")),
            number_cell(session.get("outputTokens")),
            number_cell(session.get("totalTokens")),
            number_cell(session.get("toolsUsed")),
            decimal_text(session.get("totalCost")),
        ])
        self._sessions.write(lambda: row, label=f"the row of session {self._session_id}")

    def write_message(self, message: RawDocument) -> None:
        blocks = content_blocks(message)
        self._tools.learn(blocks)
        usage = usage_of(message)
        row = self._row([
            text_cell(message.get("sessionId") or self._session_id),
            text_cell(message.get("uuid")),
            text_cell(message.get("parentUuid")),
            iso_ms(message.get("timestamp")) or "",
            text_cell(message.get("type")),
            bool_cell(message.get("isSidechain")),
            text_cell(model_of(message)),
            number_cell(usage.get("input_tokens")),
            number_cell(usage.get("output_tokens")),
            number_cell(usage.get("cache_creation_input_tokens")),
            number_cell(usage.get("cache_read_input_tokens")),
            decimal_text(message.get("costUsd")),
            text_cell(", ".join(self._tools.names_in(blocks))),
            text_cell(message.get("content")),
            text_cell(message.get(COST_COMPUTED_BY)),
            bool_cell(transcript_field(message, "isMeta")),
            bool_cell(transcript_field(message, "isCompactSummary")),
            text_cell(agent_id(message)),
        ])
        self._messages.write(lambda: row, label=f"the row of message {message.get('uuid')}")

    def end_session(self) -> None:
        """Rows are complete as written: nothing to finish per session."""

    def close(self) -> None:
        self._sessions.close()
        self._messages.close()
