"""One tick of the schedule dispatcher: find the schedules due by `now`, claim each run, and
start its backup as the schedule's owner, or record why not.

For each due schedule, in this order:
1. **claim** (schedule_store.claim): next_run_at moves on from the due time, on the condition
   that it still is the due time: one conditional write. A second dispatcher (a retried
   invocation, an overlapping tick) loses the claim and does nothing: no run fires twice. The
   run row is keyed by the due time the claim consumed.
2. **missed window**: when the dispatcher was down, the claim jumps next_run_at past `now`
   (timing.catch_up) and the one run records how many slots it stands for.
3. **overlap**: when the backup the previous run started is still running, the run is
   recorded `skipped` (reason `previous_run_active`) and nothing starts.
4. **role**: an instance-scope schedule runs only while its owner still holds the admin role;
   otherwise the run is recorded `refused` (`owner_not_admin`); a user-scope run whose owner
   no longer owns anything in ClaudeLens is refused by the launcher (`owner_not_found`).
5. **type**: a full schedule takes full backups; an incremental one takes a full backup to
   begin a chain, then increments on the chain's newest completed backup until the chain has
   `fullEvery` backups.

The store, the launcher (which starts backups) and the role check come in as parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from dataport.errors import DataportError, OwnerGone
from dataport.models.schedules import BackupType, RunRecord, RunStatus, ScheduleRecord, Scope
from dataport.observability import logger
from dataport.schedule_store import ScheduleStore
from dataport.schedules.timing import InvalidSchedule, cadence, catch_up


class BackupState(StrEnum):
    ACTIVE = "active"  # pending or running
    COMPLETED = "completed"
    FAILED = "failed"  # failed, corrupted, expired or deleted: not a chain member
    GONE = "gone"  # no such backup


@dataclass(frozen=True)
class ScheduledBackup:
    """What a run asks the backups side to start, as the schedule's owner."""

    owner_id: str
    scope: Scope
    type: BackupType
    parent_id: str | None
    name: str
    description: str | None
    filters: dict[str, Any] | None
    schedule_id: str
    keep_days: int | None
    #: stable per run: a retried start of the same run starts nothing new
    run_key: str
    #: the schedule's password, still sealed (only the launcher opens it)
    sealed_password: str | None = field(default=None, repr=False)


class BackupLauncher(Protocol):
    def start(self, backup: ScheduledBackup) -> str:
        """Start the backup; its id. DataportError when it cannot be started."""

    def state(self, backup_id: str) -> BackupState:
        """Where a backup this launcher started stands now."""


class RoleCheck(Protocol):
    def holds_admin(self, user_id: str, now: datetime) -> bool:
        """Does the user still hold the administrator role?"""


@dataclass
class TickReport:
    """What one tick did (logged, returned by the dispatcher function)."""

    due: int = 0
    claimed: int = 0
    lost: int = 0  # another dispatcher claimed first
    outcomes: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0  # left for the next tick (deadline)

    def count(self, status: RunStatus) -> None:
        self.outcomes[status.value] = self.outcomes.get(status.value, 0) + 1


def tick(now: datetime, store: ScheduleStore, launcher: BackupLauncher, roles: RoleCheck,
         *, time_left: Callable[[], bool] = lambda: True, workers: int = 4) -> TickReport:
    """Dispatch every schedule due at `now`, shard by shard in parallel; stop taking new ones
    when `time_left()` says so (they stay due and the next tick takes them)."""
    dispatchers = [Dispatcher(now, store, launcher, roles) for _ in range(store.shards)]

    def shard(number: int) -> None:
        dispatcher = dispatchers[number]
        for record in store.due(number, now):
            dispatcher.report.due += 1
            if not time_left():
                dispatcher.report.unfinished += 1
                continue
            dispatcher.fire(record)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, store.shards))) as pool:
        list(pool.map(shard, range(store.shards)))
    total = TickReport()
    for report in (d.report for d in dispatchers):
        total.due += report.due
        total.claimed += report.claimed
        total.lost += report.lost
        total.unfinished += report.unfinished
        for outcome, n in report.outcomes.items():
            total.outcomes[outcome] = total.outcomes.get(outcome, 0) + n
    return total


