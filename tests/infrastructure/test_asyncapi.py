"""The committed AsyncAPI document is the one the code generates (`make asyncapi`), its
references resolve, and real frames, as the server encodes them, match its schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dataport.models.exports import ExportRequest
from dataport.models.jobs import ExportState, Job, JobError, JobKind, JobStatus, Progress
from dataport.progress.events import (
    ErrorEvent,
    UnsubscribedEvent,
    encode,
    progress_event,
    snapshot_event,
    terminal_event,
)
from infrastructure.asyncapi import document, main, render

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def test_committed_asyncapi_matches_the_code(tmp_path: Path) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.yaml is out of date: run `make asyncapi` and commit it")
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(render().replace("3.0.0", "2.6.0"), encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    assert main(["--check", str(COMMITTED)]) == 0


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves() -> None:
    spec = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    text = json.dumps(spec)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert refs
    for ref in refs:
        assert _resolve(spec, ref) is not None, ref
    assert spec["servers"]["local"]["host"] == "127.0.0.1:3001"
    assert "{webSocketApiId}" in spec["servers"]["deployed"]["host"]


def _job(status: JobStatus, progress: Progress) -> Job:
    created = AT - timedelta(seconds=30)
    return Job(job_id="0" * 32, kind=JobKind.EXPORT, user_id="66ad9b005f2b4a0012c0aaaa",
               status=status, created_at=created, updated_at=created,
               expires_at=int(AT.timestamp()) + 3600, state=ExportState(request=ExportRequest()),
               progress=progress, error=JobError(code="timeout", message="Too long.")
               if status is JobStatus.FAILED else None)


@pytest.mark.parametrize(("message", "frame"), [
    ("jobProgress", progress_event(_job(JobStatus.RUNNING, Progress()),
                                   Progress(phase="exporting", current=2, total=8, bytes=10),
                                   seq=3, at=AT)),
    ("jobSnapshot", snapshot_event(_job(JobStatus.RUNNING, Progress(phase="exporting",
                                                                    current=1, total=4)), AT)),
    ("jobFailed", terminal_event(_job(JobStatus.FAILED, Progress()), seq=4, at=AT)),
    ("unsubscribed", UnsubscribedEvent(job_id="0" * 32)),
    ("error", ErrorEvent(code="not_found", message="No job.")),
])
def test_real_frames_match_their_message_schema(message: str, frame: Any) -> None:
    spec = document()
    payload = _resolve(spec, spec["components"]["messages"][message]["payload"]["$ref"])
    schema = {**payload, "components": spec["components"]}
    wire = json.loads(encode(frame))
    jsonschema.validate(wire, schema)
    if message == "jobProgress":
        assert wire["progress"]["etaSeconds"] == 90  # 30 s for 2 of 8: 6 more at that pace
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**wire, "seq": -1}, schema)
