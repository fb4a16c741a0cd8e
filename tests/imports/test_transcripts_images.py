"""Images in a transcript (base64 `image` blocks, in a user's turn and inside a tool result)
survive the import and the json and jsonl exports byte for byte; the display text never holds
their data. The real fixture (a screenshot pasted into Claude Code 2.0.5) goes through the
fixture-wide tests too (tests/imports/test_transcripts.py: every key back in its file)."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace
from typing import Any

from PIL import Image

from dataport.formats.json_format import JsonWriter
from dataport.formats.markdown import MarkdownWriter
from dataport.formats.pdf import PdfWriter
from dataport.models.records import RecordKind
from tests.imports.fidelity import fixture_lines, package_lines
from tests.imports.fidelity import upload as upload_of
from tests.imports.support import kinds, package, read
from tests.imports.test_transcripts import export_of, export_sessions
from tests.unit.format_sink import CONTEXT, MemorySink, write_session
from tests.unit.test_formats_rendering import images, pdf_text

SID = "1e4a9c3b-5d6e-4f70-8a9b-0c1d2e3f4a5b"


def png(width: int, height: int) -> str:
    """A real PNG (noise, so it does not compress away), base64."""
    picture = Image.effect_noise((width, height), 64).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


SCREENSHOT, CHART = png(320, 200), png(40, 30)


def lines() -> list[dict[str, Any]]:
    screenshot, chart = SCREENSHOT, CHART
    common = {"isSidechain": False, "userType": "external", "cwd": "/home/noor/مشروع",
              "sessionId": SID, "version": "2.1.12", "gitBranch": "main"}
    return [
        {"parentUuid": None, **common, "type": "user", "message": {"role": "user", "content": [
            {"type": "text", "text": "ما الخطأ في هذه الصفحة؟"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": screenshot}}]},
         "uuid": "img-u1", "timestamp": "2026-01-10T09:00:00.000Z",
         "imagePasteIds": [1], "permissionMode": "default"},
        {"parentUuid": "img-u1", **common, "type": "assistant", "message": {
            "id": "msg_img1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "tool_use", "id": "toolu_img", "name": "Read",
                         "input": {"file_path": "/home/noor/مشروع/chart.png"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1800, "output_tokens": 40}},
         "requestId": "req_img1", "uuid": "img-a1", "timestamp": "2026-01-10T09:00:03.000Z"},
        {"parentUuid": "img-a1", **common, "type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_img", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": chart}}]}]},
         "uuid": "img-r1", "timestamp": "2026-01-10T09:00:04.000Z",
         "toolUseResult": {"type": "image", "file": {"type": "image/png",
                                                     "originalSize": 1234}},
         "sourceToolAssistantUUID": "img-a1"},
    ]


def upload() -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines())


def test_images_are_stored_exactly_and_never_as_text() -> None:
    records, issues = read(upload(), f"{SID}.jsonl")
    assert [i for i in issues if i.severity == "error"] == []
    messages = {m["uuid"]: m for m in kinds(records, RecordKind.MESSAGE)}
    original = {line["uuid"]: line for line in lines()}
    for uuid in ("img-u1", "img-r1"):
        assert messages[uuid]["messageData"] == original[uuid]["message"]
    assert messages["img-u1"]["content"] == "ما الخطأ في هذه الصفحة؟"
    for doc in messages.values():
        assert "iVBOR" not in doc["content"]  # a PNG's base64 signature
    assert messages["img-r1_result_0"]["content"] == "[image]"


def test_images_come_back_in_the_jsonl_export() -> None:
    records, _ = read(upload(), f"{SID}.jsonl")
    (path, exported), = package_lines(export_of(records)).items()
    assert path.endswith(f"/{SID}.jsonl")
    assert exported == lines()  # every line, key for key and byte for byte of the base64


def test_images_come_back_in_the_json_export() -> None:
    records, _ = read(upload(), f"{SID}.jsonl")
    sink = MemorySink()
    writer = JsonWriter(sink, context=CONTEXT, split_bytes=10**7)
    project = kinds(records, RecordKind.PROJECT)[0]
    writer.write_projects([project])
    (session,) = kinds(records, RecordKind.SESSION)
    write_session(writer, project, session, kinds(records, RecordKind.MESSAGE))
    writer.close()
    again, issues = read(package(sink, "json"), "export.zip")
    assert [i for i in issues if i.severity == "error"] == []
    assert kinds(again, RecordKind.MESSAGE) == kinds(records, RecordKind.MESSAGE)


# --- the real transcript: a screenshot pasted into Claude Code 2.0.5 ---------------------------

REAL = "claude-code-log-2.0.5-image"


def test_a_real_pasted_screenshot_is_stored_exactly_and_shown_as_a_picture_never_as_text(
) -> None:
    """The fixture's one line (a 1002x606 PNG and the question about it, tests/imports/
    transcripts/README.md): stored byte for byte, the markdown shows a labelled placeholder
    with its type and size, the PDF the picture itself, and neither shows the base64."""
    (line,) = fixture_lines(REAL)
    (block,) = [b for b in line.record["message"]["content"] if b["type"] == "image"]
    data = base64.b64decode(block["source"]["data"])
    assert data.startswith(b"\x89PNG")
    assert len(data) == 148_489
    records, issues = read(upload_of([REAL]), "claude.zip")
    assert [i for i in issues if i.severity == "error"] == []
    (message,) = kinds(records, RecordKind.MESSAGE)
    assert message["messageData"] == line.record["message"]  # the base64 to the byte
    assert message["content"].startswith("Do you think we could set up rewrites")
    assert "iVBOR" not in message["content"]

    sink = MemorySink()
    export_sessions(MarkdownWriter(sink, context=CONTEXT, split_bytes=10**7), records)
    text = "\n".join(file.text for file in sink.files)
    assert "[image · image/png · 148,489 bytes]" in text.replace("\\", "")
    assert "iVBOR" not in text
    assert block["source"]["data"][100:160] not in text

    sink = MemorySink()
    export_sessions(PdfWriter(sink, context=replace(CONTEXT, format="pdf"),
                              split_bytes=10**8), records)
    (pdf,) = [bytes(file.data) for file in sink.files]
    ((width, height, _),) = images(pdf).values()  # the picture, scaled to the page
    assert abs(width / height - 1002 / 606) < 0.01
    assert width >= 500
    assert "iVBOR" not in pdf_text(pdf)
