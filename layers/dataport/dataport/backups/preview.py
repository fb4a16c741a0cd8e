"""What a full or selective backup holds and what restoring it would do to its target now (an
increment's preview, which is its chain's, is imports/restore_preview.py's).

Inside: per project, its sessions and messages (the sessions' messageCount) and their date range,
read from the backup's `projects/` and `sessions/` members (never its messages: a preview reads a
small part of the object). Against the target (the owner's data for a user backup, the whole
database for an instance backup, read through the same scopes every query uses):

- per session of the backup: `new` (the target lacks it), `identical` (the stored session document
  is the same, byte for byte as canonical Extended JSON: ClaudeLens updates a session's
  updatedAt, counts and cost with every message, so an unchanged session document stands for
  unchanged messages) or `changed`;
- for a full restore, the sessions the target has that the backup lacks: a merge walk of two
  sorted streams (backups/chain.py), never a set in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataport.backups.chain import session_deletions
from dataport.backups.format import BackupContainer, encode_line
from dataport.models.exports import ExportFilters
from dataport.source.reader import session_keys
from dataport.source.scope import OwnerScope

#: sessionIds compared with the target per query
BATCH = 500
#: sessionIds of each kind named in the answer (the counts are complete)
SAMPLE = 20


@dataclass
class ProjectSummary:
    project_id: str
    name: str | None = None
    path: str | None = None
    sessions: int = 0
    messages: int = 0
    first: datetime | None = None
    last: datetime | None = None

    def add(self, session: dict[str, Any]) -> None:
        self.sessions += 1
        count = session.get("messageCount")
        self.messages += count if isinstance(count, int) else 0
        for moment in (session.get("startedAt"), session.get("endedAt")):
            if isinstance(moment, datetime):
                self.first = moment if self.first is None else min(self.first, moment)
                self.last = moment if self.last is None else max(self.last, moment)


@dataclass
class Outcome:
    new: int = 0
    changed: int = 0
    identical: int = 0
    only_in_target: int = 0
    samples: dict[str, list[str]] = field(default_factory=lambda: {
        "new": [], "changed": [], "onlyInTarget": []})

    def note(self, kind: str, session_id: str) -> None:
        sample = self.samples[kind]
        if len(sample) < SAMPLE:
            sample.append(session_id)


def preview(backup: BackupContainer, target: OwnerScope,
            beat: Callable[[], None] = lambda: None) -> tuple[list[ProjectSummary], Outcome]:
    """The backup's projects and what a restore would do to `target` (see the module's
    docstring). `beat()` is called between batches of sessions (a job's cancel check: what it
    raises goes through)."""
    manifest = backup.manifest
    projects: dict[str, ProjectSummary] = {}
    for entry in manifest.data_members("projects"):
        reader = backup.member(entry)
        for project in reader.documents():
            key = str(project["_id"])
            projects[key] = ProjectSummary(key, _text(project.get("name")),
                                           _text(project.get("path")))
        reader.check()
    outcome = Outcome()
    batch: list[dict[str, Any]] = []
    for session in _sessions(backup):
        key = str(session.get("projectId"))
        projects.setdefault(key, ProjectSummary(key)).add(session)
        batch.append(session)
        if len(batch) >= BATCH:
            beat()
            _compare(batch, target, outcome)
            batch = []
    if batch:
        _compare(batch, target, outcome)
    count_only_in_target(target, (str(s["sessionId"]) for s in _sessions(backup)), outcome,
                         beat)
    return by_name(projects.values()), outcome


def count_only_in_target(target: OwnerScope, held: Iterable[str], outcome: Outcome,
                         beat: Callable[[], None]) -> None:
    """The target's sessions that `held` (sorted sessionIds: what a restore restores) lacks,
    a full restore's removals, counted in `outcome`: a merge walk of the two sorted streams."""
    for number, session_id in enumerate(
            session_deletions(session_keys(target, ExportFilters()), held), 1):
        if number % BATCH == 0:
            beat()
        outcome.only_in_target += 1
        outcome.note("onlyInTarget", session_id)


def by_name(projects: Iterable[ProjectSummary]) -> list[ProjectSummary]:
    return sorted(projects, key=lambda p: (p.name or "", p.project_id))


def _sessions(backup: BackupContainer) -> Iterator[dict[str, Any]]:
    for entry in backup.manifest.data_members("sessions"):
        reader = backup.member(entry)
        yield from reader.documents()
        reader.check()


def _compare(batch: list[dict[str, Any]], target: OwnerScope, outcome: Outcome) -> None:
    ids = [str(session["sessionId"]) for session in batch]
    query = target.sessions_query(ExportFilters(), after=None, upto=None)
    query["sessionId"] = {"$in": ids}
    stored = {doc["sessionId"]: doc for doc in target.sessions.find(query)}
    for session in batch:
        session_id = str(session["sessionId"])
        have = stored.get(session_id)
        if have is None:
            outcome.new += 1
            outcome.note("new", session_id)
        elif encode_line(have) == encode_line(session):
            outcome.identical += 1
        else:
            outcome.changed += 1
            outcome.note("changed", session_id)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
