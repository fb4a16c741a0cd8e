"""dataport.backups.format: lines, zstd members and the container round-trip every document
the data model stores, byte for byte, and every damage is found and named."""

from __future__ import annotations

import hashlib
import io
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pyzipper
import zstandard
from bson import ObjectId
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.regex import Regex
from bson.son import SON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataport.backups.format import (
    BLOCK_SIZE,
    DELETIONS_MEMBER,
    FORMAT_VERSION,
    MANIFEST_NAME,
    BackupContainer,
    BackupManifest,
    Compression,
    FormatError,
    MemberEntry,
    MemberReader,
    MemberWriter,
    PasswordRequired,
    collection_of,
    decode_line,
    encode_line,
    loads_line,
    member_path,
)
from dataport.formats.extjson import escape_dollar_keys, json_util_canonical
from dataport.models.documents import MessageLayout
from tests.unit.format_sink import messages, project_doc, session_doc

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- what the collections store (DATA-MODEL.md): the types a pymongo cursor yields ------------

object_ids = st.binary(min_size=12, max_size=12).map(ObjectId)
moments = st.integers(-50 * 365 * 86_400_000, 200 * 365 * 86_400_000).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
decimals = st.decimals(min_value=-10_000, max_value=10_000, places=7).map(Decimal128)
ints = st.integers(-(2**31), 2**31 - 1)
longs = st.integers(-(2**63), 2**63 - 1).map(Int64)
floats = st.floats(allow_nan=False) | st.sampled_from([math.inf, -math.inf, -0.0])
texts = st.text() | st.sampled_from(["", "\u2028\n\"\\", "日本語 🙏", "\x00\x1f"])
scalars = (st.none() | st.booleans() | ints | longs | floats | texts | object_ids | decimals
           | moments | st.binary(max_size=16)  # subtype 0: the driver yields bytes
           | st.builds(Binary, st.binary(max_size=16), st.sampled_from([4, 128])))
# Keys that start with `$` included: the ones of every type wrapper json_util reads, escaped ones
# (`$$date`), and any other; format version 2 escapes them (docs/backups.md).
WRAPPER_KEYS = ["$oid", "$date", "$numberLong", "$numberInt", "$numberDouble", "$numberDecimal",
                "$regex", "$options", "$regularExpression", "$binary", "$type", "$uuid",
                "$code", "$scope", "$ref", "$id", "$db", "$timestamp", "$minKey", "$maxKey",
                "$symbol", "$dbPointer", "$undefined"]
field_names = (st.text(max_size=6) | st.sampled_from(WRAPPER_KEYS)
               | st.sampled_from(WRAPPER_KEYS).map(lambda key: "$" + key)
               | st.text(max_size=4).map(lambda key: "$" + key))
#: objects shaped exactly like a wrapper, with the values a wrapper holds or others
wrapper_shaped = st.one_of(
    st.builds(lambda v: {"$date": v}, st.integers() | st.text(max_size=8)),
    st.builds(lambda v: {"$regex": v}, st.text(max_size=4)),
    st.builds(lambda v, o: {"$regex": v, "$options": o}, st.text(max_size=4),
              st.sampled_from(["", "i", "mx"])),
    st.builds(lambda v: {"$oid": v}, st.text(max_size=24) | object_ids.map(str)),
    st.builds(lambda v: {"$numberLong": v}, st.text(max_size=4) | ints.map(str)),
    st.builds(lambda v: {"$numberDecimal": v}, st.sampled_from(["1.5", "x", "NaN"])),
    st.builds(lambda r, i: {"$ref": r, "$id": i}, st.text(max_size=4), ints),
    st.builds(lambda b: {"$binary": {"base64": b, "subType": "00"}}, st.sampled_from(["", "AA=="])),
    st.just({"$minKey": 1}), st.just({"$maxKey": 1}), st.just({"$undefined": True}),
    st.just({"$timestamp": {"t": 1, "i": 2}}))
values = st.recursive(scalars | wrapper_shaped, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(field_names, inner, max_size=4), max_leaves=25)
documents = st.fixed_dictionaries({"_id": object_ids, "sessionId": st.uuids().map(str)},
                                  optional={"timestamp": moments, "costUsd": decimals,
                                            "messageCount": ints, "totalTokens": longs,
                                            "messageData": values, "toolUseResult": values})


def _write(docs: list[dict[str, Any]], level: int = 3) -> tuple[bytes, MemberWriter]:
    out = io.BytesIO()
    writer = MemberWriter(out.write, level=level)
    for doc in docs:
        writer.write(doc)
    writer.close()
    return out.getvalue(), writer


def _entry(path: str, data: bytes, writer: MemberWriter) -> MemberEntry:
    stats = writer.close()
    return MemberEntry(path=path, collection="messages", **stats.model_dump())


@SETTINGS
@given(documents)
def test_a_line_is_canonical_extended_json_and_reads_back_as_the_same_document(
        document: dict[str, Any]) -> None:
    line = encode_line(document)
    assert line == json_util_canonical(escape_dollar_keys(document)) + b"\n"
    back = decode_line(line)
    assert back == document
    assert list(back) == list(document)  # field order kept
    assert encode_line(back) == line  # types kept: the same bytes again


