"""The parts of a backup's preview (imports/restore_preview.py computes it: what a backup
holds, or an increment's whole chain, and what restoring it would do to its target now): the
per-project summaries, the counted outcome with its samples, and the sessions the target has
that the backup lacks (a full restore's removals: a merge walk of two sorted streams,
backups/chain.py, never a set in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dataport.backups.chain import session_deletions
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
