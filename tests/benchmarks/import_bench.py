"""Import benchmark: the real import flow through the local stack for an upload of a given size.

    .venv/bin/python -m tests.benchmarks.import_bench [--mb 20]

It writes a dataport JSON document of about `--mb` megabytes (seed-like sessions: threads, tool
calls and their derived documents, sidechains, exact costs), then, as an account with no data,
creates an import over HTTP, uploads the file through the presigned POST, validates it and
executes it (merge). It reports throughput in messages per second (validation, staging and
comparison; execution; the whole) and the peak memory of each workflow task. Each task runs in a
process of its own (import_probe.py), and its peak RSS is read as Lambda reports it; the
local stack (moto holding the upload, the MongoDB server) lives in other processes.

The target: a worker's peak stays far below its Lambda memory (1024 MB) and does not grow with
the upload: it is bounded by a batch of records and the largest session, not by the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import requests
from bson.decimal128 import Decimal128

import infrastructure.local  # noqa: F401 (puts the layer on sys.path, as Lambda's /opt/python)
from dataport.formats.base import ExportContext, Numbering
from dataport.formats.json_format import JsonWriter
from dataport.models.tasks import ImportStep
from dataport.settings import get_settings
from dataport.source.mongo import Document, connect, reset
from dataport.workflows import imports as import_tasks
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack

MB = 1_000_000
MIB = 2**20
ROOT = Path(__file__).resolve().parents[2]
NEWCOMER = "66ad9b005f2b4a0012c0bbbb"
PROJECTS = 10


# ---------------------------------------------------------------------------- the input


@dataclass
class _LocalFile:
    stream: BinaryIO
    bytes_written: int = 0
    records: int = 0

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        self.bytes_written += len(data)

    def add_records(self, count: int = 1) -> None:
        self.records += count

    def add_note(self, note: str) -> None:
        """Notes are for manifests; a single document has none."""

    def set_content(self, size: int, sha256: str) -> None:
        pass


@dataclass
class _OneFileSink:
    """The JSON writer's sink, writing its (single) conversations file to `path`."""

    path: Path
    files: list[_LocalFile] = field(default_factory=list)

    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> _LocalFile:
        assert not self.files, "one file only: the split size is larger than the input"
        self.files.append(_LocalFile(self.path.open("wb")))
        return self.files[0]

    def close(self, file: Any) -> None:
        file.stream.close()


def write_input(path: Path, target_bytes: int, seed_value: int = 11) -> tuple[int, int]:
    """A dataport JSON document of about `target_bytes`; (sessions, messages) it holds."""
    rng = seed._Rng(seed_value)
    context = ExportContext(job_id="benchmark", owner_id=seed.DEMO_USER_ID,
                            created_at=datetime.now(UTC), format="json")
    sink = _OneFileSink(path)
    writer = JsonWriter(sink, context=context, split_bytes=10 * target_bytes + 10**9)
    start = datetime(2025, 6, 2, 8, tzinfo=UTC)
    projects = [{"_id": rng.object_id(start), "user_id": rng.object_id(start),
                 "name": f"project-{i}", "path": f"/Users/bench/src/project-{i}",
                 "createdAt": start, "updatedAt": start} for i in range(PROJECTS)]
    sessions = messages = 0
    while not sink.files or sink.files[0].bytes_written < target_bytes:
        project = projects[sessions % PROJECTS]
        session_id = rng.uuid()
        begin = start + timedelta(minutes=17 * sessions)
        totals = seed._Conversation(rng, session_id, begin, str(project["path"])).run(
            rng.randint(20, 80))
        documents = totals.documents
        times = [doc["timestamp"] for doc in documents]
        session: Document = {
            "_id": rng.object_id(min(times)), "sessionId": session_id,
            "projectId": project["_id"], "startedAt": min(times), "endedAt": max(times),
            "messageCount": len(documents), "totalCost": Decimal128(totals.cost),
            "inputTokens": totals.input_tokens, "outputTokens": totals.output_tokens,
            "totalTokens": totals.input_tokens + totals.output_tokens,
            "toolsUsed": totals.tools, "summary": rng.choice(seed.SUMMARIES),
            "createdAt": min(times), "updatedAt": max(times)}
        writer.begin_session(project, session)
        for doc in documents:
            writer.write_message(doc)
        writer.end_session()
        sessions += 1
        messages += len(documents)
    writer.close()
    return sessions, messages


# ---------------------------------------------------------------------------- the tasks


