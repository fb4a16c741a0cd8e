"""How a scheduled run starts a backup as the schedule's owner, and how the dispatcher learns
whether that owner still holds the administrator role.

The role: dataport sees a JWT's `scope` only when the token is presented, so the one lasting
record of an administrator is an admin API key (auth.py; only an administrator can make one).
An owner holds the admin role for a run while they hold an admin key that is neither revoked
nor expired; revoking it (or letting it expire) stops their instance-scope schedules, whose
runs are then recorded `refused`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from dataport.api.backups import start_backup
from dataport.api_key_store import ApiKeyStore
from dataport.auth import Principal
from dataport.backups.catalog import BackupCatalog
from dataport.errors import InvalidRequest, OwnerGone, TransientError
from dataport.jobs.passwords import unseal_for_schedule
from dataport.models.backups import (
    BackupFilters,
    BackupRequest,
    BackupScope,
    BackupStatus,
    BackupType,
)
from dataport.schedules.dispatch import BackupLauncher, BackupState, ScheduledBackup
from dataport.source.collections import PROJECTS
from dataport.source.mongo import get_database


class AdminKeys:
    """RoleCheck over the API-key store."""

    def __init__(self, store: ApiKeyStore | None = None) -> None:
        self.store = store or ApiKeyStore()

    def holds_admin(self, user_id: str, now: datetime) -> bool:
        epoch = now.timestamp()
        for listed in self.store.of_user(user_id):
            # the index does not carry the role: read the key's own row (consistently)
            record = self.store.get(listed.key_hash) if not listed.revoked else None
            if (record is not None and record.role == "admin" and not record.revoked
                    and not record.expired(epoch)):
                return True
        return False


_STATES = {BackupStatus.PENDING: BackupState.ACTIVE, BackupStatus.RUNNING: BackupState.ACTIVE,
           BackupStatus.COMPLETED: BackupState.COMPLETED}


class BackupsLauncher:
    """Starts backups through the backups pipeline (the same start as POST /backups) and reads
    how they stand from the catalog."""

    def __init__(self, catalog: BackupCatalog | None = None, lambda_context: Any = None) -> None:
        self.catalog = catalog or BackupCatalog()
        self.lambda_context = lambda_context

    def start(self, backup: ScheduledBackup) -> str:
        """POST /backups as the owner would send it: the same checks (the parent usable, the
        rate limit counted), the run's key as its Idempotency-Key (a retried start of one run
        returns the same backup), then the record tagged with its schedule."""
        if backup.scope == "user" and not owns_data(backup.owner_id):
            raise OwnerGone(f"The schedule's owner {backup.owner_id} owns no project in "
                            "ClaudeLens any more; the run made no backup.")
        owner = Principal(user_id=backup.owner_id, method="api_key",
                          role="admin" if backup.scope == "instance" else "user")
        kind = BackupType.INCREMENTAL if backup.type == "incremental" else (
            BackupType.SELECTIVE if backup.filters else BackupType.FULL)
        try:
            request = BackupRequest(
                name=backup.name, description=backup.description,
                scope=BackupScope(backup.scope), type=kind, parent_id=backup.parent_id,
                filters=(BackupFilters.model_validate(backup.filters)
                         if kind is BackupType.SELECTIVE else None),
                retention_days=backup.keep_days,
                password=(None if backup.sealed_password is None else unseal_for_schedule(
                    backup.sealed_password, backup.schedule_id)))
        except ValidationError as error:
            raise InvalidRequest(f"The schedule cannot make a valid backup request: {error}"
                                 ) from None
        record, _ = start_backup(owner, request, backup.run_key, self.lambda_context)
        self.catalog.set_schedule(record.backup_id, backup.schedule_id)
        return record.backup_id

    def state(self, backup_id: str) -> BackupState:
        record = self.catalog.find(backup_id)
        if record is None:
            return BackupState.GONE
        return _STATES.get(record.status, BackupState.FAILED)


def owns_data(user_id: str) -> bool:
    """Whether the user still owns a project: ClaudeLens keeps no user directory dataport can
    read, and a user who has left (their data deleted) owns none. One indexed read a run;
    MongoDB out of reach fails the run (recorded `failed`, the next run tries again)."""
    try:
        return get_database()[PROJECTS].find_one(
            {"user_id": ObjectId(user_id)}, {"_id": 1}) is not None
    except PyMongoError as error:
        raise TransientError("ClaudeLens' database could not be read to find the "
                             "schedule's owner; the next run tries again.") from error


def backups_launcher(lambda_context: Any = None) -> BackupLauncher:
    return BackupsLauncher(lambda_context=lambda_context)
