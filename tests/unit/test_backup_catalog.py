"""The backup catalog over (moto) DynamoDB, shaped as template.yaml declares BackupsTable:
scoped reads, newest-first paging, conditional status changes, chains and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dataport.backups.catalog import BackupCatalog
from dataport.errors import Conflict, InvalidRequest, NotFound
from dataport.models.backups import (
    BackupCounts,
    BackupRecord,
    BackupScope,
    BackupSizes,
    BackupStatus,
    BackupType,
)
from dataport.models.job_common import JobError
from dataport.settings import get_settings
from tests.fixtures.aws import create_table_like

ALICE = "66ad9b005f2b4a0012c0aaaa"
BOB = "66ad9b005f2b4a0012c0bbbb"
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def catalog(moto_aws: None) -> BackupCatalog:
    create_table_like("BackupsTable", get_settings().backups_table)
    return BackupCatalog()


def _record(n: int, owner: str = ALICE, **fields: Any) -> BackupRecord:
    values: dict[str, Any] = {
        "backup_id": f"{n:032x}", "owner_id": owner, "scope": BackupScope.USER,
        "type": BackupType.FULL, "name": f"backup {n}", "status": BackupStatus.PENDING,
        "created_at": NOW + timedelta(minutes=n), "updated_at": NOW + timedelta(minutes=n),
        "expires_at": NOW + timedelta(days=30)}
    values.update(fields)
    return BackupRecord(**values)


def _complete(catalog: BackupCatalog, backup_id: str) -> BackupRecord:
    catalog.mark_running(backup_id)
    return catalog.mark_completed(
        backup_id, object_key=f"backups/{backup_id}/b.zip", filename="b.zip",
        sizes=BackupSizes(stored=10, uncompressed=30, compressed=9),
        counts=BackupCounts(projects=1, sessions=2, messages=3), sha256="a" * 64,
        watermark=NOW, parent_watermark=None)


def test_a_record_reads_back_scoped_to_its_owner(catalog: BackupCatalog) -> None:
    record = catalog.create_pending(_record(1, description="before the migration"))
    assert catalog.get(record.backup_id, ALICE) == record
    with pytest.raises(NotFound):
        catalog.get(record.backup_id, BOB)
    with pytest.raises(NotFound):  # an administrator sees instance backups, not other users'
        catalog.get(record.backup_id, BOB, admin=True)
    with pytest.raises(Conflict):
        catalog.create_pending(record)

    instance = catalog.create_pending(_record(2, scope=BackupScope.INSTANCE))
    assert catalog.get(instance.backup_id, BOB, admin=True) == instance
    with pytest.raises(NotFound):
        catalog.get(instance.backup_id, ALICE)  # not even its maker, without the role


def test_listings_are_newest_first_paged_and_never_mix(catalog: BackupCatalog) -> None:
    for n in range(5):
        catalog.create_pending(_record(n))
    catalog.create_pending(_record(10, owner=BOB))
    catalog.create_pending(_record(11, scope=BackupScope.INSTANCE))

    first, token = catalog.listing(ALICE, limit=3)
    assert [r.name for r in first] == ["backup 4", "backup 3", "backup 2"]
    assert token is not None
    rest, end = catalog.listing(ALICE, limit=3, next_token=token)
    assert [r.name for r in rest] == ["backup 1", "backup 0"]
    assert end is None
    assert [r.name for r in catalog.listing(BOB)[0]] == ["backup 10"]
    assert [r.name for r in catalog.listing(BOB, instance=True)[0]] == ["backup 11"]
    with pytest.raises(InvalidRequest):  # Alice's token does not page Bob's listing
        catalog.listing(BOB, limit=3, next_token=token)


def test_status_changes_follow_the_lifecycle(catalog: BackupCatalog) -> None:
    record = catalog.create_pending(_record(1))
    with pytest.raises(Conflict, match="pending; it cannot become completed"):
        catalog.mark_completed(record.backup_id, object_key="k", filename="f",
                               sizes=BackupSizes(stored=1, uncompressed=1, compressed=1),
                               counts=BackupCounts(), sha256="b" * 64, watermark=NOW,
                               parent_watermark=None)
    done = _complete(catalog, record.backup_id)
    assert done.status is BackupStatus.COMPLETED
    assert done.sizes == BackupSizes(stored=10, uncompressed=30, compressed=9)
    assert done.counts == BackupCounts(projects=1, sessions=2, messages=3)
    assert done.watermark == NOW
    assert done.completed_at is not None
    with pytest.raises(Conflict):  # a late failure never overwrites the end
        catalog.mark_failed(record.backup_id, JobError(code="x", message="y"))

    assert catalog.mark_verified(record.backup_id).verified_at is not None
    damaged = catalog.mark_corrupted(record.backup_id, member="messages/00001-00000.jsonl.zst",
                                     error=JobError(code="checksum_mismatch", message="bad"))
    assert damaged.status is BackupStatus.CORRUPTED
    assert damaged.corrupted_member == "messages/00001-00000.jsonl.zst"
    with pytest.raises(Conflict):  # corrupted stays corrupted
        catalog.mark_verified(record.backup_id)
    expired = catalog.mark_expired(record.backup_id)
    assert expired.status is BackupStatus.EXPIRED
    with pytest.raises(Conflict):
        catalog.set_expires_at(record.backup_id, NOW)

    failing = catalog.create_pending(_record(2))
    failed = catalog.mark_failed(failing.backup_id, JobError(code="timeout", message="slow"))
    assert failed.error == JobError(code="timeout", message="slow")
    with pytest.raises(Conflict, match="missing"):
        catalog.mark_running("f" * 32)


def test_increments_and_expiry(catalog: BackupCatalog) -> None:
    base = _complete(catalog, catalog.create_pending(_record(1)).backup_id)
    child = catalog.create_pending(_record(2, type=BackupType.INCREMENTAL,
                                           parent_id=base.backup_id))
    catalog.create_pending(_record(3))
    assert [c.backup_id for c in catalog.children(base.backup_id)] == [child.backup_id]
    assert [c.backup_id for c in catalog.dependents(base.backup_id, NOW)] == [child.backup_id]
    assert catalog.dependents(base.backup_id, NOW + timedelta(days=31)) == []  # it expired
    catalog.mark_failed(child.backup_id, JobError(code="x", message="y"))
    assert catalog.dependents(base.backup_id, NOW) == []

    catalog.set_expires_at(base.backup_id, NOW - timedelta(days=1))
    assert [r.backup_id for r in catalog.expiring(NOW)] == [base.backup_id]
    assert list(catalog.expiring(NOW - timedelta(days=2))) == []
    kept = catalog.set_expires_at(base.backup_id, None)
    assert kept.expires_at is None
    assert list(catalog.expiring(NOW)) == []
    catalog.delete(base.backup_id)
    assert catalog.find(base.backup_id) is None
