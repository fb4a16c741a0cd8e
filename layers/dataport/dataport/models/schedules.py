"""Backup schedules as the /backup-schedules routes take and show them, and as the schedule
store keeps them (`ScheduleRecord`, `RunRecord`)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator

from dataport.models.backups import BackupFilters, Name
from dataport.models.common import ApiModel, SecretLength

_BLANK = re.compile(r"^\s*$")

Scope = Literal["user", "instance"]
BackupType = Literal["full", "incremental"]


class Retention(ApiModel):
    """Which of the schedule's backups to keep: the newest `keepLast`, and every one younger
    than `keepDays` days. With both, a backup is kept while either rule keeps it."""

    keep_last: int | None = Field(default=None, ge=1, le=1000,
                                  description="keep the newest N completed backups")
    keep_days: int | None = Field(default=None, ge=1, le=3650,
                                  description="keep every backup younger than N days")

    @model_validator(mode="after")
    def _one_rule_at_least(self) -> Self:
        if self.keep_last is None and self.keep_days is None:
            raise ValueError("give keepLast, keepDays or both")
        return self


class ScheduleSpec(ApiModel):
    """When to run, as EventBridge Scheduler spells it: `cron(30 2 * * *)` (five fields, read in
    `timezone`; daylight-saving days run once) or `rate(12 hours)`."""

    expression: str = Field(min_length=7, max_length=256,
                            examples=["cron(30 2 * * *)", "rate(12 hours)"])
    timezone: str = Field(default="UTC", min_length=1, max_length=64,
                          description="IANA time zone the cron expression is read in",
                          examples=["Europe/Berlin"])


class ScheduleCreate(ApiModel):
    name: Name  # the names backups take
    description: str | None = Field(default=None, max_length=500)
    schedule: ScheduleSpec
    type: BackupType = Field(default="full", description="full every run, or incremental "
                             "(a full backup every `fullEvery` runs, increments between)")
    full_every: int | None = Field(default=None, ge=2, le=365,
                                   description="incremental only: runs per chain, its full "
                                               "backup included")
    scope: Scope = Field(default="user", description="instance: every user's data "
                         "(administrators only)")
    filters: BackupFilters | None = Field(default=None, description="take selective backups "
                                          "(as POST /backups takes them); an incremental "
                                          "schedule's increments follow their chain's base")
    retention: Retention
    paused: bool = False
    password: Annotated[SecretStr, SecretLength(8, 256)] | None = Field(
        default=None, description="every run's backup is WinZip AES-256 encrypted with it; kept "
                                  "sealed with KMS for the runs, never shown or logged")

    @model_validator(mode="after")
    def _chain_length(self) -> Self:
        if self.type == "incremental" and self.full_every is None:
            raise ValueError("an incremental schedule needs fullEvery (runs per chain)")
        if self.type == "full" and self.full_every is not None:
            raise ValueError("fullEvery is for incremental schedules only")
        return self


class SchedulePatch(ApiModel):
    """Only what is sent changes; `paused: true` pauses, `paused: false` resumes (the next run
    is then the first one after now: runs missed while paused are not made up)."""

    name: Name | None = None
    description: str | None = Field(default=None, max_length=500)
    schedule: ScheduleSpec | None = None
    type: BackupType | None = None
    full_every: int | None = Field(default=None, ge=2, le=365)
    filters: BackupFilters | None = None
    retention: Retention | None = None
    paused: bool | None = None
    password: Annotated[SecretStr, SecretLength(8, 256)] | None = Field(
        default=None, description="a new password for the runs to come (null: no encryption "
                                  "from now on); the next run begins a new chain")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        return self


class RunStatus(StrEnum):
    STARTED = "started"  # a backup job was started
    SKIPPED = "skipped"  # the previous run of this schedule was still running
    REFUSED = "refused"  # the owner no longer holds the role the scope needs
    FAILED = "failed"  # the backup could not be started


class RunRecord(BaseModel):
    """One firing of a schedule, keyed by the due time its claim consumed."""

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    due_at: AwareDatetime
    slot: AwareDatetime  # the slot it ran for: due_at, or the latest slot missed since
    missed: int = 0  # earlier slots this run stands for (an outage, coalesced)
    fired_at: AwareDatetime
    status: RunStatus
    reason: str | None = None
    backup_id: str | None = None
    backup_type: BackupType | None = None
    parent_id: str | None = None


class ScheduleRecord(BaseModel):
    """A schedule as stored: the request's fields, its owner, and the dispatcher's state."""

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    owner_id: str
    name: str
    description: str | None = None
    expression: str
    timezone: str
    type: BackupType
    full_every: int | None = None
    scope: Scope
    filters: dict[str, Any] | None = None
    keep_last: int | None = None
    keep_days: int | None = None
    paused: bool = False
    created_at: AwareDatetime
    updated_at: AwareDatetime
    anchor: AwareDatetime  # rates count from here
    next_run_at: AwareDatetime | None = None  # None while paused
    claimed_due: AwareDatetime | None = None  # the due time of the last run claimed
    version: int = 1
    # the dispatcher's state: the last backup started (overlap), the chain being built
    active_backup_id: str | None = None
    active_backup_type: BackupType | None = None
    chain_head_id: str | None = None
    chain_runs: int = 0
    #: the next run begins a new chain whatever the last one made (its password or type changed)
    new_chain: bool = False
    #: the runs' backup password, KMS ciphertext under {"scheduleId": ...} (schedules.passwords)
    sealed_password: str | None = Field(default=None, repr=False)

    @property
    def retention(self) -> Retention:
        return Retention(keep_last=self.keep_last, keep_days=self.keep_days)


class RunView(ApiModel):
    due_at: AwareDatetime
    slot: AwareDatetime
    missed: int = Field(description="earlier slots this run stands for (the dispatcher was "
                                    "down): they are run once, not once each")
    fired_at: AwareDatetime
    outcome: str = Field(description="started, skipped, refused, failed (to start), or the "
                                     "started backup's status: running, completed, failed")
    reason: str | None = None
    backup_id: str | None = None
    backup_type: BackupType | None = None
    parent_id: str | None = None


class ScheduleLinks(ApiModel):
    self_: str = Field(alias="self")


class ScheduleView(ApiModel):
    schedule_id: str
    name: str
    description: str | None = None
    schedule: ScheduleSpec
    type: BackupType
    full_every: int | None = None
    scope: Scope
    filters: BackupFilters | None = None
    retention: Retention
    paused: bool
    encrypted: bool = Field(default=False, description="runs make encrypted backups (the "
                                                        "password itself is never shown)")
    next_run_at: AwareDatetime | None = Field(default=None, description="UTC; none while paused")
    created_at: AwareDatetime
    updated_at: AwareDatetime
    last_runs: list[RunView] = Field(description="newest first")
    links: ScheduleLinks


class ScheduleList(ApiModel):
    schedules: list[ScheduleView]
    next_token: str | None = None
