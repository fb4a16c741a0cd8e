"""Planning one session: what an import does to it, message by message, touching nothing.

The same planner serves the conflict report (validation), the dry run and the execution, so a
dry run reports exactly what the execution then does. It compares the incoming messages, streamed
in upload order, with an index of the stored ones (uuid -> _id, collection, contentHash and the
few fields the session stats need) and yields the operations to apply:

- insert: a session the user does not have; all its messages are inserted.
- skip: the user has the session and the strategy is skip: nothing is read or written.
- merge: union by uuid; a message on both sides with a different contentHash takes the incoming
  version, and so does one whose Claude Code line (claudeCode, a computed cost) the incoming
  side carries otherwise (a message imported before those were kept); the stored session
  keeps its project and _id, takes the upload's descriptive fields (summary...) and gets
  stats recomputed from the union.
- replace: the stored session becomes the incoming one (its _id is kept, its project is the
  upload's); stored messages the upload lacks are deleted.
A session for which merge or replace finds nothing to change is `unchanged` and not written at
all: importing the same upload twice with skip or merge changes nothing the second time.

Memory: the stored side's index, about 300 bytes per stored message of this one session.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from bson import ObjectId
from bson.decimal128 import Decimal128

from dataport.imports.readers.typed import SessionTotals
from dataport.models.documents import transcript_digest
from dataport.models.imports import (
    MessageCounts,
    MessageDiff,
    SessionAction,
    SessionConflict,
    SideSummary,
    Strategy,
)
from dataport.source.conflicts import StoredMessage, effective_hash
from dataport.source.mongo import Document
from dataport.source.writes import IMPORT_TAG

#: what a session's messages determine: never taken from the upload, always recomputed
STAT_FIELDS = frozenset({"messageCount", "totalCost", "inputTokens", "outputTokens",
                         "totalTokens", "toolsUsed", "startedAt", "endedAt"})
#: the stored document's own bookkeeping, never compared
BOOKKEEPING = frozenset({"_id", "sessionId", "projectId", "createdAt", "updatedAt", IMPORT_TAG})
@dataclass(frozen=True)
class Op:
    kind: Literal["insert", "update", "delete"]
    doc: Document | None  # the incoming message (insert, update)
    stored: StoredMessage | None  # what it replaces or deletes (update, delete)


def descriptive(doc: Mapping[str, Any]) -> Document:
    """A session's own fields: what is neither bookkeeping nor a stat (summary, ...)."""
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING and k not in STAT_FIELDS}


