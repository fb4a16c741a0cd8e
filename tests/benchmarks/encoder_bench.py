"""Encoder and format-writer micro-benchmark (issue 10): messages per second, in memory.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.encoder_bench [--messages N]

The corpus is the local stack's sample data (infrastructure/local/seed.py), passed through
`bson.encode`/`bson.decode` with the client's codec options, so every document has exactly the
types a pymongo cursor yields. Reported: `canonical_json` against `bson.json_util` (the old
encoder) and orjson on plain data (the ceiling), and each writer (json, jsonl, csv) writing the
corpus into a sink that keeps nothing.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import bson
import orjson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS

from dataport.formats.base import ExportContext, ExportWriter, Numbering, OutputFile
from dataport.formats.common import canonical_json
from dataport.formats.csv_format import CsvWriter
from dataport.formats.json_format import JsonWriter
from dataport.formats.jsonl import JsonlWriter
from infrastructure.local import seed

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
CONTEXT = ExportContext(job_id="bench", owner_id="66ad9b005f2b4a0012c0aaaa",
                        created_at=datetime(2025, 8, 3, tzinfo=UTC), format="json")


def corpus(count: int) -> list[dict[str, Any]]:
    """About `count` message documents of sample sessions, as a cursor yields them."""
    rng = seed._Rng(7)
    docs: list[dict[str, Any]] = []
    while len(docs) < count:
        conversation = seed._Conversation(rng, rng.uuid(), datetime(2025, 7, 1, tzinfo=UTC),
                                          "/Users/alex/github/claudelens")
        docs.extend(conversation.run(rng.randint(4, 30)).documents)
    return [bson.decode(bson.encode(doc), CODEC) for doc in docs[:count]]


class _NullFile:
    bytes_written = 0

    def write(self, data: bytes) -> None:
        self.bytes_written += len(data)

    def add_records(self, count: int = 1) -> None:
        pass

    def add_note(self, note: str) -> None:
        pass

    def set_content(self, size: int, sha256: str) -> None:
        pass


class NullSink:
    def __init__(self) -> None:
        self.bytes = 0

    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> OutputFile:
        return _NullFile()

    def close(self, file: OutputFile) -> None:
        self.bytes += file.bytes_written


def rate(label: str, count: int, run: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()  # CPU time: the machine may be shared
        run()
        best = min(best, time.process_time() - started)
    per_second = count / best
    print(f"{label:<34} {per_second:>10,.0f} msg/s")
    return per_second


def write_all(kind: type[ExportWriter], docs: list[dict[str, Any]]) -> None:
    sink = NullSink()
    writer = kind(sink, context=CONTEXT, split_bytes=1 << 40)
    project = {"_id": bson.ObjectId(), "name": "claudelens", "path": "/Users/alex/x"}
    session_id = None
    for doc in docs:
        if doc["sessionId"] != session_id:
            if session_id is not None:
                writer.end_session()
            session_id = doc["sessionId"]
            writer.begin_session(project, {"sessionId": session_id, "summary": "s"})
        writer.write_message(doc)
    writer.end_session()
    writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args(argv)
    docs = corpus(args.messages)
    random.seed(1)
    print(f"{len(docs)} sample messages, "
          f"{sum(len(canonical_json(d)) for d in docs) / len(docs):,.0f} bytes each as JSON")

    def old() -> None:
        for doc in docs:
            json_util.dumps(doc, json_options=CANONICAL_JSON_OPTIONS, ensure_ascii=False,
                            separators=(",", ":")).encode()

    plain = [orjson.loads(json_util.dumps(doc)) for doc in docs]
    rate("bson.json_util canonical", len(docs), old)
    rate("canonical_json", len(docs), lambda: [canonical_json(doc) for doc in docs])
    rate("orjson on plain data (ceiling)", len(docs), lambda: [orjson.dumps(d) for d in plain])
    kinds: list[type[ExportWriter]] = [JsonWriter, JsonlWriter, CsvWriter]
    for kind in kinds:
        rate(f"{kind.__name__} into a null sink", len(docs), partial(write_all, kind, docs))


if __name__ == "__main__":
    main()
