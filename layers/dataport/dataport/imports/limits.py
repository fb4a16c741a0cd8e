"""Ceilings on what an upload can make an import read, and the error that enforces them.

An upload is untrusted: a small file can inflate to terabytes (zip bomb), hold one line without
an end, nest arrays until the parser recurses out of stack, or carry a string larger than a
MongoDB document. Every reader checks these limits while it streams, so memory stays bounded by
one record whatever the upload holds, and a violation becomes an `Issue` a person can act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from dataport.errors import InvalidRequest
from dataport.models.imports import Issue, IssueCode

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

#: BSON stores integers as int64 at most: anything larger cannot be written
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_CHUNK = 64 * KIB


class ImportLimits(BaseModel):
    """Defaults fit a Lambda import worker; tests pass tiny values to exercise every ceiling."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_upload_bytes: int = Field(default=500 * 1000 * 1000, gt=0,
                                  description="the upload itself (500 MB, the presigned POST cap)")
    max_total_uncompressed_bytes: int = Field(
        default=5 * GIB, gt=0, description="all zip members together, counted while inflating")
    max_compression_ratio: float = Field(
        default=250.0, gt=1, description="inflated / compressed bytes of one zip member")
    ratio_floor_bytes: int = Field(
        default=1 * MIB, ge=0,
        description="a member is held to the ratio once it has inflated this much (tiny files "
                    "compress well without being bombs)")
    max_zip_entries: int = Field(default=100_000, gt=0)
    max_nesting_depth: int = Field(default=64, gt=0, description="objects and arrays in a record")
    max_string_bytes: int = Field(default=10 * MIB, gt=0,
                                  description="one string value (UTF-8); a BSON document is 16 MiB")
    max_line_bytes: int = Field(default=16 * MIB, gt=0, description="one JSONL line or CSV row")


DEFAULT_LIMITS = ImportLimits()


def backup_limits(largest: int) -> ImportLimits:
    """A backup read as a restore reads it (a restore, the preview of an increment), up to
    `largest` bytes: its members are STORED (already zstd), so the zip inflates nothing, and the
    reader holds each member's decompression to what its manifest declares."""
    return ImportLimits(max_upload_bytes=largest, max_total_uncompressed_bytes=largest,
                        max_zip_entries=1_000_000)


class Readable(Protocol):
    """What readers need of a binary stream: a file, a smart_open reader, a zip member."""

    def read(self, size: int = -1, /) -> bytes: ...


#: a JSON path longer than this is cut (the start says where; a nesting bomb's path is huge)
MAX_PATH_CHARS = 240


def short_path(path: str) -> str:
    return path if len(path) <= MAX_PATH_CHARS else path[:MAX_PATH_CHARS] + "…"


def field_of(path: str) -> str | None:
    """The top-level field a JSON path inside a record starts with: `$.message.content` ->
    `message`."""
    if not path.startswith("$."):
        return None
    return path[2:].split(".", 1)[0].split("[", 1)[0] or None


def issue(code: IssueCode, message: str, *, file: str | None = None, line: int | None = None,
          path: str | None = None, field: str | None = None,
          severity: str = "error") -> Issue:
    return Issue(severity="warning" if severity == "warning" else "error", code=code.value,
                 message=message, file=file, line=line,
                 path=short_path(path) if path else None, field=field)


class BadInput(InvalidRequest):
    """An upload problem that stops the reading of a file (or of the whole upload): carries the
    `Issue` that says what and where."""

    def __init__(self, problem: Issue) -> None:
        super().__init__(problem.message, details={"issue": problem.wire()})
        self.issue = problem
        self.code = problem.code

    @classmethod
    def of(cls, code: IssueCode, message: str, **where: Any) -> BadInput:
        return cls(issue(code, message, **where))


def check_upload_size(size: int, limits: ImportLimits, file: str) -> None:
    if size == 0:
        raise BadInput.of(IssueCode.EMPTY_FILE, "the file is empty: there is nothing to import",
                          file=file)
    if size > limits.max_upload_bytes:
        raise BadInput.of(IssueCode.FILE_TOO_LARGE,
                          f"the file has {size} bytes, more than the upload limit of "
                          f"{limits.max_upload_bytes} bytes; split the export into smaller "
                          "packages", file=file)


def stream_size(stream: Any) -> int:
    """Size of a seekable stream, which is left at its start."""
    size = int(stream.seek(0, 2))
    stream.seek(0)
    return size


def string_problem(text: str, limits: ImportLimits) -> tuple[IssueCode, str] | None:
    """Why a string cannot be stored, or None: too long, or a lone surrogate (not UTF-8)."""
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return IssueCode.INVALID_UTF8, "a string holds a lone surrogate (\\ud800-\\udfff)"
    if size > limits.max_string_bytes:
        return (IssueCode.STRING_TOO_LONG,
                f"a string of {size} bytes is longer than the limit of "
                f"{limits.max_string_bytes} bytes")
    return None


def key_problem(key: str, limits: ImportLimits) -> tuple[IssueCode, str] | None:
    """Why a field name cannot be stored: as a string, or a NUL (BSON names are C strings)."""
    if "\x00" in key:
        return IssueCode.INVALID_FIELD_NAME, "a field name holds a NUL character (\\u0000)"
    return string_problem(key, limits)


def integer_problem(number: int) -> tuple[IssueCode, str] | None:
    if INT64_MIN <= number <= INT64_MAX:
        return None
    return IssueCode.NUMBER_OUT_OF_RANGE, f"the integer {number} does not fit in 64 bits"