@SETTINGS
@given(st.dictionaries(field_names, values, max_size=6))
def test_any_document_with_dollar_keys_at_any_depth_reads_back_as_itself(
        document: dict[str, Any]) -> None:
    line = encode_line(document)
    back = decode_line(line)
    assert back == document
    assert _types(back) == _types(document)  # a dict stays a dict, never a wrapper's type
    assert encode_line(back) == line


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    # an int past int32 is written as $numberLong and read as Int64 (what the driver yields)
    return "int" if isinstance(value, int) and not isinstance(value, bool) else type(value).__name__


@pytest.mark.parametrize(("shaped", "version_1_reads_it"), [
    ({"$date": 1}, False), ({"$regex": "a"}, False), ({"$numberLong": "x"}, False),
    ({"$oid": "66ad9c1e5f2b4a0012c0ffee"}, False), ({"$numberLong": "5"}, False),
    ({"$ref": "users", "$id": 1}, False), ({"$minKey": 1}, False),
    ({"$$date": 1}, True), ({"$": 0}, True), ({"$schema": "x"}, True)])
def test_a_wrapper_shaped_object_of_the_data_stays_an_object(shaped: dict[str, Any],
                                                             version_1_reads_it: bool) -> None:
    document = {"_id": ObjectId(), "toolUseResult": {"query": shaped, "list": [shaped]}}
    line = encode_line(document)
    assert decode_line(line) == document
    # what format version 1 wrote: the same object read back as a type (or refused)
    old = json_util_canonical(document) + b"\n"
    try:
        read = decode_line(old, 1) == document
    except (ValueError, TypeError, KeyError):
        read = False
    assert read is version_1_reads_it


def test_a_document_json_util_writes_is_escaped_the_same_way() -> None:
    """A type the fast encoder leaves to bson.json_util (a Regex): the escape still applies."""
    document = {"_id": ObjectId(), "pattern": Regex("^a", "i"), "q": {"$regex": "^a"},
                "son": SON([("$date", 1)])}
    line = encode_line(document)
    assert b'"$$regex"' in line
    assert b'"$regularExpression"' in line
    assert decode_line(line) == {**document, "son": {"$date": 1}}


def test_version_1_lines_read_as_version_1_wrote_them() -> None:
    document = {"_id": ObjectId(), "at": datetime(2025, 8, 2, tzinfo=UTC), "$schema": "x",
                "nested": {"$$x": 1, "$ref": "alone"}}
    old = json_util_canonical(document) + b"\n"
    assert decode_line(old, 1) == document
    assert decode_line(encode_line(document)) == document
    assert b'"$$schema"' in encode_line(document)
    assert loads_line(b'[{"$$x": 1}, {"$numberLong": "7"}]') == [{"$x": 1}, Int64(7)]


@SETTINGS
@given(st.lists(documents, max_size=20), st.sampled_from([1, 3, 19]))
def test_a_member_round_trips_and_describes_itself(docs: list[dict[str, Any]],
                                                   level: int) -> None:
    data, writer = _write(docs, level)
    stats = writer.close()
    lines = b"".join(encode_line(doc) for doc in docs)
    assert stats.records == len(docs)
    assert stats.bytes == len(lines)
    assert stats.sha256 == hashlib.sha256(lines).hexdigest()
    assert stats.compressed_bytes == len(data)
    assert stats.compressed_sha256 == hashlib.sha256(data).hexdigest()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == lines  # one frame
    assert zstandard.get_frame_parameters(data).has_checksum

    reader = MemberReader(io.BytesIO(data), _entry("messages/00001-00000.jsonl.zst", data,
                                                    writer))
    assert list(reader.documents()) == docs
    assert reader.check() == stats


def test_a_member_of_many_blocks_hashes_and_compresses_every_line_once() -> None:
    docs = [session_doc(sessionId=f"s{i:05d}", summary="x" * (i % 700)) for i in range(1500)]
    lines = b"".join(encode_line(doc) for doc in docs)
    assert len(lines) > 3 * BLOCK_SIZE  # several blocks, the last one partly filled
    pieces: list[bytes] = []
    writer = MemberWriter(pieces.append)
    for doc in docs:
        writer.write(doc)
    assert pieces  # blocks went out before the member closed
    assert writer.bytes == len(lines)
    stats = writer.close()
    data = b"".join(pieces)

    assert stats.sha256 == hashlib.sha256(lines).hexdigest()
    assert stats.compressed_sha256 == hashlib.sha256(data).hexdigest()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == lines
    reader = MemberReader(io.BytesIO(data), _entry("sessions/00001-00000.jsonl.zst", data,
                                                    writer))
    assert list(reader.documents()) == docs
    assert reader.check() == stats


def test_the_sample_documents_of_every_collection_round_trip() -> None:
    docs = [project_doc(), session_doc(), *messages()]
    data, _ = _write(docs)
    back = list(MemberReader(io.BytesIO(data)).documents())
    assert back == docs
    assert [encode_line(d) for d in back] == [encode_line(d) for d in docs]