@dataclass
class TaskMemory:
    """Runs validate, stage, execute and finalize each in a process of their own (import_probe.py),
    keeping each task's peak RSS and wall time, as Lambda would report them."""

    peaks: dict[str, int] = field(default_factory=dict)
    baseline: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    _originals: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def __enter__(self) -> TaskMemory:
        for task in ("validate", "stage", "execute", "finalize"):
            self._originals[task] = getattr(import_tasks, task)
            setattr(import_tasks, task, self._probe(task))
        return self

    def __exit__(self, *_: object) -> None:
        for task, original in self._originals.items():
            setattr(import_tasks, task, original)

    def _probe(self, task: str) -> Callable[..., ImportStep]:
        def in_own_process(step: ImportStep, *_: object) -> ImportStep:
            started = time.monotonic()
            answer = subprocess.run(
                [sys.executable, "-m", "tests.benchmarks.import_probe", task], check=False,
                input=step.model_dump_json(by_alias=True), capture_output=True, text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
            if answer.returncode:
                print(f"{task} failed:\n{answer.stderr[-3000:]}", file=sys.stderr)
                answer.check_returncode()
            probe = json.loads(answer.stdout.strip().splitlines()[-1])
            dry = step.dry_run and task in ("execute", "finalize")
            key = f"{task} (dry run)" if dry else task
            self.peaks[key] = max(self.peaks.get(key, 0), probe["peak_rss"])
            self.seconds[key] = self.seconds.get(key, 0.0) + time.monotonic() - started
            self.cpu_seconds[key] = self.cpu_seconds.get(key, 0.0) + probe["cpu_seconds"]
            self.baseline = max(self.baseline, probe["baseline_rss"])
            return ImportStep.model_validate(probe["step"])

        return in_own_process


def _wait(api: str, headers: dict[str, str], job_id: str, until: set[str]) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = requests.get(f"{api}/imports/{job_id}", headers=headers,
                                           timeout=30).json()
        if job["status"] in until:
            return job
        time.sleep(0.5)


def run(megabytes: float, dry_run: bool) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        upload = Path(scratch) / "conversations-0001.json"
        started = time.monotonic()
        sessions, messages = write_input(upload, int(megabytes * MB))
        size = upload.stat().st_size
        print(f"input: {size / MB:.1f} MB, {sessions:,} sessions, {messages:,} messages "
              f"(written in {time.monotonic() - started:.0f} s)")
        with LocalStack() as stack:
            os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
            name = "dataport_import_bench"
            connect(stack.mongo_uri, name).client.drop_database(name)
            os.environ["MONGODB_DATABASE"] = name
            get_settings.cache_clear()
            reset()
            api, headers = stack.rest_url, stack.auth_headers(NEWCOMER)
            created = requests.post(f"{api}/imports", headers=headers, timeout=30, json={
                "filename": upload.name, "size": size}).json()
            job_id, form = created["jobId"], created["upload"]
            with upload.open("rb") as file:
                requests.post(form["url"], data=form["fields"], files={"file": (upload.name,
                                                                                file)},
                              timeout=600).raise_for_status()
            with TaskMemory() as memory:
                started = time.monotonic()
                requests.post(f"{api}/imports/{job_id}/validate", headers=headers,
                              timeout=30).raise_for_status()
                job = _wait(api, headers, job_id, {"awaiting_decision", "failed"})
                validated = time.monotonic() - started
                if job["status"] != "awaiting_decision":
                    raise SystemExit(f"validation {job['status']}: {job['report']}")
                if dry_run:
                    requests.post(f"{api}/imports/{job_id}/execute", headers=headers,
                                  timeout=30, json={"strategy": "merge", "dryRun": True})
                    time.sleep(1)
                    _wait(api, headers, job_id, {"awaiting_decision", "failed"})
                started = time.monotonic()
                requests.post(f"{api}/imports/{job_id}/execute", headers=headers, timeout=30,
                              json={"strategy": "merge"}).raise_for_status()
                job = _wait(api, headers, job_id, {"succeeded", "failed"})
                executed = time.monotonic() - started
            if job["status"] != "succeeded":
                raise SystemExit(f"import {job['status']}: {job.get('error')}")
            written = job["outcome"]["messages"]["inserted"]
            connect(stack.mongo_uri, name).client.drop_database(name)
    print(f"validate + stage + compare  {validated:7.1f} s  {messages / validated:8,.0f} msg/s")
    print(f"execute (merge, new)        {executed:7.1f} s  {written / executed:8,.0f} msg/s")
    total = validated + executed
    print(f"whole import                {total:7.1f} s  {messages / total:8,.0f} msg/s  "
          f"({size / MB / total:.2f} MB/s)")
    print(f"worker baseline RSS {memory.baseline / MIB:.0f} MiB; peak RSS per task: " + ", ".join(
        f"{task} {peak / MIB:.0f} MiB ({memory.seconds[task]:.0f} s)"
        for task, peak in memory.peaks.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=20, help="size of the upload (MB)")
    parser.add_argument("--dry-run", action="store_true", help="also time a dry run first")
    args = parser.parse_args(argv)
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    return run(args.mb, args.dry_run)


if __name__ == "__main__":
    raise SystemExit(main())
