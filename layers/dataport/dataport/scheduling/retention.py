"""The retention sweep (its own function, on an hourly EventBridge rule): expire what retention
lets go, delete its stored object, mark it `expired` in the catalog (the record stays, as
history), and never a backup that an increment which stays still needs.

What goes, at the sweep's tick `now`:
- of every schedule, the backups its policy (keepLast, keepDays) no longer keeps;
- of every other backup (made by hand, or left by a deleted schedule), those whose `expiresAt`
  has passed (the catalog's by-status index). A scheduled backup's recorded expiry (keepDays,
  else BackupRetentionDays, after it was made) counts only once its schedule is deleted.
Then each, newest first (increments before their bases), unless ChainGuard says an increment
that stays needs it: the object is deleted, then the record marked expired. A crash between the
two leaves a record the next sweep finds again (deleting a deleted object is harmless). The S3
lifecycle rule on `backups/` is only the backstop for objects no record points at any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from dataport.backups.catalog import BackupCatalog
from dataport.bucket import PackagesBucket, packages_bucket
from dataport.errors import Conflict
from dataport.models.backups import BackupRecord, BackupStatus
from dataport.models.schedules import ScheduleRecord
from dataport.observability import logger
from dataport.schedule_store import ScheduleStore
from dataport.schedules.retention import ENDED, ChainGuard, policy_expired
from dataport.settings import get_settings


@dataclass
class SweepReport:
    expired: int = 0
    kept_for_chains: int = 0
    already_changed: int = 0


def sweep(now: datetime, *, catalog: BackupCatalog | None = None,
          schedules: ScheduleStore | None = None,
          bucket: PackagesBucket | None = None) -> SweepReport:
    catalog = catalog or BackupCatalog()
    schedules = schedules or ScheduleStore()
    bucket = bucket or packages_bucket()
    going: dict[str, BackupRecord] = {}
    default_days = get_settings().backup_retention_days
    live: set[str] = set()
    for schedule in schedules.all_schedules():
        live.add(schedule.schedule_id)
        for backup in policy_expired(list(_backups_of(catalog, schedule)),
                                     keep_last=schedule.keep_last, keep_days=schedule.keep_days,
                                     default_days=default_days, now=now):
            going[backup.backup_id] = backup
    for status in sorted(ENDED):
        for backup in catalog.expiring(now, status):
            if backup.schedule_id not in live:  # a live schedule's policy decides for its own
                going.setdefault(backup.backup_id, backup)

    guard = ChainGuard(going, catalog.children)
    report = SweepReport()
    for backup in sorted(going.values(), key=lambda b: (b.created_at, b.backup_id),
                         reverse=True):
        if guard.needed(backup.backup_id):
            report.kept_for_chains += 1
            logger.info("backup kept: an increment that stays needs it",
                        extra={"backup_id": backup.backup_id})
            continue
        if backup.object_key:
            bucket.delete(backup.object_key)
        try:
            catalog.mark_expired(backup.backup_id)
        except Conflict:  # pending again, expired by another sweep, or gone meanwhile
            report.already_changed += 1
            continue
        report.expired += 1
    logger.info("retention sweep", extra={"tick": now.isoformat(), "expired": report.expired,
                                          "kept_for_chains": report.kept_for_chains})
    return report


def _backups_of(catalog: BackupCatalog, schedule: ScheduleRecord) -> Iterator[BackupRecord]:
    """The schedule's backups: its owner's listing (or the instance listing), filtered."""
    token: str | None = None
    while True:
        page, token = catalog.listing(schedule.owner_id, instance=schedule.scope == "instance",
                                      limit=100, next_token=token)
        for backup in page:
            if backup.schedule_id == schedule.schedule_id and \
                    backup.status is not BackupStatus.EXPIRED:
                yield backup
        if token is None:
            return
