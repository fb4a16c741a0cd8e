"""A restore's job state for tests that need one of every kind."""

from __future__ import annotations

from dataport.models.imports import ImportCreate
from dataport.models.jobs import RestoreState, UploadPin
from dataport.models.restores import BACKUP_FILENAME, BackupLink, RestoreRequest, RestoreSource

BACKUP_ID = "b" * 32


def restore_state(user_id: str = "66ad9b005f2b4a0012c0aaaa") -> RestoreState:
    request = RestoreRequest(backup_id=BACKUP_ID)
    return RestoreState(
        request=ImportCreate(filename=BACKUP_FILENAME), restore=request,
        source=RestoreSource(links=[BackupLink(
            backup_id=BACKUP_ID, pin=UploadPin(key=f"backups/{BACKUP_ID}.zip", etag='"e"',
                                               bytes=10))]),
        decision=request.decision(), target_user_id=user_id)
