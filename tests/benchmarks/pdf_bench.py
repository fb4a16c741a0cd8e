"""PDF export benchmark: render a ~2,000-page export through PdfWriter, report pages per second
and peak memory (the number that sizes the export worker's Lambda).

    .venv/bin/python -m tests.benchmarks.pdf_bench [--pages 2000] [--max-pages 500]
                                                   [--content mixed|rtl|code]

`--content`: `mixed` (default) is English prose with samples of other scripts, Python fences
and Bash calls; `rtl` makes half the prose Arabic or Hebrew (shaped by HarfBuzz); `code` makes
every reply carry fences in several languages and a Write and a Read of source files (all of
it highlighted by Pygments).

The sink counts the bytes and throws them away, so what is measured is the writer: fpdf2's
layout, font subsetting and compression, and the bound its volumes keep on memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128

if find_spec("dataport") is None:  # run as a tool from the repo root: use the layer's source
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "layers" / "dataport"))

from dataport.formats.base import ExportContext, Numbering, OutputFile
from dataport.formats.pdf import PdfWriter

MIB = 1 << 20
CONTEXT = ExportContext(job_id="bench", owner_id="66ad9b005f2b4a0012c0aaaa",
                        created_at=datetime(2025, 8, 3, 9, tzinfo=UTC), format="pdf",
                        filters={"dateRange": {"start": "2025-07-01T00:00:00Z"}})
WORDS = ("the", "config", "loader", "reads", "every", "environment", "variable", "once", "and",
         "caches", "it", "so", "that", "handlers", "stay", "fast", "while", "tests", "can",
         "still", "override", "values", "through", "fixtures")
SAMPLES = ("Ελληνικά κείμενα", "Кириллица и код", "日本語のテキスト", "中文文本示例", "한국어 문장",
           "✓ done", "deploy 🚀")
ARABIC_WORDS = ("يقرأ", "المحمل", "كل", "متغيرات", "البيئة", "مرة", "واحدة", "ويحفظها", "حتى",
                "تبقى", "المعالجات", "سريعة", "والاختبارات", "يمكنها")
HEBREW_WORDS = ("הטוען", "קורא", "כל", "משתני", "הסביבה", "פעם", "אחת", "ושומר", "אותם", "כדי",
                "שהמטפלים", "יישארו", "מהירים", "והבדיקות")
FENCES = {
    "typescript": "export function add(a: number, b: number): number {\n  return a + b;\n}",
    "rust": "fn main() {\n    let v: Vec<u32> = (1..10).collect();\n    println!(\"{v:?}\");\n}",
    "sql": "SELECT id, name FROM users WHERE active = 1 ORDER BY name;",
    "bash": "for f in *.py; do\n  ruff check \"$f\" && echo ok\ndone",
}
CODE = '''def load(path: str) -> dict[str, str]:
    """Read KEY=VALUE lines, skipping comments."""
    values = {}
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values'''


@dataclass
class CountingFile:
    bytes_written: int = 0
    records: int = 0
    notes: list[str] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.bytes_written += len(data)

    def add_records(self, count: int = 1) -> None:
        self.records += count

    def add_note(self, note: str) -> None:
        self.notes.append(note)

    def set_content(self, size: int, sha256: str) -> None:
        pass


@dataclass
class DiscardingSink:
    files: list[CountingFile] = field(default_factory=list)

    def open(self, path: str, numbering: Numbering = Numbering.WHEN_SPLIT) -> CountingFile:
        del path, numbering
        self.files.append(CountingFile())
        return self.files[-1]

    def close(self, file: OutputFile) -> None:
        del file


def prose(rng: random.Random, words: int, content: str = "mixed") -> str:
    vocabulary: tuple[str, ...] = WORDS
    if content == "rtl" and rng.random() < 0.5:
        vocabulary = ARABIC_WORDS if rng.random() < 0.5 else HEBREW_WORDS
    text = " ".join(rng.choice(vocabulary) for _ in range(words))
    if rng.random() < 0.3:
        text += f" ({rng.choice(SAMPLES)})"
    return text[0].upper() + text[1:] + "."


def session_messages(rng: random.Random, session_id: str, start: datetime,
                     count: int, content: str = "mixed") -> list[dict[str, Any]]:
    """A Claude Code session: prompts, replies with code, tool calls and their results."""
    docs: list[dict[str, Any]] = []
    for i in range(count):
        when = start + timedelta(seconds=20 * i)
        uuid = f"{session_id[:8]}-{i:04d}-4000-8000-000000000000"
        base = {"_id": ObjectId(), "uuid": uuid, "sessionId": session_id, "timestamp": when,
                "isSidechain": False, "userType": "external"}
        if i % 3 == 0:
            text = prose(rng, rng.randint(15, 60), content)
            docs.append(base | {"type": "user", "content": text,
                                "messageData": {"role": "user", "content": text}})
            continue
        text = "\n\n".join(prose(rng, rng.randint(20, 70), content)
                             for _ in range(rng.randint(1, 3)))
        if content == "code":
            language = rng.choice(list(FENCES))
            text += f"\n\n```python\n{CODE}\n```\n\n```{language}\n{FENCES[language]}\n```"
        elif rng.random() < 0.4:
            text += f"\n\n```python\n{CODE}\n```"
        call: dict[str, Any] = {
            "type": "tool_use", "id": f"toolu_{uuid}", "name": "Bash",
            "input": {"command": "pytest -q tests/unit", "description": "run the tests"}}
        if content == "code" and i % 3 == 1:
            call = {"type": "tool_use", "id": f"toolu_{uuid}", "name": "Write",
                    "input": {"file_path": f"src/loader_{i}.py", "content": CODE}}
        elif content == "code":
            call = {"type": "tool_use", "id": f"toolu_{uuid}", "name": "Read",
                    "input": {"file_path": f"src/loader_{i}.py"}}
        blocks: list[dict[str, Any]] = [{"type": "thinking", "thinking": prose(rng, 40,
                                                                               content)},
                                        {"type": "text", "text": text}, call]
        docs.append(base | {
            "type": "assistant", "content": text, "model": "claude-opus-4-1-20250805",
            "costUsd": Decimal128(Decimal(rng.randint(1, 90_000)) / 1_000_000),
            "usage": {"input_tokens": 4, "cache_read_input_tokens": rng.randint(1, 20_000),
                      "output_tokens": rng.randint(10, 900)},
            "messageData": {"role": "assistant", "model": "claude-opus-4-1-20250805",
                            "content": blocks}})
        output = "\n".join(f"tests/unit/test_{n:03d}.py ....{'.' * rng.randint(0, 30)}"
                           for n in range(rng.randint(3, 25)))
        if call["name"] == "Read":
            output = "\n".join(f"{n:>6}→{line}" for n, line in enumerate(CODE.split("\n"), 1))
        elif call["name"] == "Write":
            output = "File created successfully at: " + call["input"]["file_path"]
        result = {"type": "tool_result", "tool_use_id": call["id"], "content": output}
        docs.append(base | {"uuid": f"{uuid}_result_0", "type": "tool_result",
                            "isSidechain": True, "content": output, "messageData": result})
    return docs


def run(pages: int, max_pages: int, seed: int, content: str = "mixed") -> None:
    rng = random.Random(seed)
    sink = DiscardingSink()
    writer = PdfWriter(sink, context=CONTEXT, split_bytes=100 * MIB, max_pages=max_pages)
    project = {"_id": ObjectId(), "name": "claudelens", "path": "/Users/alex/github/claudelens"}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu_started = time.perf_counter(), time.process_time()
    sessions = messages = 0
    start = datetime(2025, 7, 1, tzinfo=UTC)
    while writer.pages < pages:
        session_id = f"{sessions:08x}-0000-4000-8000-000000000000"
        docs = session_messages(rng, session_id, start + timedelta(hours=sessions), 40,
                                content)
        session = {"sessionId": session_id, "projectId": project["_id"],
                   "summary": prose(rng, 8)[:-1], "startedAt": docs[0]["timestamp"],
                   "endedAt": docs[-1]["timestamp"], "messageCount": len(docs),
                   "totalCost": Decimal128("1.25"), "inputTokens": 120_000,
                   "outputTokens": 4_000, "toolsUsed": 13}
        writer.begin_session(project, session)
        for doc in docs:
            writer.write_message(doc)
        writer.end_session()
        sessions += 1
        messages += len(docs)
    writer.close()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    written = sum(f.bytes_written for f in sink.files)
    print(f"content {content}  sessions {sessions:,}  messages {messages:,}  "
          f"volumes {len(sink.files)} "
          f"(max {max_pages} pages each)")
    print(f"pages {writer.pages:,}  pdf bytes {written / MIB:.1f} MiB  time {elapsed:.1f} s "
          f"(cpu {cpu:.1f} s)  {writer.pages / elapsed:.0f} pages/s ({writer.pages / cpu:.0f} "
          f"per cpu second)")
    print(f"peak RSS {peak:.0f} MiB (before rendering {rss_before:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--max-pages", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--content", choices=("mixed", "rtl", "code"), default="mixed")
    args = parser.parse_args()
    run(args.pages, args.max_pages, args.seed, args.content)


if __name__ == "__main__":
    main()
