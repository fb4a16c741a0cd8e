"""Helpers of the schedule tests: a launcher that records what runs start, and the dispatcher
function built with it (the local stack's fault hook, as tests/fixtures/faults.py does)."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from dataport.errors import TransientError
from dataport.schedules.dispatch import BackupState, ScheduledBackup
from dataport.scheduling.dispatcher import event_time, run
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api

DISPATCHER = "ScheduleDispatcherFunction"


@dataclass
class RecordingLauncher:
    """Starts nothing: records each backup a run asks for. `finish` says when they end:
    at once ("completed"), never (None: they stay running), or as failed."""

    finish: str | None = "completed"
    started: list[ScheduledBackup] = field(default_factory=list)
    states: dict[str, BackupState] = field(default_factory=dict)
    refuse: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def start(self, backup: ScheduledBackup) -> str:
        if self.refuse:
            raise TransientError("The backup could not be started; try again in a moment.")
        backup_id = f"{next(self._ids):032x}"
        self.started.append(backup)
        self.states[backup_id] = (BackupState(self.finish) if self.finish
                                  else BackupState.ACTIVE)
        return backup_id

    def state(self, backup_id: str) -> BackupState:
        return self.states.get(backup_id, BackupState.GONE)

    def complete_all(self) -> None:
        for backup_id, state in self.states.items():
            if state is BackupState.ACTIVE:
                self.states[backup_id] = BackupState.COMPLETED


def dispatch_with(stack: LocalStack, launcher: RecordingLauncher) -> None:
    """Make the template's dispatcher function start backups through `launcher`."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asdict(run(event_time(event), context, launcher=launcher))

    stack.handler_overrides[DISPATCHER] = handler


def create(api: Api, **body: Any) -> dict[str, Any]:
    answer = api.request("POST", "/backup-schedules", json={
        "name": "nightly", "retention": {"keepLast": 7}, **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def show(api: Api, schedule_id: str) -> dict[str, Any]:
    answer = api.request("GET", f"/backup-schedules/{schedule_id}")
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
