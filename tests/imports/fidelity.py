"""The real Claude Code transcripts of tests/imports/transcripts (origin and licence in its
README) as an upload, and the line-by-line comparison of a jsonl export with them.

A fixture is a folder holding one `~/.claude/projects` tree (`<project dir>/<files>`); the
upload zips every fixture under `claude/projects/`. A kept line (user, assistant, summary) is
found again in the export by its place (`projects/<project dir>/<path>`) and its uuid (summary
lines by their position among the summary lines of their file), and each of its keys counts as
surviving when the exported line has it with a value equal after JSON normalisation (both parsed
by `json.loads`).
"""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.imports.support import zip_bytes

ROOT = Path(__file__).parent / "transcripts"
FIXTURES = sorted(p.name for p in ROOT.iterdir() if p.is_dir())
KEPT = frozenset({"user", "assistant", "system", "summary"})


@dataclass(frozen=True)
class Line:
    fixture: str
    path: str  # projects/<project dir>/<file path>, as the jsonl export names it
    number: int
    record: dict[str, Any]


def fixture_lines(fixture: str) -> list[Line]:
    """Every line of a fixture's files, parsed."""
    lines = []
    base = ROOT / fixture
    for file in sorted(base.rglob("*.jsonl")):
        path = "projects/" + file.relative_to(base).as_posix()
        for number, text in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if text.strip():
                lines.append(Line(fixture, path, number, json.loads(text)))
    return lines


def threaded(lines: list[Line]) -> set[str]:
    """The uuids of lines of types never imported (progress, ...) that a line of a kept type
    names as its parent (parentUuid, logicalParentUuid), directly or through other such lines:
    the import keeps them so the thread does not break (docs/imports.md). Worked out here
    from the whole fixture, independently of the reader's bounded memory."""
    others = {line.record["uuid"]: line.record for line in lines
              if line.record.get("type") not in KEPT and isinstance(line.record.get("uuid"), str)}
    found: set[str] = set()
    for line in lines:
        if line.record.get("type") not in KEPT:
            continue
        for name in ("parentUuid", "logicalParentUuid"):
            link = line.record.get(name)
            while isinstance(link, str) and link in others and link not in found:
                found.add(link)
                link = others[link].get("parentUuid")
    return found


def kept(lines: list[Line]) -> list[Line]:
    """The lines an import stores (kept types, and the lines their thread runs through)."""
    through = threaded(lines)
    return [line for line in lines
            if line.record.get("type") in KEPT or line.record.get("uuid") in through]


def upload(fixtures: list[str]) -> bytes:
    """The fixtures as one zipped `~/.claude/projects` tree."""
    entries = []
    for fixture in fixtures:
        base = ROOT / fixture
        for file in sorted(base.rglob("*.jsonl")):
            entries.append((f"claude/projects/{file.relative_to(base).as_posix()}",
                            file.read_bytes()))
    return zip_bytes(entries)


def package_lines(package: bytes) -> dict[str, list[dict[str, Any]]]:
    """The lines of every transcript file of a jsonl export, by path."""
    out: dict[str, list[dict[str, Any]]] = {}
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        for name in archive.namelist():
            if name.endswith(".jsonl"):
                text = archive.read(name).decode("utf-8")
                out[name] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


@dataclass
class Fidelity:
    """How much of the kept lines came back, per fixture."""

    keys: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    in_order: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def share(self) -> float:
        total = sum(self.keys.values())
        return sum(self.kept.values()) / total if total else 1.0


def normal(value: Any) -> Any:
    return json.loads(json.dumps(value, ensure_ascii=False))


def compare(originals: list[Line], exported: dict[str, list[dict[str, Any]]]) -> Fidelity:
    """Every key of every kept original line looked up in the export (see the module doc)."""
    result = Fidelity()
    by_uuid = {path: {line.get("uuid"): line for line in lines if "uuid" in line}
               for path, lines in exported.items()}
    summaries = {path: [line for line in lines if line.get("type") == "summary"]
                 for path, lines in exported.items()}
    summary_seen: Counter[str] = Counter()
    order: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for line in kept(originals):
        record = line.record
        result.lines[line.fixture] += 1
        result.keys[line.fixture] += len(record)
        if record.get("type") == "summary":
            index = summary_seen[line.path]
            summary_seen[line.path] += 1
            candidates = summaries.get(line.path, [])
            back = candidates[index] if index < len(candidates) else None
        else:
            back = by_uuid.get(line.path, {}).get(record.get("uuid"))
            if back is not None:
                order[line.path].append((line.number, exported[line.path].index(back)))
        if back is None:
            result.problems.append(f"{line.path}:{line.number} is missing from the export")
            continue
        result.found[line.fixture] += 1
        for key, value in record.items():
            if key in back and normal(back[key]) == normal(value):
                result.kept[line.fixture] += 1
            else:
                result.problems.append(f"{line.path}:{line.number} {key}: {value!r:.80} came "
                                       f"back as {back.get(key, '<missing>')!r:.80}")
        extra = set(back) - set(record)
        if extra:
            result.problems.append(f"{line.path}:{line.number} gained keys {sorted(extra)}")
        if list(back) != list(record):
            result.problems.append(f"{line.path}:{line.number} key order {list(back)}")
    for path, pairs in order.items():
        fixture = next(line.fixture for line in originals if line.path == path)
        positions = [position for _, position in sorted(pairs)]
        result.in_order[fixture] += sum(1 for a, b in itertools.pairwise(positions)
                                        if a < b) + (1 if positions else 0)
    return result
