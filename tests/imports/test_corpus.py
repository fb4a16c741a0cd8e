"""Every way an upload can be wrong gets a clear validation error, with where it is.

The committed files are in corpus/ (made by corpus/generate.py); inputs that would be big (a
zip bomb, an over-long string, a file over the upload limit) are made here against tiny limits.
Each case asserts the first error's code and location; a bad upload never yields a clean report.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dataport.imports.limits import ImportLimits
from dataport.imports.validate import validate
from dataport.models.imports import Issue, IssueCode, ValidationReport
from tests.imports.corpus.generate import (
    SID,
    conversations,
    corpus,
    csv_row,
    good_lines,
    jsonl,
    message_doc,
    messages_csv,
    zip_of,
)

CORPUS = Path(__file__).parent / "corpus"

#: file -> (code of the first error, fields its location must have)
CASES: dict[str, tuple[IssueCode, dict[str, Any]]] = {
    "empty.jsonl": (IssueCode.EMPTY_FILE, {"file": "empty.jsonl"}),
    "whitespace.json": (IssueCode.EMPTY_FILE, {"file": "whitespace.json"}),
    "no_extension": (IssueCode.UNSUPPORTED_EXTENSION, {"file": "no_extension"}),
    "transcript.txt": (IssueCode.UNSUPPORTED_EXTENSION, {"file": "transcript.txt"}),
    "zip_named.json": (IssueCode.CONTENT_MISMATCH, {"file": "zip_named.json"}),
    "lines_named.json": (IssueCode.CONTENT_MISMATCH, {"file": "lines_named.json"}),
    "envelope_named.jsonl": (IssueCode.CONTENT_MISMATCH, {"file": "envelope_named.jsonl"}),
    "csv_named.jsonl": (IssueCode.CONTENT_MISMATCH, {"file": "csv_named.jsonl"}),
    "truncated.json": (IssueCode.TRUNCATED_JSON, {"path": "$.sessions[0].messages[1]"}),
    "syntax_error.json": (IssueCode.INVALID_JSON, {"path": "$.sessions[0].messages[0]"}),
    "invalid_utf8.jsonl": (IssueCode.INVALID_UTF8, {"file": "invalid_utf8.jsonl", "line": 2}),
    "invalid_utf8.json": (IssueCode.INVALID_UTF8, {"path": "$.sessions[0].messages[0]"}),
    "invalid_utf8.csv": (IssueCode.INVALID_UTF8, {"file": "invalid_utf8.csv", "line": 3}),
    "truncated.jsonl": (IssueCode.INVALID_JSON, {"file": "truncated.jsonl", "line": 3}),
    "lone_surrogate.jsonl": (IssueCode.INVALID_UTF8,
                             {"line": 2, "path": "$.message.content[0].text"}),
    "not_json_line.jsonl": (IssueCode.INVALID_JSON, {"line": 3}),
    "not_object_line.jsonl": (IssueCode.INVALID_RECORD, {"line": 2}),
    "wrong_types.json": (IssueCode.WRONG_TYPE,
                         {"path": "$.sessions[0].messages[1]", "field": "uuid"}),
    "wrong_types.jsonl": (IssueCode.WRONG_TYPE, {"line": 2, "field": "isSidechain"}),
    "missing_uuid.jsonl": (IssueCode.MISSING_FIELD, {"line": 2, "field": "uuid"}),
    "missing_timestamp.json": (IssueCode.MISSING_FIELD,
                               {"path": "$.sessions[0].messages[1]", "field": "timestamp"}),
    "missing_column.csv": (IssueCode.MISSING_COLUMN, {"line": 1, "field": "sessionId"}),
    "duplicate_uuid.jsonl": (IssueCode.DUPLICATE_UUID, {"line": 3, "field": "uuid"}),
    "duplicate_uuid.json": (IssueCode.DUPLICATE_UUID,
                            {"path": "$.sessions[0].messages[2]", "field": "uuid"}),
    "bad_date.jsonl": (IssueCode.INVALID_DATE, {"line": 2, "field": "timestamp"}),
    "bad_date.json": (IssueCode.INVALID_DATE,
                      {"path": "$.sessions[0].messages[1]", "field": "timestamp"}),
    "naive_date.csv": (IssueCode.INVALID_DATE, {"line": 3, "field": "timestamp"}),
    "negative_cost.csv": (IssueCode.NEGATIVE_COST, {"line": 3, "field": "costUsd"}),
    "negative_cost.jsonl": (IssueCode.NEGATIVE_COST, {"line": 2, "field": "costUsd"}),
    "non_numeric_cost.csv": (IssueCode.INVALID_NUMBER, {"line": 3, "field": "costUsd"}),
    "nan_cost.json": (IssueCode.INVALID_NUMBER,
                      {"path": "$.sessions[0].messages[1]", "field": "costUsd"}),
    "unknown_message_type.json": (IssueCode.INVALID_MESSAGE_TYPE,
                                  {"path": "$.sessions[0].messages[1]", "field": "type"}),
    "evil_session_id.json": (IssueCode.INVALID_ID, {"path": "$.sessions[0]",
                                                    "field": "sessionId"}),
    "operator_parent_uuid.jsonl": (IssueCode.WRONG_TYPE, {"line": 2, "field": "parentUuid"}),
    "orphan_message.json": (IssueCode.ORPHAN_MESSAGE,
                            {"path": "$.sessions[0].messages[1]", "field": "sessionId"}),
    "orphan_rows.zip": (IssueCode.ORPHAN_MESSAGE,
                        {"file": "messages.csv", "line": 3, "field": "sessionId"}),
    "big_integer.jsonl": (IssueCode.NUMBER_OUT_OF_RANGE,
                          {"line": 2, "path": "$.durationMs", "field": "durationMs"}),
    "deep_nesting.jsonl": (IssueCode.NESTING_TOO_DEEP, {"line": 1, "field": "toolUseResult"}),
    "deep_nesting.json": (IssueCode.NESTING_TOO_DEEP, {"field": "toolUseResult"}),
    "unsupported_version.json": (IssueCode.UNSUPPORTED_VERSION, {"field": "version"}),
    "zip_absolute_path.zip": (IssueCode.ZIP_UNSAFE_PATH, {"file": "/etc/cron.d/evil.jsonl"}),
    "zip_dotdot.zip": (IssueCode.ZIP_UNSAFE_PATH, {"file": "projects/../../evil.jsonl"}),
    "zip_backslash.zip": (IssueCode.ZIP_UNSAFE_PATH, {"file": "projects\\..\\evil.jsonl"}),
    "zip_symlink.zip": (IssueCode.ZIP_SYMLINK, {"file": "projects/-Users-alex/link.jsonl"}),
    "zip_encrypted.zip": (IssueCode.ZIP_ENCRYPTED, {"file": f"projects/-Users-alex/{SID}.jsonl"}),
    "zip_duplicate_entry.zip": (IssueCode.ZIP_DUPLICATE_ENTRY, {}),
    "zip_corrupt.zip": (IssueCode.INVALID_ZIP, {"file": "zip_corrupt.zip"}),
    "markdown_package.zip": (IssueCode.UNSUPPORTED_FORMAT, {"field": "format"}),
    "checksum_mismatch.zip": (IssueCode.CHECKSUM_MISMATCH, {"file": "conversations-0001.json"}),
    # what the data model forbids (issue 8, items 4 and 5)
    "deep_first_line.jsonl": (IssueCode.NESTING_TOO_DEEP, {"line": 1}),
    "content_object.jsonl": (IssueCode.WRONG_TYPE, {"line": 2, "field": "messageData"}),
    "text_block_object.jsonl": (IssueCode.WRONG_TYPE, {"line": 2, "field": "messageData"}),
    "dollar_field.json": (IssueCode.INVALID_FIELD_NAME,
                          {"path": "$.sessions[0].messages[1]", "field": "$where"}),
    "dotted_field.json": (IssueCode.INVALID_FIELD_NAME,
                          {"path": "$.sessions[0].messages[1]", "field": "cost.usd"}),
    "nul_field_name.jsonl": (IssueCode.INVALID_FIELD_NAME,
                             {"line": 2, "path": "$.toolUseResult", "field": "toolUseResult"}),
    "parent_cycle.jsonl": (IssueCode.PARENT_CYCLE, {"line": 3, "field": "parentUuid"}),
    "self_parent.json": (IssueCode.PARENT_CYCLE,
                         {"path": "$.sessions[0].messages[1]", "field": "parentUuid"}),
    "year_one.json": (IssueCode.DATE_OUT_OF_RANGE,
                      {"path": "$.sessions[0].messages[1]", "field": "timestamp"}),
    "year_one_offset.jsonl": (IssueCode.DATE_OUT_OF_RANGE, {"line": 2, "field": "timestamp"}),
    "far_future.csv": (IssueCode.DATE_OUT_OF_RANGE, {"field": "endedAt"}),  # its session
    "duplicate_key.jsonl": (IssueCode.DUPLICATE_KEY, {"line": 2, "path": "$.uuid",
                                                      "field": "uuid"}),
    "duplicate_key.json": (IssueCode.DUPLICATE_KEY,
                           {"path": "$.sessions[0].messages[1].messageData.role",
                            "field": "messageData"}),
    "newline_uuid.jsonl": (IssueCode.INVALID_ID, {"line": 2, "field": "uuid"}),
    "newline_object_id.json": (IssueCode.WRONG_TYPE,
                               {"path": "$.sessions[0].messages[1]", "field": "_id"}),
}


def check(report: ValidationReport, code: IssueCode, where: dict[str, Any]) -> Issue:
    assert not report.ok, report
    first = report.errors[0]
    assert first.code == code.value, (first, report.errors[1:])
    assert first.severity == "error"
    for key, value in where.items():
        assert getattr(first, key) == value, (key, first)
    assert first.message
    return first


def run(data: bytes, name: str, limits: ImportLimits | None = None) -> ValidationReport:
    return validate(lambda: io.BytesIO(data), name, limits=limits)


def test_every_corpus_file_has_a_case_and_matches_the_generator() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.is_file() and p.suffix != ".py"}
    assert files == set(CASES)
    made = corpus()
    for name in files:
        assert (CORPUS / name).read_bytes() == made[name], f"regenerate {name}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_file(name: str) -> None:
    code, where = CASES[name]
    path = CORPUS / name
    report = validate(lambda: path.open("rb"), name)
    check(report, code, where)


# --- inputs made against tiny limits ----------------------------------------------------------

LINES = jsonl(*good_lines())


def session_lines(number: int) -> bytes:
    """The good lines as another session, with uuids of their own."""
    text = LINES.decode().replace(SID, f"{number:08d}-0add-4645-8d72-888c91496f82")
    return text.replace("-8000-0000", f"-8000-{number:04d}").encode()


def tiny(**limits: Any) -> ImportLimits:
    return ImportLimits(**limits)


def bomb_ratio() -> tuple[bytes, ImportLimits]:
    return (zip_of([(f"projects/-Users-alex/{SID}.jsonl", LINES + b" " * 2_000_000)]),
            tiny(max_compression_ratio=50, ratio_floor_bytes=64 * 1024))


def bomb_total() -> tuple[bytes, ImportLimits]:
    members = [(f"projects/-Users-alex/part-{i}.jsonl", LINES * 400) for i in range(4)]
    return zip_of(members), tiny(max_total_uncompressed_bytes=3 * len(LINES) * 400)


def overlapping() -> tuple[bytes, ImportLimits]:
    """Two central directory entries over one member's data (a non-recursive zip bomb)."""
    data = bytearray(zip_of([("a.jsonl", LINES), ("b.jsonl", LINES)]))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    second = archive.getinfo("b.jsonl")
    cd = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 4)  # b's central entry
    data[cd + 42:cd + 46] = (0).to_bytes(4, "little")  # b's header offset -> a's
    assert second.header_offset > 0
    return bytes(data), tiny()


