"""The logic behind the /backup-schedules routes: make, list, show, change (pause, resume)
and delete a user's backup schedules.

Every read and write is the caller's own: a schedule of someone else is 404, exactly like one
that does not exist. Instance scope needs the administrator role, and an admin API key that
stays valid, since runs happen without the caller (launcher.py). `now` is the request's time
(API Gateway's requestTimeEpoch): the next run is computed from it.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from dataport.auth import Principal
from dataport.errors import Conflict, Forbidden, InvalidRequest, NotFound
from dataport.jobs.passwords import seal_for_schedule
from dataport.models.backups import BackupFilters
from dataport.models.schedules import (
    RunRecord,
    RunStatus,
    RunView,
    ScheduleCreate,
    ScheduleLinks,
    SchedulePatch,
    ScheduleRecord,
    ScheduleSpec,
    ScheduleView,
)
from dataport.schedule_store import ScheduleChanged, ScheduleStore
from dataport.schedules.dispatch import BackupLauncher, BackupState, RoleCheck
from dataport.schedules.timing import InvalidSchedule, cadence, whole_minute
from dataport.scheduling.launcher import AdminKeys, backups_launcher

#: schedules per user: enough for every policy, few enough to review
MAX_SCHEDULES = 50
#: runs shown in a listing and on one schedule
LISTED_RUNS, SHOWN_RUNS = 3, 10
_PATCH_ATTEMPTS = 3
_STATES = {BackupState.ACTIVE: "running", BackupState.COMPLETED: "completed",
           BackupState.FAILED: "failed", BackupState.GONE: "deleted"}


class AdminKeyRequired(Forbidden):
    code = "admin_key_required"


def create(principal: Principal, request: ScheduleCreate, now: datetime, *,
           roles: RoleCheck | None = None) -> ScheduleView:
    store = ScheduleStore()
    _check_scope(principal, request.scope, now, roles)
    mine, _ = store.of_owner(principal.user_id, MAX_SCHEDULES, None)
    if len(mine) >= MAX_SCHEDULES:
        raise Conflict(f"You have {len(mine)} backup schedules, the most allowed; delete one "
                       "you no longer need first.", details={"limit": MAX_SCHEDULES})
    now = whole_minute(now)
    record = ScheduleRecord(
        schedule_id=secrets.token_hex(16), owner_id=principal.user_id, name=request.name,
        description=request.description, expression=request.schedule.expression.strip(),
        timezone=request.schedule.timezone, type=request.type, full_every=request.full_every,
        scope=request.scope, filters=_stored(request.filters),
        keep_last=request.retention.keep_last, keep_days=request.retention.keep_days,
        paused=request.paused, created_at=now, updated_at=now, anchor=now)
    record = record.model_copy(update={
        "next_run_at": _next_run(record, now),
        "sealed_password": (None if request.password is None
                            else seal_for_schedule(request.password, record.schedule_id))})
    store.create(record)
    return _view(record, [], None)


def list_schedules(principal: Principal, limit: int, next_token: str | None, now: datetime,
                   ) -> tuple[list[ScheduleView], str | None]:
    store = ScheduleStore()
    records, token = store.of_owner(principal.user_id, limit, next_token)
    launcher = backups_launcher()
    return [_view(r, store.runs(r.schedule_id, LISTED_RUNS, now), launcher)
            for r in records], token


def get(principal: Principal, schedule_id: str, now: datetime) -> ScheduleView:
    store = ScheduleStore()
    record = _mine(store, principal, schedule_id)
    return _view(record, store.runs(schedule_id, SHOWN_RUNS, now), backups_launcher())


def patch(principal: Principal, schedule_id: str, change: SchedulePatch, now: datetime, *,
          roles: RoleCheck | None = None) -> ScheduleView:
    """Apply the change to the schedule as it is now (read again when the dispatcher wrote it
    meanwhile). A new expression, time zone or resume counts the next run from now."""
    store = ScheduleStore()
    sent = change.model_fields_set
    for name in sent - {"description", "filters", "full_every", "password"}:
        if getattr(change, name) is None:
            raise InvalidRequest(f"{name} cannot be null; leave it out to keep it.",
                                 details={"field": name})
    now = whole_minute(now)
    for attempt in range(_PATCH_ATTEMPTS):
        record = _mine(store, principal, schedule_id)
        if record.scope == "instance":
            _check_scope(principal, record.scope, now, roles)
        updated = _changed(record, change, sent, now)
        if "password" in sent:  # a chain is read with one password: a new one begins a chain
            updated = updated.model_copy(update={
                "sealed_password": (None if change.password is None else seal_for_schedule(
                    change.password, schedule_id)),
                "chain_head_id": None, "chain_runs": 0, "new_chain": True})
        try:
            written = store.replace(updated)
        except ScheduleChanged:
            if attempt + 1 == _PATCH_ATTEMPTS:
                raise
            continue
        return _view(written, store.runs(schedule_id, SHOWN_RUNS, now), backups_launcher())
    raise AssertionError("unreachable")  # pragma: no cover


def delete(principal: Principal, schedule_id: str) -> None:
    """Delete the schedule. Its backups stay, with the retention they had (docs/backups.md)."""
    if not ScheduleStore().delete(schedule_id, principal.user_id):
        raise NotFound(f"No backup schedule {schedule_id} was found for this account.")


def _changed(record: ScheduleRecord, change: SchedulePatch, sent: set[str],
             now: datetime) -> ScheduleRecord:
    update: dict[str, object] = {"updated_at": now}
    if "name" in sent and change.name is not None:
        update["name"] = change.name
    if "description" in sent:
        update["description"] = change.description
    if "filters" in sent:
        update["filters"] = _stored(change.filters)
    if change.schedule is not None:
        update["expression"] = change.schedule.expression.strip()
        update["timezone"] = change.schedule.timezone
        update["anchor"] = now
    if change.type is not None:
        update["type"] = change.type
    if "full_every" in sent:
        update["full_every"] = change.full_every
    if change.retention is not None:
        update["keep_last"] = change.retention.keep_last
        update["keep_days"] = change.retention.keep_days
    if change.paused is not None:
        update["paused"] = change.paused
    updated = record.model_copy(update=update)
    if updated.type == "incremental" and updated.full_every is None:
        raise InvalidRequest("An incremental schedule needs fullEvery (runs per chain).",
                             details={"field": "fullEvery"})
    if updated.type == "full" and updated.full_every is not None:
        if "full_every" in sent:
            raise InvalidRequest("fullEvery is for incremental schedules only.",
                                 details={"field": "fullEvery"})
        updated = updated.model_copy(update={"full_every": None})
    if updated.type != record.type:  # a new kind of chain begins with a full backup
        updated = updated.model_copy(update={"chain_head_id": None, "chain_runs": 0,
                                             "new_chain": True})
    resumed = record.paused and not updated.paused
    if change.schedule is not None or resumed or updated.paused:
        # runs missed while paused are not made up: the next one is the first after now
        updated = updated.model_copy(update={"next_run_at": _next_run(updated, now)})
    return updated


def _next_run(record: ScheduleRecord, now: datetime) -> datetime | None:
    if record.paused:
        return None
    try:
        return cadence(record.expression, record.timezone, record.anchor).next_after(now)
    except InvalidSchedule as error:
        raise InvalidRequest(str(error), details={"field": "schedule"}) from None


def _check_scope(principal: Principal, scope: str, now: datetime,
                 roles: RoleCheck | None) -> None:
    if scope != "instance":
        return
    if not principal.is_admin:
        raise Forbidden("Instance backups need an administrator; schedule a backup of your own "
                        "data with scope \"user\".")
    if not (roles or AdminKeys()).holds_admin(principal.user_id, now):
        raise AdminKeyRequired(
            "A schedule runs when you are not there, so it acts with your admin API key: make "
            "one (POST /api-keys with role \"admin\") and keep it valid; while you hold none, "
            "the schedule's runs are refused.")


def _stored(filters: BackupFilters | None) -> dict[str, Any] | None:
    if filters is None or filters.empty:
        return None
    return filters.model_dump(mode="json", by_alias=True, exclude_none=True)


def _mine(store: ScheduleStore, principal: Principal, schedule_id: str) -> ScheduleRecord:
    record = store.get(schedule_id)
    if record is None or record.owner_id != principal.user_id:
        raise NotFound(f"No backup schedule {schedule_id} was found for this account.")
    return record


def _view(record: ScheduleRecord, runs: list[RunRecord],
          launcher: BackupLauncher | None) -> ScheduleView:
    return ScheduleView(
        schedule_id=record.schedule_id, name=record.name, description=record.description,
        schedule=ScheduleSpec(expression=record.expression, timezone=record.timezone),
        type=record.type, full_every=record.full_every, scope=record.scope,
        filters=BackupFilters.model_validate(record.filters) if record.filters else None,
        retention=record.retention, paused=record.paused,
        encrypted=record.sealed_password is not None, next_run_at=record.next_run_at,
        created_at=record.created_at, updated_at=record.updated_at,
        last_runs=[_run_view(r, launcher) for r in runs],
        links=ScheduleLinks(self_=f"/backup-schedules/{record.schedule_id}"))


def _run_view(run: RunRecord, launcher: BackupLauncher | None) -> RunView:
    outcome = run.status.value
    if run.status is RunStatus.STARTED and run.backup_id and launcher is not None:
        outcome = _STATES[launcher.state(run.backup_id)]
    return RunView(due_at=run.due_at, slot=run.slot, missed=run.missed, fired_at=run.fired_at,
                   outcome=outcome, reason=run.reason, backup_id=run.backup_id,
                   backup_type=run.backup_type, parent_id=run.parent_id)