class SessionPlan:
    """Feed every incoming message to `feed`, then call `finish`; apply what they yield."""

    def __init__(self, *, session_id: str, stored_id: str, strategy: Strategy,
                 incoming: Mapping[str, Any], stored: Document | None,
                 stored_messages: dict[str, StoredMessage], incoming_count: int,
                 project_changed: bool = False) -> None:
        self.session_id = session_id
        self.stored_id = stored_id
        self.strategy = strategy
        self.incoming = incoming
        self.stored = stored
        self._stored_messages = stored_messages
        self._incoming_count = incoming_count
        self._project_changed = project_changed
        self.mode = (SessionAction.INSERT if stored is None
                     else SessionAction.SKIP if strategy is Strategy.SKIP
                     else SessionAction(strategy.value))
        self.inserted = self.updated = self.unchanged = self.deleted = 0
        self.incoming_totals = SessionTotals(stored_id)
        self.stored_totals = SessionTotals(stored_id)
        for message in stored_messages.values():
            self.stored_totals.add(message.stats)
        self._finished = False
        self.only_stored = 0
        self.copied = 0  # incoming messages under derived uuids (set by whoever derived them)

    @property
    def reads_messages(self) -> bool:
        """Skip decides without looking at a single message."""
        return self.mode is not SessionAction.SKIP

    def feed(self, doc: Document) -> Iterator[Op]:
        """One incoming message (as it will be stored: a copy's ids already derived)."""
        self.incoming_totals.add(doc)
        stored = self._stored_messages.pop(doc["uuid"], None)
        if stored is None:
            self.inserted += 1
            yield Op("insert", doc, None)
        elif effective_hash(doc) != stored.content_hash or _brings_line(doc, stored):
            self.updated += 1
            yield Op("update", doc, stored)
        else:
            # the same message (changes are detected by contentHash): left as it is stored
            self.unchanged += 1

    def finish(self) -> Iterator[Op]:
        """Stored messages the upload lacks: deleted by replace, kept by merge."""
        self._finished = True
        self.only_stored = len(self._stored_messages)
        if self.mode is SessionAction.REPLACE:
            for stored in self._stored_messages.values():
                self.deleted += 1
                yield Op("delete", None, stored)

    # -------------------------------------------------------------------------- the verdict

    @property
    def fields_differ(self) -> bool:
        if self.stored is None:
            return True
        incoming, stored = descriptive(self.incoming), descriptive(self.stored)
        if self.mode is SessionAction.REPLACE:
            return incoming != stored or self._project_changed
        return any(stored.get(key) != value for key, value in incoming.items())

    @property
    def messages_differ(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)

    @property
    def action(self) -> SessionAction:
        if self.mode in (SessionAction.INSERT, SessionAction.SKIP):
            return self.mode
        assert self._finished, "finish() first"
        if self.messages_differ or self.fields_differ:
            return self.mode
        return SessionAction.UNCHANGED

    @property
    def writes(self) -> bool:
        return self.action in (SessionAction.INSERT, SessionAction.REPLACE, SessionAction.MERGE)

    def counts(self) -> MessageCounts:
        action = self.action
        if action is SessionAction.SKIP:
            return MessageCounts(skipped=self._incoming_count)
        return MessageCounts(inserted=self.inserted, updated=self.updated, deleted=self.deleted,
                             unchanged=self.unchanged, copied=self.copied)

    def session_document(self, *, project_id: ObjectId, job_id: str,
                         now: datetime) -> Document:
        """The session document to store, stats recomputed from the messages it will have."""
        totals = SessionTotals(self.stored_id)
        # merge keeps what the upload lacks: the stored survivors count with the upload's
        survivors = self._stored_messages.values() if self.mode is SessionAction.MERGE else ()
        for message in survivors:
            totals.add(message.stats)
        stats = _stats_of(self.incoming_totals, totals)
        incoming = descriptive(self.incoming)
        if self.stored is None:
            doc: Document = {"_id": ObjectId(), "sessionId": self.stored_id,
                             "projectId": project_id, **incoming, **stats,
                             "createdAt": self.incoming.get("createdAt") or now}
        elif self.mode is SessionAction.REPLACE:
            doc = {"_id": self.stored["_id"], "sessionId": self.stored_id,
                   "projectId": project_id, **incoming, **stats,
                   "createdAt": self.incoming.get("createdAt") or self.stored.get("createdAt")
                   or now}
        else:
            kept = {k: v for k, v in self.stored.items()
                    if k not in STAT_FIELDS and k != IMPORT_TAG}
            doc = {**kept, **incoming, **stats}
        doc["updatedAt"] = now
        doc[IMPORT_TAG] = job_id
        return doc

    def conflict(self) -> SessionConflict | None:
        """How a session the user has differs from the upload's (a merge-mode plan)."""
        if self.stored is None:
            return None
        assert self._finished, "finish() first"
        diff = MessageDiff(new=self.inserted, changed=self.updated, identical=self.unchanged,
                           only_existing=self.only_stored, copied=self.copied)
        fields = self.fields_differ
        identical = not (diff.new or diff.changed or diff.only_existing or fields)
        suggestion, reason = _suggest(diff, fields)
        summary = self.incoming.get("summary") or self.stored.get("summary")
        return SessionConflict(
            session_id=self.session_id, stored_session_id=self.stored_id,
            summary=summary if isinstance(summary, str) else None,
            status="identical" if identical else "changed", messages=diff,
            existing=_side(self.stored_totals), incoming=_side(self.incoming_totals),
            suggested_action=suggestion, reason=reason)


def _brings_line(doc: Document, stored: StoredMessage) -> bool:
    """The upload's message carries Claude Code's line (claudeCode, a computed cost) other than
    the stored one: a message imported before those were kept gets them. An upload without the
    line (a JSON package of what ClaudeLens ingested) never takes it away."""
    incoming = transcript_digest(doc)
    return incoming is not None and incoming != stored.transcript


def _stats_of(*parts: SessionTotals) -> Document:
    """The stats fields of messages split over several totals (incoming, then survivors)."""
    started = [p.started for p in parts if p.started is not None]
    ended = [p.ended for p in parts if p.ended is not None]
    stats: Document = {}
    if started:
        stats["startedAt"], stats["endedAt"] = min(started), max(ended)
    inputs = sum(p.input_tokens for p in parts)
    outputs = sum(p.output_tokens for p in parts)
    stats.update({
        "messageCount": sum(p.messages for p in parts),
        "totalCost": Decimal128(sum((p.cost for p in parts), Decimal(0))),
        "inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs,
        "toolsUsed": sum(p.tools for p in parts),
    })
    return stats


def _side(totals: SessionTotals) -> SideSummary:
    return SideSummary(messages=totals.messages, cost=totals.cost, started_at=totals.started,
                       ended_at=totals.ended)


def _suggest(diff: MessageDiff, fields_differ: bool) -> tuple[Strategy, str]:
    if diff.changed == 0 and diff.new == 0:
        if diff.only_existing:
            return Strategy.SKIP, (f"yours has {diff.only_existing} messages the upload lacks "
                                   "and nothing new")
        if fields_differ:
            return Strategy.MERGE, "same messages; the session's details differ"
        return Strategy.SKIP, "identical: nothing to import"
    if diff.changed == 0:
        return Strategy.MERGE, f"the upload adds {diff.new} messages to the session"
    if diff.only_existing:
        return Strategy.MERGE, (f"both sides hold messages the other lacks; {diff.changed} "
                                "differ and the upload's versions would be kept")
    return Strategy.REPLACE, (f"the upload holds all of your messages; {diff.changed} of them "
                              "differ")
