"""Which backups retention lets go, and which of those a chain still needs.

A schedule's policy: its newest `keepLast` completed backups are kept, and every backup younger
than `keepDays` days; with both, a backup stays while either rule keeps it. Failed or corrupted
backups of a schedule hold nothing worth keeping: they go once `keepDays` (or, without it, the
hand-made retention) has passed. A backup still pending or running is never touched.

A backup made by hand carries its own expiry (`expires_at`, BackupRetentionDays by default).

Whatever a policy says, a backup stays while an increment that is not itself going needs it:
`ChainGuard.needed` follows the increments below a backup (the catalog's by-parent index) down
the chain, so a base stays while any increment built on it (directly or through others) stays.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from dataport.models.backups import BackupRecord, BackupStatus

#: statuses retention may expire (pending and running are never touched)
ENDED = frozenset({BackupStatus.COMPLETED, BackupStatus.CORRUPTED, BackupStatus.FAILED})


def policy_expired(backups: Sequence[BackupRecord], *, keep_last: int | None,
                   keep_days: int | None, default_days: int,
                   now: datetime) -> list[BackupRecord]:
    """The schedule's backups (any order) that its policy no longer keeps, newest first."""
    ended = sorted((b for b in backups if b.status in ENDED),
                   key=lambda b: (b.created_at, b.backup_id), reverse=True)
    completed = [b for b in ended if b.status is BackupStatus.COMPLETED]
    newest = {b.backup_id for b in completed[:keep_last]} if keep_last else set()
    young_after = now - timedelta(days=keep_days) if keep_days else None
    broken_after = now - timedelta(days=keep_days or default_days)
    doomed = []
    for backup in ended:
        if backup.status is BackupStatus.COMPLETED:
            kept = backup.backup_id in newest or (
                young_after is not None and backup.created_at > young_after)
        else:
            kept = backup.created_at > broken_after
        if not kept:
            doomed.append(backup)
    return doomed


class ChainGuard:
    """Answers "does an increment that stays need this backup?" for one sweep, given the
    backups this sweep expires (`going`) and a way to read a backup's increments."""

    def __init__(self, going: Collection[str],
                 children: Callable[[str], list[BackupRecord]]) -> None:
        self._going = set(going)
        self._children = children
        self._needed: dict[str, bool] = {}

    def needed(self, backup_id: str) -> bool:
        if backup_id not in self._needed:
            self._needed[backup_id] = False  # a cycle (never made) would otherwise not end
            self._needed[backup_id] = any(
                child.status not in (BackupStatus.EXPIRED, BackupStatus.FAILED)
                and (child.backup_id not in self._going or self.needed(child.backup_id))
                for child in self._children(backup_id))
        return self._needed[backup_id]