def _string_fits(text: str, quarter: int, limits: ImportLimits) -> bool:
    """The cheap test first: ASCII and short enough whatever its encoding."""
    if len(text) <= quarter and text.isascii():
        return True
    return string_problem(text, limits) is None


def within_limits(value: Any, limits: ImportLimits, *, decimals_to_float: bool = False) -> bool:
    """The fast form of `scan` for the common case: True when the value is within the limits
    (no JSON paths are built: a line's scan is on every record's path)."""
    max_depth = limits.max_nesting_depth
    quarter = limits.max_string_bytes // 4
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return False
        pairs = item.items() if type(item) is dict else enumerate(item)
        for key, child in pairs:
            kind = type(child)
            if kind is str:
                if not _string_fits(child, quarter, limits):
                    return False
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int:
                if not INT64_MIN <= child <= INT64_MAX:
                    return False
            elif kind is Decimal and decimals_to_float:
                item[key] = float(child)
            if type(key) is str and (not _string_fits(key, quarter, limits) or "\x00" in key):
                return False
    return True


def scan(value: Any, limits: ImportLimits, *,
         decimals_to_float: bool = False) -> tuple[IssueCode, str, str] | None:
    """Check a parsed JSON value against the limits, without recursion: (code, message, JSON
    path) of the first problem, or None. With `decimals_to_float`, every Decimal a
    `parse_float=Decimal` parser made is turned into the float any JSON reader would give (BSON
    has no arbitrary-precision decimal); callers keep exact money fields out of the scan."""
    if isinstance(value, dict | list) and within_limits(value, limits,
                                                        decimals_to_float=decimals_to_float):
        return None
    stack: list[tuple[Any, int, str]] = [(value, 0, "$")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict):
            if depth + 1 > limits.max_nesting_depth:
                return (IssueCode.NESTING_TOO_DEEP,
                        f"objects and arrays nest deeper than {limits.max_nesting_depth} levels",
                        path)
            for key, child in item.items():
                found = key_problem(key, limits)
                if found:
                    return found[0], found[1], path
                if decimals_to_float and isinstance(child, Decimal):
                    item[key] = float(child)
                elif isinstance(child, dict | list | str | int):
                    stack.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(item, list):
            if depth + 1 > limits.max_nesting_depth:
                return (IssueCode.NESTING_TOO_DEEP,
                        f"objects and arrays nest deeper than {limits.max_nesting_depth} levels",
                        path)
            for index, child in enumerate(item):
                if decimals_to_float and isinstance(child, Decimal):
                    item[index] = float(child)
                elif isinstance(child, dict | list | str | int):
                    stack.append((child, depth + 1, f"{path}[{index}]"))
        elif isinstance(item, str):
            found = string_problem(item, limits)
            if found:
                return found[0], found[1], path
        elif isinstance(item, int) and not isinstance(item, bool):
            found = integer_problem(item)
            if found:
                return found[0], found[1], path
    return None


class DuplicateKey(ValueError):
    """A JSON object names a key twice: parsers keep one value silently, so which one the file
    means is unknowable. `path` is the JSON path of the key."""

    def __init__(self, key: str, path: str) -> None:
        super().__init__(f"the key {key[:60]!r} appears more than once in one object")
        self.key = key
        self.path = path


def loads_unique(text: str, **options: Any) -> Any:
    """`json.loads` that raises DuplicateKey for the first object naming a key twice."""
    duplicates: list[tuple[str, dict[str, Any]]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items) and not duplicates:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    duplicates.append((key, obj))
                    break
                seen.add(key)
        return obj

    value = json.loads(text, object_pairs_hook=pairs, **options)
    if duplicates:
        key, holder = duplicates[0]
        raise DuplicateKey(key, f"{path_of(value, holder)}.{key}")
    return value


def path_of(root: Any, target: object) -> str:
    """The JSON path of `target` (by identity) inside `root`, without recursion."""
    stack: list[tuple[Any, str]] = [(root, "$")]
    while stack:
        item, path = stack.pop()
        if item is target:
            return path
        if isinstance(item, dict):
            stack.extend((child, f"{path}.{key}") for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return "$"


def iter_lines(stream: Readable, max_line_bytes: int, *,
               keep_ends: bool = False) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, line) for each line of a binary stream, without its end unless
    `keep_ends` (the csv module needs them to keep newlines inside quoted cells). The line is
    None when it is longer than `max_line_bytes` (its bytes are skipped, never held), so one
    endless line cannot exhaust memory and the lines after it are still read."""
    buffer = bytearray()
    number = 0
    skipping = False
    while chunk := stream.read(_CHUNK):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > max_line_bytes + 1:  # +1: a CR before the LF
                        skipping = True
                        buffer.clear()
                break
            number += 1
            if skipping:
                skipping = False
                yield number, None
            else:
                buffer += chunk[start:end + 1]
                yield number, _line(buffer, max_line_bytes, keep_ends)
                buffer.clear()
            start = end + 1
    if skipping:
        yield number + 1, None
    elif buffer:
        yield number + 1, _line(buffer, max_line_bytes, keep_ends)


def _line(buffer: bytearray, max_line_bytes: int, keep_ends: bool) -> bytes | None:
    body = len(buffer)
    if buffer.endswith(b"\n"):
        body -= 2 if buffer.endswith(b"\r\n") else 1
    elif buffer.endswith(b"\r"):
        body -= 1
    if body > max_line_bytes:
        return None
    return bytes(buffer) if keep_ends else bytes(buffer[:body])
