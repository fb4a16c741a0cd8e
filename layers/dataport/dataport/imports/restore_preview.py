"""The preview of a backup (`GET /backups/{id}/preview`): what restoring it restores and what
that would do to the target now, decided by the restore's own rules, so a preview right after a
restore of the same backup finds every session `identical`. A full or selective backup is a
chain of one link; a restore of an increment restores its chain: of each session the newest
link's version, none that a later link deleted. The chain is read here by the restore's own
reader (readers/backup.py,
`BackupSource` read in order with `sessions_only`: the links' `sessions/` members merged in
sessionId order, their `messages/` members never read), so the preview's sessions are the ones
the restore takes, each preceded by its project. Over that stream:

- inside, per project: its sessions, their messages (messageCount) and date range;
- each session against the target, found where the restore looks for it (UserData.sessions: by
  sessionId among the owner's projects, under its copy's derived id when another account holds
  the sessionId; the whole database for an instance backup): `new` when the target lacks it,
  else `identical` when the restore would leave it unchanged (imports/plan.py: the same
  descriptive fields, the same project (by path), the same messages) or `changed`. A preview
  reads no messages: the messages are compared through the stats the session document carries
  (plan.STAT_FIELDS: count, tokens, cost, time span, which ClaudeLens updates with every message);
- `onlyInTarget`: the target's sessions the chain lacks (a full restore removes them), a merge
  walk of the target's sorted sessionIds with the stream's (backups/chain.py).

Memory: a batch of sessions (backups/preview.py's BATCH), the chain's projects, and the
reader's (a line and a zstd window per link, the links' deletions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dataport.backups import preview
from dataport.backups.format import encode_line
from dataport.backups.preview import (
    Outcome,
    ProjectSummary,
    by_name,
    count_only_in_target,
)
from dataport.imports.limits import BadInput
from dataport.imports.plan import STAT_FIELDS, descriptive
from dataport.imports.readers.backup import BackupSource
from dataport.models.imports import Issue, IssueCode
from dataport.models.records import RecordKind
from dataport.source.conflicts import UserData
from dataport.source.mongo import Document, one_of
from dataport.source.scope import InstanceScope, OwnerScope


def preview_chain(source: BackupSource, target: OwnerScope,
                  beat: Callable[[], None] = lambda: None
                  ) -> tuple[list[ProjectSummary], Outcome]:
    """The chain's projects and what a restore would do to `target` (see the module's
    docstring). `source`: the increment with its chain, `sessions_only` and `in_order`; what
    the reader finds is raised (BadInput: a damaged member, a wrong password; NotInOrder).
    `beat()` is called between batches of sessions (a job's cancel check: what it raises goes
    through)."""
    projects: dict[str, ProjectSummary] = {}
    paths: dict[str, str | None] = {}  # the chain's project _id -> its path
    outcome = Outcome()
    compare = _Comparison(target, outcome)
    batch: list[tuple[Document, str | None]] = []

    def held() -> Iterator[str]:
        nonlocal batch
        for record in source.records(_orphans_left_out):
            doc = record.doc
            if record.kind is RecordKind.PROJECT:
                key = str(doc["_id"])
                paths[key] = _text(doc.get("path"))
                projects.setdefault(key, ProjectSummary(key, _text(doc.get("name")), paths[key]))
            elif record.kind is RecordKind.SESSION:
                key = str(doc.get("projectId"))
                projects.setdefault(key, ProjectSummary(key)).add(doc)
                batch.append((doc, paths.get(key)))
                if len(batch) >= preview.BATCH:  # (read here: tests make it small)
                    beat()
                    compare(batch)
                    batch = []
                yield str(doc["sessionId"])

    ids = held()
    count_only_in_target(target, ids, outcome, beat)
    for _ in ids:  # the chain's sessions past the target's last one
        pass
    if batch:
        compare(batch)
    return by_name(projects.values()), outcome


class _Comparison:
    """A batch of the chain's sessions (each with its project's path) against the target:
    one look-up of their stored sessions, one of those sessions' projects."""

    def __init__(self, target: OwnerScope, outcome: Outcome) -> None:
        self.target = target
        self.outcome = outcome
        self.user = (None if isinstance(target, InstanceScope)
                     else UserData(target.db, str(target.user_id)))

    def __call__(self, batch: list[tuple[Document, str | None]]) -> None:
        stored = self._stored([str(doc["sessionId"]) for doc, _ in batch])
        where = {doc["_id"]: _text(doc.get("path")) for doc in self.target.projects.find(
            {"_id": {"$in": list({s.get("projectId") for s in stored.values()})}},
            {"path": 1})} if stored else {}
        for doc, path in batch:
            session_id = str(doc["sessionId"])
            have = stored.get(session_id)
            if have is None:
                self.outcome.new += 1
                self.outcome.note("new", session_id)
            elif (where.get(have.get("projectId")) == path
                  and _compared(have) == _compared(doc)):
                self.outcome.identical += 1
            else:
                self.outcome.changed += 1
                self.outcome.note("changed", session_id)

    def _stored(self, ids: list[str]) -> dict[str, Document]:
        """The target's version of each session, found as the restore finds it."""
        if self.user is None:
            return {doc["sessionId"]: doc
                    for doc in self.target.sessions.find({"sessionId": one_of(ids)})}
        return {session_id: found.document for session_id, found in
                self.user.sessions(ids).items() if found.document is not None}


def _orphans_left_out(problem: Issue) -> None:
    """The reader's issues: an error stops the preview (a damaged member: BackupNotUsable),
    except a session whose project the chain lacks, which no restore takes (an instance
    restore's shards leave it out: it has no owner); warnings are not the preview's."""
    if problem.severity == "error" and problem.code != IssueCode.MISSING_FIELD.value:
        raise BadInput(problem)


def _compared(session: Document) -> bytes:
    """What the restore compares of a session (imports/plan.py), its messages through their
    stats, as one canonical line (a datetime or Decimal128 compared as stored)."""
    fields = {**descriptive(session),
              **{key: session[key] for key in STAT_FIELDS if key in session}}
    return encode_line(dict(sorted(fields.items())))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
