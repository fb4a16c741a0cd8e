"""Writes the bad-input corpus: one small file per way an upload can be wrong.

    .venv/bin/python -m tests.imports.corpus.generate

The files are committed; this script says how each was made and makes them again byte for byte
(fixed zip times). Cases that need big inputs (a zip bomb, an over-long string, a file over the
upload limit) are not files here: tests/imports/test_corpus.py makes them with tiny limits.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SID = "0bce4261-0add-4645-8d72-888c91496f82"
CWD = "/Users/alex/github/claudelens"
ZIP_TIME = (2025, 8, 2, 4, 52, 8)


def record(kind: str, uuid: str, parent: str | None, second: int, **fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": CWD,
        "sessionId": SID, "version": "1.0.67", "gitBranch": "main", "type": kind,
        "message": ({"role": "user", "content": f"prompt {second}"} if kind == "user" else
                    {"id": f"msg_{second}", "type": "message", "role": "assistant",
                     "model": "claude-opus-4-1-20250805",
                     "content": [{"type": "text", "text": f"reply {second}"}],
                     "usage": {"input_tokens": 4, "output_tokens": 9}}),
        "uuid": uuid, "timestamp": f"2025-08-02T04:52:{second:02d}.000Z",
    }
    line.update(fields)
    return line


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def jsonl(*records: dict[str, Any] | str | bytes) -> bytes:
    out = b""
    for item in records:
        if isinstance(item, dict):
            out += json.dumps(item, ensure_ascii=False).encode() + b"\n"
        elif isinstance(item, str):
            out += item.encode() + b"\n"
        else:
            out += item + b"\n"
    return out


def good_lines() -> list[dict[str, Any]]:
    return [record("user", uid(1), None, 1), record("assistant", uid(2), uid(1), 2),
            record("user", uid(3), uid(2), 3)]


def message_doc(n: int, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": {"$oid": f"66ad9c1f5f2b4a0012c1{n:04d}"}, "uuid": uid(n), "sessionId": SID,
        "type": "user" if n % 2 else "assistant",
        "timestamp": {"$date": f"2025-08-02T04:52:{n:02d}.000Z"}, "parentUuid": None,
        "isSidechain": False, "content": f"message {n}",
        "messageData": {"role": "user", "content": f"message {n}"},
        "costUsd": {"$numberDecimal": "0.001"},
    }
    doc.update(fields)
    return doc


def conversations(messages: list[dict[str, Any]], *, version: int = 1,
                  session: dict[str, Any] | None = None) -> bytes:
    entry = {"_id": {"$oid": "66ad9c1e5f2b4a0012c0f00d"}, "sessionId": SID,
             "projectId": {"$oid": "66ad9c1e5f2b4a0012c0ffee"},
             "totalCost": {"$numberDecimal": "0.002"}, **(session or {}),
             "project": {"_id": {"$oid": "66ad9c1e5f2b4a0012c0ffee"},
                         "user_id": {"$oid": "66ad9b005f2b4a0012c0aaaa"},
                         "name": "claudelens", "path": CWD},
             "messages": messages}
    document = {"format": "dataport.conversations", "version": version,
                "generator": "dataport/0.1.0", "exportedAt": "2025-08-03T09:00:00.123Z",
                "jobId": "job-123", "owner": "66ad9b005f2b4a0012c0aaaa", "sessions": [entry]}
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


def zip_of(entries: Sequence[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def encrypted_zip() -> bytes:
    """A zip whose member says it is encrypted (general-purpose bit 0), in both headers."""
    data = bytearray(zip_of([(f"projects/-Users-alex/{SID}.jsonl", jsonl(*good_lines()))]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        flags = struct.unpack_from("<H", data, at + offset)[0]
        struct.pack_into("<H", data, at + offset, flags | 0x1)
    return bytes(data)


def symlink_zip() -> bytes:
    info = zipfile.ZipInfo("projects/-Users-alex/link.jsonl", ZIP_TIME)
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return zip_of([(info, b"/etc/passwd")])


def duplicate_zip() -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the very thing this file is
        for _ in range(2):
            archive.writestr(zipfile.ZipInfo(f"projects/-Users-alex/{SID}.jsonl", ZIP_TIME),
                             jsonl(*good_lines()))
    return buffer.getvalue()


def markdown_package() -> bytes:
    manifest = {"packageFormatVersion": "1.0", "generator": "dataport/0.1.0",
                "createdAt": "2025-08-03T09:00:00.123Z", "owner": {"userId": "u"},
                "jobId": "job-1", "format": "markdown",
                "compression": {"method": "deflate", "level": 6, "uncompressedBytes": 5,
                                "compressedBytes": 5},
                "files": [{"path": "sessions/a.md", "bytes": 5, "compressedBytes": 5,
                           "records": 1, "sha256": "0" * 64}]}
    return zip_of([("manifest.json", json.dumps(manifest).encode()),
                   ("sessions/a.md", b"# hi\n")])


def checksum_package() -> bytes:
    data = conversations([message_doc(1), message_doc(2)])
    manifest = {"packageFormatVersion": "1.0", "generator": "dataport/0.1.0",
                "createdAt": "2025-08-03T09:00:00.123Z", "owner": {"userId": "u"},
                "jobId": "job-1", "format": "json",
                "compression": {"method": "deflate", "level": 6, "uncompressedBytes": len(data),
                                "compressedBytes": len(data)},
                "files": [{"path": "conversations-0001.json", "bytes": len(data),
                           "compressedBytes": len(data), "records": 2, "sha256": "ab" * 32}]}
    return zip_of([("manifest.json", json.dumps(manifest).encode()),
                   ("conversations-0001.json", data)])


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"nested": value}
    return value


MESSAGES_CSV_HEADER = ("sessionId,uuid,parentUuid,timestamp,type,isSidechain,model,inputTokens,"
                       "outputTokens,cacheCreationInputTokens,cacheReadInputTokens,costUsd,"
                       "toolName,content")
SESSIONS_CSV = ("\ufeffsessionId,projectName,projectPath,summary,startedAt,endedAt,messageCount,"
                "inputTokens,outputTokens,totalTokens,toolsUsed,totalCost\r\n"
                f"{SID},claudelens,{CWD},Audit,2025-08-02T04:52:01.000Z,"
                "2025-08-02T04:52:02.000Z,2,4,9,13,0,0.002\r\n")


def messages_csv(*rows: str) -> bytes:
    return ("\ufeff" + MESSAGES_CSV_HEADER + "\r\n" + "".join(r + "\r\n" for r in rows)).encode()


def csv_row(n: int, *, timestamp: str | None = None, cost: str = "0.001") -> str:
    stamp = timestamp or f"2025-08-02T04:52:{n:02d}.000Z"
    kind = "user" if n % 2 else "assistant"
    return f"{SID},{uid(n)},,{stamp},{kind},false,,4,9,,,{cost},,message {n}"


def deep_line(depth: int) -> bytes:
    """A transcript line whose arrays nest `depth` deep: deeper than json.loads can recurse."""
    return b'{"type": "user", "toolUseResult": ' + b"[" * depth + b"]" * depth + b"}"


def duplicate_key_json() -> bytes:
    """A message whose messageData names `role` twice (json.dumps cannot write that)."""
    data = conversations([message_doc(1), message_doc(
        2, messageData={"role": "user", "content": "message 2", "again": "x"})])
    return data.replace(b'"again": "x"', b'"role": "assistant"', 1)


def crafted(lines: list[dict[str, Any]]) -> dict[str, bytes]:
    """What the data model forbids and a parser alone lets through (issue 8, item 5)."""
    return {
        "deep_first_line.jsonl": jsonl(deep_line(10_000), *lines),
        "content_object.jsonl": jsonl(lines[0], dict(lines[1], message={
            "role": "assistant", "content": {"type": "text", "text": "hi"}}), lines[2]),
        "text_block_object.jsonl": jsonl(lines[0], dict(lines[1], message={
            "role": "assistant", "content": [{"type": "text", "text": {"$gt": ""}}]}), lines[2]),
        "dollar_field.json": conversations([message_doc(1), message_doc(2, **{"$where": "1"})]),
        "dotted_field.json": conversations([message_doc(1), message_doc(2, **{"cost.usd": 1})]),
        "nul_field_name.jsonl": jsonl(lines[0], dict(lines[1], toolUseResult={"a\x00b": 1}),
                                      lines[2]),
        "parent_cycle.jsonl": jsonl(dict(lines[0], parentUuid=uid(3)), lines[1], lines[2]),
        "self_parent.json": conversations([message_doc(1), message_doc(2, parentUuid=uid(2))]),
        "year_one.json": conversations([message_doc(1), message_doc(
            2, timestamp={"$date": "0001-01-01T00:00:00Z"})]),
        "year_one_offset.jsonl": jsonl(lines[0], dict(lines[1],
                                                      timestamp="0001-01-01T00:30:00+01:00"),
                                       lines[2]),
        "far_future.csv": messages_csv(csv_row(1), csv_row(2, timestamp="9999-12-31T23:59:59Z")),
        "duplicate_key.jsonl": jsonl(lines[0], json.dumps(lines[1])[:-1] + ', "uuid": "other"}',
                                     lines[2]),
        "duplicate_key.json": duplicate_key_json(),
        "newline_uuid.jsonl": jsonl(lines[0], dict(lines[1], uuid=uid(2) + "\n"), lines[2]),
        "newline_object_id.json": conversations([message_doc(1), message_doc(
            2, _id="66ad9c1f5f2b4a0012c10002\n")]),
    }


def corpus() -> dict[str, bytes]:
    lines = good_lines()
    bad_type = dict(lines[1], isSidechain="yes", durationMs="fast")
    no_uuid = {k: v for k, v in lines[1].items() if k != "uuid"}
    return {
        "empty.jsonl": b"",
        "whitespace.json": b"  \n\n\t\n",
        "no_extension": jsonl(*lines),
        "transcript.txt": jsonl(*lines),
        "zip_named.json": zip_of([(f"{SID}.jsonl", jsonl(*lines))]),
        "lines_named.json": jsonl(*lines),
        "envelope_named.jsonl": conversations([message_doc(1)]),
        "csv_named.jsonl": messages_csv(csv_row(1)),
        "truncated.json": conversations([message_doc(1), message_doc(2)])[:-60],
        "syntax_error.json": conversations([message_doc(1)]).replace(b'"isSidechain": false',
                                                                     b'"isSidechain": fals', 1),
        "invalid_utf8.jsonl": jsonl(lines[0], json.dumps(lines[1]).encode().replace(
            b"reply 2", b"reply \xff\xfe"), lines[2]),
        "invalid_utf8.json": conversations([message_doc(1)]).replace(b"message 1", b"mess\xc3\x28"),
        "not_json_line.jsonl": jsonl(lines[0], lines[1], "this line is not JSON", lines[2]),
        "not_object_line.jsonl": jsonl(lines[0], "[1, 2, 3]", lines[2]),
        "wrong_types.json": conversations([message_doc(1), message_doc(2, uuid=7)]),
        "wrong_types.jsonl": jsonl(lines[0], bad_type, lines[2]),
        "missing_uuid.jsonl": jsonl(lines[0], no_uuid, lines[2]),
        "missing_timestamp.json": conversations([
            message_doc(1), {k: v for k, v in message_doc(2).items() if k != "timestamp"}]),
        "missing_column.csv": ("\ufeffuuid,timestamp,type,content\r\n"
                               f"{uid(1)},2025-08-02T04:52:01.000Z,user,hi\r\n").encode(),
        "duplicate_uuid.jsonl": jsonl(lines[0], lines[1], dict(lines[2], uuid=uid(1))),
        "duplicate_uuid.json": conversations([message_doc(1), message_doc(2),
                                              message_doc(3, uuid=uid(2))]),
        "bad_date.jsonl": jsonl(lines[0], dict(lines[1], timestamp="yesterday"), lines[2]),
        "bad_date.json": conversations([message_doc(1),
                                        message_doc(2, timestamp={"$date": "not a date"})]),
        "invalid_utf8.csv": messages_csv(csv_row(1)) + csv_row(2).encode().replace(
            b"message 2", b"message \xe9") + b"\r\n",
        "truncated.jsonl": jsonl(*lines)[:-40],
        "naive_date.csv": messages_csv(csv_row(1), csv_row(2, timestamp="2025-08-02 04:52:02")),
        "negative_cost.csv": messages_csv(csv_row(1), csv_row(2, cost="-0.5")),
        "non_numeric_cost.csv": messages_csv(csv_row(1), csv_row(2, cost="cheap")),
        "negative_cost.jsonl": jsonl(lines[0], dict(lines[1], costUSD=-1.25), lines[2]),
        "nan_cost.json": conversations([message_doc(1),
                                        message_doc(2, costUsd={"$numberDecimal": "NaN"})]),
        "unknown_message_type.json": conversations([message_doc(1), message_doc(2, type="human")]),
        "evil_session_id.json": conversations(
            [message_doc(1, sessionId="x/../../evil session")],
            session={"sessionId": "x/../../evil session"}),
        "operator_parent_uuid.jsonl": jsonl(lines[0], dict(lines[1], parentUuid={"$gt": ""}),
                                            lines[2]),
        "orphan_message.json": conversations([message_doc(1), message_doc(2, sessionId="other")]),
        "big_integer.jsonl": jsonl(lines[0], dict(lines[1], durationMs=2**70), lines[2]),
        "lone_surrogate.jsonl": jsonl(lines[0], json.dumps(lines[1]).replace(
            "reply 2", "reply \\ud800"), lines[2]),
        "deep_nesting.jsonl": jsonl(dict(lines[0], toolUseResult=deep(100)), lines[1]),
        "deep_nesting.json": conversations([message_doc(1),
                                            message_doc(2, toolUseResult=deep(100))]),
        "unsupported_version.json": conversations([message_doc(1)], version=99),
        "zip_absolute_path.zip": zip_of([("/etc/cron.d/evil.jsonl", jsonl(*lines))]),
        "zip_dotdot.zip": zip_of([("projects/../../evil.jsonl", jsonl(*lines))]),
        "zip_backslash.zip": zip_of([("projects\\..\\evil.jsonl", jsonl(*lines))]),
        "zip_symlink.zip": symlink_zip(),
        "zip_encrypted.zip": encrypted_zip(),
        "zip_duplicate_entry.zip": duplicate_zip(),
        "zip_corrupt.zip": zip_of([(f"projects/-Users-alex/{SID}.jsonl", jsonl(*lines))])[:-30],
        "markdown_package.zip": markdown_package(),
        "checksum_mismatch.zip": checksum_package(),
        "orphan_rows.zip": zip_of([("sessions.csv", SESSIONS_CSV.encode()),
                                   ("messages.csv", messages_csv(
                                       csv_row(1), csv_row(2).replace(SID, "f" * 8, 1)))]),
        **crafted(lines),
    }


def main() -> None:
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(corpus())} files to {HERE}")


if __name__ == "__main__":
    main()
