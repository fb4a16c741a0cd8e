"""Images in a transcript (base64 `image` blocks, in a user's turn and inside a tool result)
survive the import and the json and jsonl exports byte for byte; the display text never holds
their data."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image

from dataport.formats.json_format import JsonWriter
from dataport.models.records import RecordKind
from tests.imports.fidelity import package_lines
from tests.imports.support import kinds, package, read
from tests.imports.test_transcripts import export_of
from tests.unit.format_sink import CONTEXT, MemorySink, write_session

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
