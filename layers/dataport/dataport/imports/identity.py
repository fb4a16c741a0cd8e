"""Copies: a session whose id another account holds in this database.

A ClaudeLens database holds a sessionId once and a message uuid once (unique indexes), and
messages name their session only by that id. So when user B imports a package of user A's
sessions into the same database (a hand-over, or the export -> import round trip), B's copy
cannot keep A's ids: sharing them would merge B's messages into A's session, which is a leak.
B's copy gets ids derived from B's user id and the original ids (UUIDv5): the same upload
imported again finds the same copy (so skip and merge change nothing the second time), two users
never derive the same id, and identity stays (owner, sessionId) as the upload names it.
Everything else in the copy is the upload's, exactly; contentHash follows the new uuid.
"""

from __future__ import annotations

import uuid
from typing import Any

from dataport.formats.common import derived_ref
from dataport.imports.readers.typed import hash_of

#: fixed forever: changing it would make re-imports of copies insert them again
COPY_NAMESPACE = uuid.UUID("5b0e3c1c-6f4f-4d55-9a57-6b1f0c2d7e41")


def copy_id(owner_id: str, value: str) -> str:
    """The id of `value` in `owner_id`'s copy (a derived tool document keeps its suffix, so
    `<uuid>_tool_0` stays tied to its message)."""
    ref = derived_ref(value)
    if ref is not None:
        return f"{copy_id(owner_id, ref.origin)}_{ref.kind}_{ref.index}"
    return str(uuid.uuid5(COPY_NAMESPACE, f"{owner_id}/{value}"))


def copy_message(owner_id: str, stored_session_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The message as it is stored in the copy: ids re-derived, contentHash recomputed."""
    copied = dict(doc)
    copied["sessionId"] = stored_session_id
    copied["uuid"] = copy_id(owner_id, str(doc["uuid"]))
    if isinstance(doc.get("parentUuid"), str):
        copied["parentUuid"] = copy_id(owner_id, doc["parentUuid"])
    if "contentHash" in doc:
        digest = hash_of(copied)
        if digest is not None:
            copied["contentHash"] = digest
    return copied
