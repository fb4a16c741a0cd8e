"""A backup of large messages restores in shards cut by its bytes, not only its message count
(workflows.restore_shards.shard_size): one user's backup of fewer messages than
`restore_shard_messages` but more stored bytes than `restore_shard_bytes` runs in shards of
about that many bytes each, and gives exactly what it holds (real ASL, real pymongo)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.jobs.store import JobStore
from dataport.settings import get_settings
from dataport.source.mongo import Document
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.restore_client import Restorer, store_backup
from tests.e2e.test_restores import OWNER, content, forget
from tests.restores.backups import of_user


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_restore_shard_bytes",
                   sessions_per_project=2) as database:
        yield database


@pytest.fixture
def settings_cleared() -> Iterator[None]:
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("settings_cleared")
def test_a_backup_of_large_messages_restores_in_shards_of_its_bytes(
        db: Database[Document], fresh_stack: LocalStack,
        monkeypatch: pytest.MonkeyPatch) -> None:
    backup = of_user(db, ObjectId(OWNER))
    at_backup = content(db, OWNER)
    stored = len(backup.container())
    backup_id = store_backup(backup, OWNER)
    forget(db, sorted(at_backup))  # everything lost: the restore brings it all back
    # as many messages as the default allows in one shard, but a quarter of the bytes a shard
    # may hold: the backup's messages are "large"
    assert len(backup.messages) < get_settings().restore_shard_messages
    monkeypatch.setenv("RESTORE_SHARD_BYTES", str(stored // 4))
    get_settings.cache_clear()

    job = Restorer(Api(fresh_stack, OWNER)).run(backupId=backup_id, mode="merge", timeout=180)
    assert job["status"] == "succeeded", job
    assert job.get("shards"), "one import execution: the backup's bytes did not cut it"
    shards = JobStore().require_many(job["shards"])
    assert len(shards) >= 3  # cut by bytes: about a quarter each
    per_shard = len(backup.messages) * (stored // 4) // stored
    assert all(shard.restore_state.report is not None
               and shard.restore_state.report.counts.messages <= 2 * per_shard
               for shard in shards)
    assert content(db, OWNER) == at_backup  # every session and message, exactly