@dataclass
class Dispatcher:
    """Fires due schedules at one tick, `now`."""

    now: datetime
    store: ScheduleStore
    launcher: BackupLauncher
    roles: RoleCheck
    report: TickReport = field(default_factory=TickReport)

    def fire(self, record: ScheduleRecord) -> RunRecord | None:
        """Claim and run one due schedule: the run recorded, or None when the claim was lost
        (or the schedule is not due)."""
        due = record.next_run_at
        if due is None or record.paused or due > self.now:
            return None
        try:
            when = cadence(record.expression, record.timezone, record.anchor)
        except InvalidSchedule:  # accepted once, so a zone the runtime no longer knows
            logger.exception("schedule cannot be evaluated",
                             extra={"schedule_id": record.schedule_id})
            return None
        slot, following, missed = catch_up(when, due, self.now)
        if not self.store.claim(record, due, following):
            self.report.lost += 1
            return None
        self.report.claimed += 1
        claimed = RunRecord(schedule_id=record.schedule_id, due_at=due, slot=slot,
                            missed=missed, fired_at=self.now, status=RunStatus.STARTED)
        run = self._run(record, claimed)
        self.store.record_run(run)
        self.report.count(run.status)
        logger.info("schedule fired", extra={
            "schedule_id": record.schedule_id, "slot": slot.isoformat(), "missed": missed,
            "status": run.status.value, "reason": run.reason})
        return run

    def _run(self, record: ScheduleRecord, claimed: RunRecord) -> RunRecord:
        head, chain_runs = record.chain_head_id, record.chain_runs
        if record.active_backup_id:
            state = self.launcher.state(record.active_backup_id)
            if state is BackupState.ACTIVE:
                return claimed.model_copy(update={
                    "status": RunStatus.SKIPPED, "reason": "previous_run_active",
                    "backup_id": record.active_backup_id})
            if state is BackupState.COMPLETED:  # it joins (or begins) the chain
                head = record.active_backup_id
                chain_runs = 1 if record.active_backup_type == "full" else chain_runs + 1
        if record.new_chain:  # the password or type changed since: the chain ends here
            head, chain_runs = None, 0
        if record.scope == "instance" and not self.roles.holds_admin(record.owner_id, self.now):
            self._remember(record, None, None, head, chain_runs)
            return claimed.model_copy(update={"status": RunStatus.REFUSED,
                                              "reason": "owner_not_admin"})
        kind: BackupType = "full"
        parent = None
        if (record.type == "incremental" and head is not None
                and chain_runs < (record.full_every or 1)):
            kind, parent = "incremental", head
        local = claimed.slot.astimezone(ZoneInfo(record.timezone))
        backup = ScheduledBackup(
            owner_id=record.owner_id, scope=record.scope, type=kind, parent_id=parent,
            name=f"{record.name} {local:%Y-%m-%d %H%M}"[:100],
            description=record.description, filters=record.filters,
            schedule_id=record.schedule_id, keep_days=record.keep_days,
            run_key=f"{record.schedule_id}:{claimed.due_at:%Y%m%dT%H%M}",
            sealed_password=record.sealed_password)
        try:
            backup_id = self.launcher.start(backup)
        except OwnerGone as error:  # the owner left: refused, as a lost admin role is
            self._remember(record, None, None, head, chain_runs)
            return claimed.model_copy(update={"status": RunStatus.REFUSED,
                                              "reason": error.code})
        except DataportError as error:
            self._remember(record, None, None, head, chain_runs)
            return claimed.model_copy(update={"status": RunStatus.FAILED, "reason": error.code,
                                              "backup_type": kind, "parent_id": parent})
        self._remember(record, backup_id, kind, head, chain_runs)
        return claimed.model_copy(update={"status": RunStatus.STARTED, "backup_id": backup_id,
                                          "backup_type": kind, "parent_id": parent})

    def _remember(self, record: ScheduleRecord, active: str | None, kind: BackupType | None,
                  head: str | None, chain_runs: int) -> None:
        self.store.record_chain(record.schedule_id, active_backup_id=active,
                                active_backup_type=kind, chain_head_id=head,
                                chain_runs=chain_runs)
