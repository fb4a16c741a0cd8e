"""An instance restore: the tasks of infrastructure/statemachines/restore.asl.json.

A ClaudeLens database is per user all the way down (a project's `user_id` owns everything in
it), and the import pipeline a restore runs through writes one user's data: copy ids, projects
matched by path, the journal and the checks that nothing of another account is touched are
per user. So an instance restore (an instance backup into `target: instance`, or an uploaded
file) is cut into **shards, one per user the backup holds**: each is a restore job of its own
(`RestoreState.parent_id` names the instance restore, its target is that user, and its source
reads only what that user owns: `BackupSource(owner=)`), run by the import state machine as a
child execution of a Distributed Map, at most `MAX_CONCURRENT_SHARDS` at a time. Every shard
checks what it reads (each member's SHA-256, the zip's CRC, sizes and line counts, the whole
object's SHA-256 against the catalog) before any of its records is written; a shard whose
backup is damaged writes nothing. The instance restore's own job writes nothing: it plans, then
sums its shards' outcomes up.

plan           the parent job started; the owners of the backup's projects (the projects
               members, checked); one child job per owner (a stable id, so a retried plan
               makes none twice, each with the password sealed again for its own id); one
               object per shard under `restores/<id>/shards/<child id>` for the Map to list.
plan_rollback  the same list, for a rollback (POST /restores/{id}/rollback).
shard_ended    one shard's restore ended (whichever way): the instance restore's progress
               counts it (`progress.current` of `progress.total` shards), and its subscribers
               hear it at most twice a second.
begin_rollback one shard's rollback begun (a shard that wrote nothing is left as it is): its
               import step, which the Map hands to the import machine.
finalize       the shards' outcomes summed up: succeeded when every shard did (a dry run: what
               each would do), failed naming the users whose shard failed (the others stay
               restored; a rollback undoes them); after a rollback, rolled_back.
failed         the Catch: the job ends failed with a readable reason.

Users the target has and the backup does not hold are left as they are (a full restore makes
each user the backup holds equal to the backup; an instance backup made before a user signed
up does not remove that user).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from bson import ObjectId

from dataport.bucket import packages_bucket
from dataport.errors import Conflict
from dataport.imports.limits import issue
from dataport.imports.readers.backup import BackupSource
from dataport.jobs import passwords
from dataport.jobs.store import JobStore, require_running, utcnow
from dataport.models.imports import (
    CLEANUP_FAILED,
    ImportOptions,
    ImportOutcome,
    Issue,
    IssueCode,
    MessageCounts,
    SessionCounts,
    ValidationReport,
)
from dataport.models.jobs import Job, JobError, JobStatus, Progress
from dataport.models.restores import BACKUP_FILENAME
from dataport.models.tasks import ImportStep, RestoreShardsTask, ShardList
from dataport.observability import logger
from dataport.progress import throttle
from dataport.progress.publisher import publish_claimed, publish_progress, publish_terminal
from dataport.workflows import imports, restore_checks
from dataport.workflows.failure import describe

#: shards (users) restored at once: each is an import execution with its own Lambdas
MAX_CONCURRENT_SHARDS = 10
#: the progress phase of a job being rolled back (api.imports shows the same)
ROLLING_BACK = "rolling_back"
#: the progress phase of an instance restore while its shards run (`current` of `total` ended)
RESTORING = "restoring"
#: the import pipeline's statuses a shard ends in, rolled back or not
_ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
#: what an instance restore's finalize ends it in
_FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.ROLLED_BACK)


def shards_prefix(job_id: str) -> str:
    return f"restores/{job_id}/shards/"


def shard_ids(job_id: str) -> list[str]:
    """The job ids of an instance restore's shards (the last part of each object's key)."""
    prefix = shards_prefix(job_id)
    return [key[len(prefix):] for key in packages_bucket().keys(prefix)]


def child_id(job_id: str, user_id: str) -> str:
    """A shard's job id: the same for the same instance restore and user (a retried plan)."""
    return hashlib.blake2b(f"{job_id}/{user_id}".encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------- plan


def plan(task: RestoreShardsTask) -> RestoreShardsTask:
    store = JobStore()
    job = store.take(task.job_id)  # started, or as it is (a retried plan)
    require_running(job)
    publish_progress(job, Progress(phase="planning"), record=True)
    problems: list[Issue] = []
    owners = _owners(job, problems)
    if problems or not owners:
        _refuse(store, job, problems)
        return task.model_copy(update={"shard_list": None})
    bucket = packages_bucket()
    prefix = shards_prefix(job.job_id)
    for owner in sorted(str(user) for user in owners):
        shard = _shard(store, job, owner)
        bucket.put(prefix + shard, json.dumps({"userId": owner}).encode(), {})
    store.update_restore(job.job_id, shards=len(owners))
    publish_progress(job, Progress(phase=RESTORING, current=0, total=len(owners)),
                     record=True)
    logger.info("instance restore planned", extra={"job_id": job.job_id,
                                                    "shards": len(owners)})
    return task.model_copy(update={
        "mode": "restore", "shard_list": ShardList(bucket=bucket.name, prefix=prefix),
        "concurrency": min(len(owners), MAX_CONCURRENT_SHARDS)})


def _owners(job: Job, problems: list[Issue]) -> set[ObjectId]:
    """The users whose projects the backup (its chain, as of its newest link) holds."""
    state = job.restore_state
    pin = state.upload_pin or state.source.restored.pin
    source = BackupSource(imports.opener(pin), BACKUP_FILENAME, options=ImportOptions(),
                          limits=imports.limits(job), password=imports.password_of(job),
                          chain=[imports.opener(link.pin) for link in state.source.links[:-1]])
    return source.owners(problems.append)


def _refuse(store: JobStore, job: Job, problems: list[Issue]) -> None:
    """The backup could not be planned (damaged, or no user's data): nothing was written."""
    errors = [p for p in problems if p.severity == "error"] or [issue(
        IssueCode.NO_RECORDS, "the backup holds no project of any user", file=BACKUP_FILENAME)]
    report = ValidationReport(errors=errors[:100], errors_total=len(errors))
    error = restore_checks.refusal(job, report) or JobError(
        code="invalid_upload", message=f"The backup cannot be restored: {errors[0].message}. "
        "Nothing was written.")
    failed = store.fail_import(job.job_id, error, report=report,
                               progress=Progress(phase="done"))
    publish_terminal(failed)
    logger.info("instance restore refused", extra={"job_id": job.job_id, "code": error.code})


def _shard(store: JobStore, job: Job, owner: str) -> str:
    """The shard of one user: a restore of what that user owns, into that user."""
    shard_id = child_id(job.job_id, owner)
    state = job.restore_state.model_copy(update={
        "target_user_id": owner, "parent_id": job.job_id, "shards": None})
    sealed = None
    if job.sealed_password is not None:  # sealed for each job id (KMS encryption context)
        sealed = passwords.seal(passwords.unseal(job.sealed_password, job.job_id), shard_id)
    try:
        store.create(job.user_id, state, job_id=shard_id, sealed_password=sealed)
    except Conflict:
        logger.info("shard exists (a retried plan)", extra={"job_id": shard_id})
    return shard_id


def shard_ended(task: RestoreShardsTask) -> RestoreShardsTask:
    """A shard ended (`task.job_id` is its instance restore): one conditional write counts it
    in the parent's progress and, when no event went out in the last 500 ms, claims the event
    that tells it (published with no write of its own); else a second write counts it alone,
    and a later shard's event, or the end, tells it. Progress is a courtesy: nothing here fails
    the shard, and Finalize counts the shards from their own jobs whatever this counted."""
    store = JobStore()
    counted = store.count_shard(task.job_id, RESTORING, claim_at_ms=throttle.now_ms(),
                                min_interval_ms=throttle.MIN_INTERVAL_MS)
    if counted is not None:
        publish_claimed(counted)
    elif store.count_shard(task.job_id, RESTORING) is None:
        logger.info("shard not counted (the restore is not restoring)",
                    extra={"job_id": task.job_id})
    return task


def plan_rollback(task: RestoreShardsTask) -> RestoreShardsTask:
    """The shards again, to roll each back (the API moved the job to rolling back)."""
    store = JobStore()
    job = store.require(task.job_id)
    require_running(job)
    bucket = packages_bucket()
    shards = len(shard_ids(job.job_id))
    return task.model_copy(update={
        "mode": "rollback",
        "shard_list": ShardList(bucket=bucket.name, prefix=shards_prefix(job.job_id)),
        "concurrency": max(1, min(shards, MAX_CONCURRENT_SHARDS))})


def begin_rollback(task: RestoreShardsTask) -> ImportStep:
    """One shard's rollback begun, or `end` for a shard with nothing to roll back (it wrote
    nothing, or is rolled back already)."""
    store = JobStore()
    shard = store.require(task.job_id)
    step = ImportStep(job_id=shard.job_id, mode="rollback", next="rollback")
    if shard.status is JobStatus.RUNNING and shard.progress.phase == ROLLING_BACK:
        return step  # a retry: begun already
    if shard.status not in _ENDED or not _wrote(shard):
        return step.model_copy(update={"next": "end"})
    store.begin_rollback(shard.job_id, Progress(phase=ROLLING_BACK))
    return step


# ---------------------------------------------------------------------------- the end


def finalize(task: RestoreShardsTask) -> RestoreShardsTask:
    store = JobStore()
    job = store.require(task.job_id)
    if job.status in _FINAL:
        return task  # a retried finalize whose first attempt ended the job
    require_running(job)
    shards = [store.require(shard_id) for shard_id in shard_ids(job.job_id)]
    if task.mode == "rollback":
        _rolled_back(store, job, shards)
        return task
    outcome = summed(job, shards)
    failed = [s for s in shards if s.status is not JobStatus.SUCCEEDED]
    done = Progress(phase="done", current=len(shards) - len(failed), total=len(shards))
    if failed:
        users = ", ".join(s.owner_of_data for s in failed[:10])
        first = failed[0].error
        ended = store.fail_import(job.job_id, JobError(code="shards_failed", message=(
            f"The restore of {len(failed)} of {len(shards)} users failed ({users}"
            f"{', ...' if len(failed) > 10 else ''}): "
            f"{first.message if first else 'see their restores'}. The other users were "
            f"restored; POST /restores/{job.job_id}/rollback undoes them all.")),
            outcome=outcome, progress=done)
        logger.warning("instance restore failed", extra={"job_id": job.job_id,
                                                         "failed": len(failed)})
    else:
        if outcome.dry_run:
            store.update_import(job.job_id, dry_run=outcome)
        ended = store.succeed_import(job.job_id, outcome=outcome, progress=done)
        logger.info("instance restore succeeded", extra={"job_id": job.job_id,
                                                         "shards": len(shards)})
    publish_terminal(ended)
    return task


def summed(job: Job, shards: list[Job]) -> ImportOutcome:
    """What the shards did (a dry run: would do), added up."""
    decision = imports.decided(job)
    sessions = dict.fromkeys(SessionCounts.model_fields, 0)
    messages = MessageCounts()
    created = removed = 0
    started = job.created_at
    for outcome in _outcomes(shards):
        for name in sessions:
            sessions[name] += getattr(outcome.sessions, name)
        messages = messages.plus(outcome.messages)
        created += outcome.projects_created
        removed += outcome.projects_removed
        started = min(started, outcome.started_at)
    return ImportOutcome(dry_run=decision.dry_run, strategy=decision.strategy,
                         sessions=SessionCounts(**sessions), messages=messages,
                         projects_created=created, projects_removed=removed,
                         started_at=started, finished_at=utcnow())


def _outcomes(shards: list[Job]) -> Iterator[ImportOutcome]:
    for shard in shards:
        outcome = shard.import_state.outcome
        if outcome is not None:
            yield outcome


def _rolled_back(store: JobStore, job: Job, shards: list[Job]) -> None:
    """rolled_back once no shard's writes are left in place."""
    left = [s for s in shards if s.status is not JobStatus.ROLLED_BACK and _wrote(s)]
    if left:
        names = ", ".join(s.job_id for s in left[:10])
        ended = store.fail(job.job_id, JobError(code="rollback_failed", message=(
            f"The rollback of {len(left)} of {len(shards)} users did not finish ({names}); "
            "POST the rollback again (it is safe to repeat).")))
    else:
        ended = store.roll_back(job.job_id, Progress(phase="done", current=len(shards),
                                                     total=len(shards)))
    publish_terminal(ended)
    logger.info("instance restore rolled back", extra={"job_id": job.job_id,
                                                       "left": len(left)})


def _wrote(shard: Job) -> bool:
    """Whether a shard's writes may be in place (a clean-up that failed may have left some)."""
    outcome = shard.import_state.outcome
    repair = shard.error is not None and shard.error.code == CLEANUP_FAILED
    return repair or (outcome is not None and outcome.wrote)


def failed(task: RestoreShardsTask) -> RestoreShardsTask:
    """The Catch: the job ends failed with a readable reason (the shards keep their own
    state; what they wrote is in the outcome, and a rollback undoes it)."""
    store = JobStore()
    job = store.require(task.job_id)
    error = task.error
    what = "rollback" if task.mode == "rollback" else "restore"
    reason = describe(error.Error if error else "States.Runtime", error.Cause if error else None,
                      job.job_id, what=what, hint="Start it again.")
    if task.mode == "rollback":
        reason = JobError(code="rollback_failed", message=reason.message)
    shards = [store.require(shard_id) for shard_id in shard_ids(job.job_id)]
    outcome = summed(job, shards) if job.import_state.decision is not None and shards else None
    try:
        ended = store.fail_import(job.job_id, reason, outcome=outcome)
    except Conflict:
        logger.info("instance restore already ended", extra={"job_id": job.job_id})
        return task
    publish_terminal(ended)
    return task