LIMIT_CASES: dict[str, tuple[Callable[[], tuple[bytes, ImportLimits]], str, IssueCode,
                             dict[str, Any]]] = {
    "zip bomb (ratio)": (bomb_ratio, "tree.zip", IssueCode.ZIP_BOMB,
                         {"file": f"projects/-Users-alex/{SID}.jsonl"}),
    "zip bomb (total size)": (bomb_total, "tree.zip", IssueCode.ZIP_BOMB, {}),
    "zip bomb (overlapping entries)": (overlapping, "tree.zip", IssueCode.ZIP_BOMB, {}),
    "too many zip entries": (
        lambda: (zip_of([(f"p/{i}.jsonl", session_lines(i)) for i in range(5)]),
                 tiny(max_zip_entries=4)),
        "tree.zip", IssueCode.ZIP_TOO_MANY_ENTRIES, {"file": "tree.zip"}),
    "file over the upload limit": (lambda: (LINES, tiny(max_upload_bytes=len(LINES) - 1)),
                                   f"{SID}.jsonl", IssueCode.FILE_TOO_LARGE,
                                   {"file": f"{SID}.jsonl"}),
    "string over the limit (jsonl)": (lambda: (LINES, tiny(max_string_bytes=8)), f"{SID}.jsonl",
                                      IssueCode.STRING_TOO_LONG, {"line": 1}),
    "string over the limit (json)": (lambda: (conversations([message_doc(1), message_doc(
                                         2, content="x" * 100)]), tiny(max_string_bytes=60)),
                                     "conversations-0001.json", IssueCode.STRING_TOO_LONG,
                                     {"path": "$.sessions[0].messages[1].content",
                                      "field": "content"}),
    "string over the limit (csv)": (lambda: (messages_csv(csv_row(1), csv_row(2)),
                                             tiny(max_string_bytes=20)),
                                    "messages.csv", IssueCode.STRING_TOO_LONG, {"line": 2}),
    "line over the limit": (lambda: (LINES, tiny(max_line_bytes=300)), f"{SID}.jsonl",
                            IssueCode.LINE_TOO_LONG, {"line": 1}),
    "nesting over a lower limit": (lambda: (LINES, tiny(max_nesting_depth=2)), f"{SID}.jsonl",
                                   IssueCode.NESTING_TOO_DEEP,
                                   {"line": 2, "path": "$.message.usage", "field": "message"}),
}


@pytest.mark.parametrize("case", sorted(LIMIT_CASES))
def test_limit(case: str) -> None:
    make, name, code, where = LIMIT_CASES[case]
    data, limits = make()
    check(run(data, name, limits), code, where)


def test_the_same_inputs_pass_with_the_default_limits() -> None:
    """Only the limits made them fail (the bombs are bombs under any limit)."""
    for make, name, code, _where in LIMIT_CASES.values():
        if code is IssueCode.ZIP_BOMB:
            continue
        data, _limits = make()
        report = run(data, name)
        assert report.ok, (name, report.errors[:3])
