"""Restores over HTTP, as a user's script drives them, and backups placed where a restore by
id finds them (the object in the bucket, its record completed in the catalog)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

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
from tests.e2e.api_client import Api, job_row
from tests.fixtures.moto_speed import TABLE_WRITES
from tests.restores.backups import Backup

ENDED = {"succeeded", "failed", "cancelled", "rolled_back"}


def store_backup(backup: Backup, owner_id: str, *, data: bytes | None = None,
                 sha256: str | None = None) -> str:
    """The backup's object in the bucket and its completed catalog record; its id. `data`:
    other bytes than the backup's (a damaged copy), `sha256`: the checksum recorded."""
    content = backup.container()
    stored = content if data is None else data
    key = f"backups/{owner_id}/{backup.backup_id}.zip"
    packages_bucket().put(key, stored, {})
    catalog = BackupCatalog()
    now = datetime.now(UTC)
    catalog.create_pending(BackupRecord(
        backup_id=backup.backup_id, owner_id=owner_id, scope=BackupScope(backup.scope),
        type=BackupType.INCREMENTAL if backup.parent_id else BackupType.FULL,
        name="a test backup", status=BackupStatus.PENDING, created_at=now, updated_at=now,
        parent_id=backup.parent_id))
    catalog.mark_running(backup.backup_id)
    catalog.mark_completed(
        backup.backup_id, object_key=key, filename=f"{backup.backup_id}.zip",
        sizes=BackupSizes(stored=len(stored), uncompressed=len(content), compressed=len(content)),
        counts=BackupCounts(sessions=len(backup.sessions), messages=len(backup.messages)),
        sha256=sha256 or hashlib.sha256(content).hexdigest(), watermark=now,
        parent_watermark=None)
    return backup.backup_id


@dataclass
class Restorer:
    api: Api

    def start(self, **body: Any) -> requests.Response:
        return self.api.request("POST", "/restores", json=body)

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.api.request("GET", f"/restores/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def status(self, job_id: str) -> str:
        """The job's status as its row holds it (what GET /restores/{id} answers): a look that
        runs no API invocation, which would compete with the restore for this process."""
        return str(job_row(self.api.stack, job_id)["status"]["S"])

    def wait(self, job_id: str, until: set[str] = ENDED, timeout: float = 90) -> dict[str, Any]:
        """The job as GET /restores/{id} shows it once its status is in `until` (the row
        watched until then; the API read after: moto may show a half-applied update)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = TABLE_WRITES.count
            if self.status(job_id) in until:
                job = self.job(job_id)
                if job["status"] in until:
                    if until <= ENDED:
                        self.settled(job_id, max(deadline, time.monotonic() + 30))
                    return job
            if time.monotonic() > deadline:
                job = self.job(job_id)
                pytest.fail(f"restore {job_id} still {job['status']} after {timeout} s: {job}")
            time.sleep(0.05)  # at most 20 looks a second, and one only once a row changed
            TABLE_WRITES.wait_past(seen, 0.5)

    def settled(self, job_id: str, deadline: float) -> None:
        """Until no execution of the job (named after it: its own, its plan's children, its
        rollbacks) still runs: a job ends in its last task, a moment before its execution's
        own end, and the next step of a test must not meet that execution's last states."""
        sfn = self.api.stack.client("stepfunctions")
        machines = [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
        while any(e["name"].startswith(job_id) for arn in machines
                  for e in sfn.list_executions(stateMachineArn=arn,
                                               statusFilter="RUNNING")["executions"]):
            if time.monotonic() > deadline:
                pytest.fail(f"an execution of restore {job_id} still runs after it ended")
            time.sleep(0.05)

    def run(self, *, timeout: float = 90, **body: Any) -> dict[str, Any]:
        answer = self.start(**body)
        assert answer.status_code == 202, answer.text
        return self.wait(answer.json()["jobId"], timeout=timeout)

    def rollback(self, job_id: str, *, timeout: float = 90) -> dict[str, Any]:
        answer = self.api.request("POST", f"/restores/{job_id}/rollback")
        assert answer.status_code == 202, answer.text
        return self.wait(job_id, {"rolled_back", "failed"}, timeout=timeout)

    def actions(self, job_id: str, **params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = None
        while True:
            answer = self.api.request("GET", f"/restores/{job_id}/actions", params={
                **params, **({"nextToken": token} if token else {})})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            found.extend(page["actions"])
            token = page.get("nextToken")
            if not token:
                return found