def test_a_member_that_is_not_what_its_entry_says_is_named() -> None:
    docs = [session_doc(), session_doc(sessionId="other")]
    data, writer = _write(docs)
    entry = _entry("sessions/00001-00002.jsonl.zst", data, writer)

    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    def read_and_check() -> None:
        reader = MemberReader(io.BytesIO(bytes(flipped)), entry)
        list(reader.lines())
        reader.check()

    with pytest.raises(FormatError, match=re.escape(entry.path)):
        read_and_check()

    other, _ = _write(docs[:1])
    reader = MemberReader(io.BytesIO(other), entry)
    list(reader.lines())
    with pytest.raises(FormatError, match="stored bytes do not match"):
        reader.check()

    with pytest.raises(FormatError, match="not a valid zstd frame"):
        list(MemberReader(io.BytesIO(b"not zstd at all"), entry).lines())


def test_member_names() -> None:
    assert member_path("messages", 3, 12) == "messages/00003-00012.jsonl.zst"
    assert member_path("deletions", 0, 0) == DELETIONS_MEMBER
    assert collection_of("projects/00000-00000.jsonl.zst") == "projects"
    assert collection_of(member_path("sessions", 1, 2)) == "sessions"
    assert collection_of(DELETIONS_MEMBER) == "deletions"
    for other in (MANIFEST_NAME, "messages/1-2.jsonl.zst", "../messages/00001-00002.jsonl.zst",
                  "users/00001-00002.jsonl.zst"):
        assert collection_of(other) is None
    with pytest.raises(ValueError, match="negative"):
        member_path("messages", -1, 0)


def _manifest(members: list[MemberEntry]) -> BackupManifest:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return BackupManifest(backup_id="b1", name="nightly", scope="user", owner_id="u" * 24,
                          type="full", watermark=now, created_at=now,
                          compression=Compression(level=3), members=members)


def _zip(members: dict[str, bytes], password: str | None = None) -> bytes:
    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_STORED,
                             encryption=pyzipper.WZ_AES if password else None) as archive:
        if password:
            archive.setpassword(password.encode())
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("layout", list(MessageLayout))
def test_the_manifest_records_the_sources_message_layout_and_older_ones_read_without(
        layout: MessageLayout) -> None:
    recorded = _manifest([]).model_copy(update={"message_layout": layout})
    text = recorded.to_json()
    assert f'"messageLayout": "{layout.value}"' in text.decode()
    read = BackupManifest.from_json(text)
    assert read.message_layout is layout
    assert read == recorded

    # a backup made before dataport recorded it (the same format version): no field, None
    older = _manifest([]).to_json()
    assert b"messageLayout" not in older
    assert BackupManifest.from_json(older).message_layout is None
    with BackupContainer(io.BytesIO(_zip({MANIFEST_NAME: older}))) as backup:
        assert backup.manifest.message_layout is None
    with pytest.raises(ValueError, match="messageLayout"):
        BackupManifest.from_json(text.replace(f'"{layout.value}"'.encode(), b'"weekly"'))


@pytest.mark.parametrize("password", [None, "correct horse"])
def test_a_stored_backup_is_read_member_by_member(password: str | None) -> None:
    docs = messages()
    data, writer = _write(docs)
    entry = _entry("messages/00001-00000.jsonl.zst", data, writer)
    manifest = _manifest([entry])
    stored = _zip({entry.path: data, MANIFEST_NAME: manifest.to_json()}, password)

    with BackupContainer(io.BytesIO(stored), password) as backup:
        assert backup.manifest == manifest
        reader = backup.member(backup.manifest.members[0])
        assert list(reader.documents()) == docs
        assert reader.check().records == len(docs)

    if password:
        with pytest.raises(PasswordRequired, match="give its password"):
            _ = BackupContainer(io.BytesIO(stored)).manifest
        with pytest.raises(PasswordRequired, match="does not open"):
            _ = BackupContainer(io.BytesIO(stored), "wrong password").manifest


def test_what_is_not_a_backup_is_refused() -> None:
    with pytest.raises(FormatError, match="not a backup"):
        BackupContainer(io.BytesIO(b"plain text"))
    with pytest.raises(FormatError, match="no manifest"):
        _ = BackupContainer(io.BytesIO(_zip({"a.txt": b"x"}))).manifest
    newer = _manifest([]).model_copy(update={"format_version": FORMAT_VERSION + 1}).to_json()
    with pytest.raises(FormatError, match="newer"):
        _ = BackupContainer(io.BytesIO(_zip({MANIFEST_NAME: newer}))).manifest
    entry = MemberEntry(path="messages/00001-00000.jsonl.zst", collection="messages", records=0,
                        bytes=0, compressed_bytes=0, sha256="0" * 64, compressed_sha256="0" * 64)
    with (BackupContainer(io.BytesIO(_zip({MANIFEST_NAME: _manifest([entry]).to_json()})))
          as backup, pytest.raises(FormatError, match="not in the backup")):
        backup.member(entry)
