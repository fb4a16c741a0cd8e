"""Copies: ids another account (or another of the user's sessions) holds in this database.

A ClaudeLens database holds a sessionId once and a message uuid once (unique indexes), and
messages name their session only by that id. So when user B imports a package of user A's
sessions into the same database (a hand-over, or the export -> import round trip), B's copy
cannot keep A's ids: sharing them would merge B's messages into A's session, which is a leak.
The same holds for a single message: a uuid held anywhere outside the session being written
would exist twice (monthly layout) or fail on the unique index (same collection).

B's copy gets ids derived from B's user id and the original id with HMAC-SHA256 under a
deployment secret (the template's CopyIdSecret, read once per cold start):
- the same upload imported again by B finds the same copy (skip and merge change nothing the
  second time), and two users never derive the same id;
- nobody without the secret can compute B's copy id, so nobody can import it first and make
  B's import fail (with a public derivation, a user id and a sessionId were enough to squat it).
The secret must never change: a new one gives copies new ids, so re-imports would insert them
again. Everything else in the copy is the upload's, exactly; contentHash follows the new uuid.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dataport import aws
from dataport.models.documents import (
    CLAUDE_CODE,
    TRANSCRIPT_SESSION_KEYS,
    TRANSCRIPT_UUID_KEYS,
    claude_code,
    derived_ref,
    strip_derived,
)
from dataport.settings import get_settings
from dataport.source.content_hash import hash_of

#: the secret's shortest acceptable length (what GenerateSecretString makes is 64)
MIN_KEY_BYTES = 32


def copy_key() -> bytes:
    """The deployment's copy-id secret (Secrets Manager, by the name in settings)."""
    return _read_key(get_settings().copy_id_secret)


@lru_cache(maxsize=4)
def _read_key(name: str) -> bytes:
    value = aws.client("secretsmanager").get_secret_value(SecretId=name).get("SecretString")
    key = value.encode() if isinstance(value, str) else b""
    if len(key) < MIN_KEY_BYTES:
        raise RuntimeError(f"Copy-id secret {name!r} is missing or shorter than "
                           f"{MIN_KEY_BYTES} bytes")
    return key


def copy_id(key: bytes, owner_id: str, value: str) -> str:
    """The id of `value` in `owner_id`'s copy (a derived tool document keeps its suffix, so
    `<uuid>_tool_0` stays tied to its message). A UUID (version 8: custom) from the HMAC."""
    ref = derived_ref(value)
    if ref is not None:
        return f"{copy_id(key, owner_id, ref.origin)}_{ref.kind}_{ref.index}"
    digest = bytearray(hmac.new(key, f"{owner_id}/{value}".encode(), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(digest)))


@dataclass(frozen=True)
class SessionIds:
    """How one incoming session's ids are stored in `owner_id`'s account.

    `copy`: the session's id is held by another account, so the session and all its messages
    get derived ids. `foreign`: message origins (uuids without a derived suffix, after the copy
    step) held outside the session being written: those messages, their derived tool documents
    and the parentUuid references to them inside the session get derived ids too."""

    key: bytes
    owner_id: str
    stored_session_id: str
    copy: bool
    foreign: frozenset[str]

    def uuid(self, value: str) -> str:
        """A uuid (or parentUuid) of the upload as it is stored."""
        return self.uuid_of(self.copied(value))

    def copied(self, value: str) -> str:
        """The copy step: a copied session's ids are all derived."""
        return copy_id(self.key, self.owner_id, value) if self.copy else value

    def is_foreign(self, value: str) -> bool:
        """Whether a uuid after the copy step is held outside the session."""
        return strip_derived(value) in self.foreign

    def uuid_of(self, value: str) -> str:
        """The foreign step, on a uuid after the copy step."""
        return copy_id(self.key, self.owner_id, value) if self.is_foreign(value) else value

    def renames(self, value: str) -> bool:
        return self.uuid(value) != value

    def message(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The message as it is stored: ids derived where needed (those Claude Code's line
        names in claudeCode.fields too), contentHash recomputed."""
        kept = claude_code(doc)
        fields = self._line(kept.get("fields"))
        if not self.copy and fields is None and not self.renames(str(doc["uuid"])) and not (
                isinstance(doc.get("parentUuid"), str) and self.renames(doc["parentUuid"])):
            return doc
        copied = dict(doc)
        if fields is not None:
            copied[CLAUDE_CODE] = {**kept, "fields": fields}
        copied["sessionId"] = self.stored_session_id
        copied["uuid"] = self.uuid(str(doc["uuid"]))
        if isinstance(doc.get("parentUuid"), str):
            copied["parentUuid"] = self.uuid(doc["parentUuid"])
        if "contentHash" in doc and copied["uuid"] != doc["uuid"]:
            digest = hash_of(copied)
            if digest is not None:
                copied["contentHash"] = digest
        return copied


    def session(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        """The session document as it is stored: the ids its kept summary lines name
        (`leafUuid`) derived as the messages' are."""
        kept = claude_code(doc)
        summaries = kept.get("summaries")
        if not isinstance(summaries, list):
            return doc
        lines = [self._line(line) for line in summaries]
        if all(line is None for line in lines):
            return doc
        rewritten = [new if new is not None else old for new, old in zip(lines, summaries,
                                                                         strict=True)]
        return {**doc, CLAUDE_CODE: {**kept, "summaries": rewritten}}

    def _line(self, line: object) -> dict[str, Any] | None:
        """Claude Code's keys of a line (claudeCode.fields, a summary line) with the ids they
        name as they are stored; None when none changes."""
        if not isinstance(line, Mapping):
            return None
        changes: dict[str, Any] = {}
        for key in TRANSCRIPT_UUID_KEYS:
            value = line.get(key)
            if isinstance(value, str) and value and self.renames(value):
                changes[key] = self.uuid(value)
        for key in TRANSCRIPT_SESSION_KEYS:
            value = line.get(key)
            if self.copy and isinstance(value, str) and value != self.stored_session_id:
                changes[key] = self.stored_session_id
        return {**line, **changes} if changes else None


def origins(uuids: Iterable[str]) -> set[str]:
    """The messages (uuids without a derived suffix) these uuids belong to."""
    return {strip_derived(value) or value for value in uuids}
