"""The retention sweep on the local stack, fired by the clock's hourly rule: real catalog
records (BackupsTable), real objects in the bucket. Hand-made backups go at their expiry,
scheduled ones by their schedule's policy, and never a base that a kept increment needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dataport.backups.catalog import BackupCatalog
from dataport.bucket import packages_bucket
from dataport.models.backups import (
    BackupCounts,
    BackupRecord,
    BackupScope,
    BackupSizes,
    BackupStatus,
    BackupType,
)
from dataport.models.job_common import JobError
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api
from tests.infrastructure.iam import assert_calls_allowed
from tests.schedules.support import create

SWEEP = "RetentionSweepFunction"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def catalog(fresh_stack: LocalStack) -> BackupCatalog:
    return BackupCatalog()


class Backups:
    """Makes catalog records (and their stored objects) the way the backups pipeline does."""

    def __init__(self, catalog: BackupCatalog) -> None:
        self.catalog = catalog
        self.bucket = packages_bucket()
        self.count = 0

    def make(self, *, parent: str | None = None, days_old: float = 0,
             expires_in_days: float | None = 30, schedule_id: str | None = None,
             status: BackupStatus = BackupStatus.COMPLETED) -> str:
        self.count += 1
        backup_id = f"{self.count:032x}"
        created = T0 - timedelta(days=days_old)
        self.catalog.create_pending(BackupRecord(
            backup_id=backup_id, owner_id=seed.DEMO_USER_ID, scope=BackupScope.USER,
            type=BackupType.INCREMENTAL if parent else BackupType.FULL,
            name=f"backup {self.count}", status=BackupStatus.PENDING, created_at=created,
            updated_at=created, parent_id=parent, schedule_id=schedule_id,
            expires_at=(created + timedelta(days=expires_in_days)
                        if expires_in_days is not None else None)))
        if status is BackupStatus.PENDING:
            return backup_id
        self.catalog.mark_running(backup_id)
        if status is BackupStatus.FAILED:
            self.catalog.mark_failed(backup_id, JobError(code="boom", message="it broke"))
            return backup_id
        key = self.key(backup_id)
        self.bucket.put(key, b"PK backup bytes", {})
        self.catalog.mark_completed(
            backup_id, object_key=key, filename="b.zip",
            sizes=BackupSizes(stored=15, uncompressed=30, compressed=9),
            counts=BackupCounts(projects=1, sessions=2, messages=3), sha256="a" * 64,
            watermark=created, parent_watermark=None)
        return backup_id

    @staticmethod
    def key(backup_id: str) -> str:
        return f"backups/{backup_id}/backup.zip"

    def status(self, backup_id: str) -> BackupStatus:
        found = self.catalog.find(backup_id)
        assert found is not None
        return found.status

    def stored(self, backup_id: str) -> bool:
        return self.bucket.exists(self.key(backup_id))


def _sweep(stack: LocalStack, at: datetime) -> dict[str, Any]:
    fired = stack.clock.fire(SWEEP, at)
    assert fired.error is None, fired.error
    result: dict[str, Any] = fired.result
    return result


def test_hand_made_backups_expire_but_a_base_stays_while_its_increment_does(
        fresh_stack: LocalStack, catalog: BackupCatalog) -> None:
    backups = Backups(catalog)
    base = backups.make(expires_in_days=30)
    increment = backups.make(parent=base, expires_in_days=60)
    alone = backups.make(expires_in_days=30)
    young = backups.make(expires_in_days=90)
    running = backups.make(expires_in_days=1, status=BackupStatus.PENDING)

    result = _sweep(fresh_stack, T0 + timedelta(days=31))
    assert result == {"expired": 1, "kept_for_chains": 1, "already_changed": 0}
    assert backups.status(alone) is BackupStatus.EXPIRED
    assert not backups.stored(alone)
    for kept in (base, increment, young):
        assert backups.status(kept) is BackupStatus.COMPLETED
        assert backups.stored(kept)
    assert backups.status(running) is BackupStatus.PENDING

    result = _sweep(fresh_stack, T0 + timedelta(days=61))
    assert result["expired"] == 2
    assert result["kept_for_chains"] == 0
    for gone in (base, increment):
        assert backups.status(gone) is BackupStatus.EXPIRED
        assert not backups.stored(gone)
    assert backups.status(young) is BackupStatus.COMPLETED
    assert backups.stored(young)
    assert_calls_allowed(fresh_stack)


def test_a_base_stays_while_an_increment_further_down_its_chain_stays(
        fresh_stack: LocalStack, catalog: BackupCatalog) -> None:
    backups = Backups(catalog)
    base = backups.make(expires_in_days=10)
    first = backups.make(parent=base, expires_in_days=10)
    second = backups.make(parent=first, expires_in_days=50)
    _sweep(fresh_stack, T0 + timedelta(days=20))
    assert [backups.status(b) for b in (base, first, second)] == [BackupStatus.COMPLETED] * 3


def test_a_schedule_keeps_its_newest_and_the_chain_bases_they_need(
        fresh_stack: LocalStack, catalog: BackupCatalog) -> None:
    api = Api(fresh_stack, seed.DEMO_USER_ID)
    schedule_id = create(api, schedule={"expression": "rate(1 day)"}, type="incremental",
                         fullEvery=3, retention={"keepLast": 1})["scheduleId"]
    backups = Backups(catalog)
    # recorded expiries as the launcher leaves them (BackupRetentionDays): the policy rules
    mine: dict[str, Any] = {"schedule_id": schedule_id, "expires_in_days": 0.5}
    full_1 = backups.make(days_old=5, **mine)
    inc_1 = backups.make(parent=full_1, days_old=4, **mine)
    inc_2 = backups.make(parent=inc_1, days_old=3, **mine)
    full_2 = backups.make(days_old=2, **mine)
    inc_3 = backups.make(parent=full_2, days_old=1, **mine)
    broken = backups.make(days_old=40, status=BackupStatus.FAILED, **mine)
    by_hand = backups.make(days_old=5, expires_in_days=30)

    result = _sweep(fresh_stack, T0)
    # keepLast 1 keeps inc_3; full_2 is its base: kept for the chain; the older chain goes
    assert result == {"expired": 4, "kept_for_chains": 1, "already_changed": 0}
    assert {b: backups.status(b) for b in (full_1, inc_1, inc_2, broken)} == \
        dict.fromkeys((full_1, inc_1, inc_2, broken), BackupStatus.EXPIRED)
    assert not any(backups.stored(b) for b in (full_1, inc_1, inc_2))
    for kept in (full_2, inc_3, by_hand):
        assert backups.status(kept) is BackupStatus.COMPLETED
        assert backups.stored(kept)

    # a longer policy keeps everything left; a second sweep changes nothing
    assert api.request("PATCH", f"/backup-schedules/{schedule_id}",
                       json={"retention": {"keepLast": 1, "keepDays": 3}}).status_code == 200
    assert _sweep(fresh_stack, T0)["expired"] == 0
    assert backups.status(full_2) is BackupStatus.COMPLETED

    # once the schedule is gone, its backups expire at their recorded expiry, chains whole
    assert api.request("DELETE", f"/backup-schedules/{schedule_id}").status_code == 204
    assert _sweep(fresh_stack, T0)["expired"] == 2
    assert backups.status(full_2) is backups.status(inc_3) is BackupStatus.EXPIRED
    assert backups.status(by_hand) is BackupStatus.COMPLETED
