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

from dataport.api_key_store import ApiKeyStore
from dataport.backups.catalog import BackupCatalog
from dataport.errors import NotSupported
from dataport.models.backups import BackupStatus
from dataport.schedules.dispatch import BackupLauncher, BackupState, ScheduledBackup


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

    def __init__(self, catalog: BackupCatalog | None = None) -> None:
        self.catalog = catalog or BackupCatalog()

    def start(self, backup: ScheduledBackup) -> str:  # noqa: ARG002 (until backups land)
        raise NotSupported("Backups cannot be started yet in this build.")

    def state(self, backup_id: str) -> BackupState:
        record = self.catalog.find(backup_id)
        if record is None:
            return BackupState.GONE
        return _STATES.get(record.status, BackupState.FAILED)


def backups_launcher() -> BackupLauncher:
    return BackupsLauncher()
