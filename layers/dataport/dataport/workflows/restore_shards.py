"""A restore in shards: the tasks of infrastructure/statemachines/restore.asl.json.

A ClaudeLens database is per user all the way down (a project's `user_id` owns everything in
it), and the import pipeline a restore runs through writes one user's data: copy ids, projects
matched by path, the journal and the checks that nothing of another account is touched are
per user. So a restore that runs in shards (an instance restore: an instance backup into
`target: instance`, or an uploaded file; or one user's restore whose backup holds more than
`restore_shard_messages` messages) is cut into **shards of one user each**: a user's whole
data, or, when it holds more messages than that, several shards of whole sessions (cut by the
sessions' `messageCount`). Each shard is a restore job of its own (`RestoreState.parent_id`
names the restore, its target is the shard's user) run by the import state machine as a child
execution of a Distributed Map: at most `MAX_CONCURRENT_SHARDS` items at a time, an item
being one shard, or `restore_group_shards` small ones run at once (`groups`).

The plan reads the backup **once** (`imports.split`: the backup reader checks every member
against the manifest as it streams by, and every stored object against its catalog SHA-256)
and writes each shard's part as a small backup of its own under `imports/<id>/shards/`,
sealed with the restore's KMS data key (workflows.sealing: nothing of it in clear on S3); a
shard reads only its part, checking every member of it and its whole object's SHA-256 (the
plan's) before anything of it is written. A damaged backup is refused by the plan: no shard
starts, nothing is written.

A user in several shards (`split`): their shards run in parallel, so what must happen once for
the user happens in this machine, not in a shard. The projects their sessions need and the
target lacks are created by the plan, once (tagged with the restore's id: its rollback removes
them, its finalize refreshes their stats); in mode `full` the shards run as `merge` and the
removal pass (what the target has and the backup lacks, pre-images journalled first) runs once
after them (`remove`), reading which sessions and projects the backup holds from the list the
plan stored; a rollback restores its journal once the shards are rolled back.

plan           the job started; the backup split into shard objects (checked; a damaged or
               empty backup ends the job failed here); split users' projects created, their
               kept lists stored; one child job per shard (a stable id: a retried plan makes
               none twice; 25 a BatchWriteItem, handed over to the next invocation when one
               runs short); one items object `restores/<id>/shards/items.json` (every shard's
               job id and records, small shards grouped) for the Map's ItemReader. An
               instance restore's small users share packed parts (imports.split), each shard
               reading only its user's records from its pack: the plan's calls grow by about
               a 25th of the users.
plan_rollback  the same list, for a rollback (POST /restores/{id}/rollback).
shard_ended    one shard's restore ended (whichever way): the restore's progress counts it.
begin_rollback one shard's rollback begun (a shard that wrote nothing is left as it is).
remove         mode full, every shard succeeded: the removal pass of each split user, until
               the time budget runs low (`next`: remove again, or finalize).
finalize       the shards' outcomes summed up: succeeded when every shard did (a dry run: what
               each would do), failed naming the shards that failed (the others stay
               restored; a rollback undoes them); after a rollback, the removal's journal
               restored and the projects the plan created removed if empty, rolled_back.
failed         the Catch: the job ends failed with a readable reason.

Users the target has and the backup does not hold are left as they are (a full restore makes
each user the backup holds equal to the backup; an instance backup made before a user signed
up does not remove that user).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bson import ObjectId

from dataport.backups.format import decode_line, encode_line
from dataport.bucket import PackagesBucket, packages_bucket
from dataport.errors import Conflict
from dataport.imports import storage
from dataport.imports.digest import UploadDigest
from dataport.imports.limits import issue
from dataport.imports.readers.backup import BackupSource, NotInOrder, Position, Selection
from dataport.imports.removal import Removal, removed, removed_projects
from dataport.imports.removal import recover as recover_removals
from dataport.imports.sealed import Sealer
from dataport.imports.split import ShardKey, ShardPart, Splitter
from dataport.jobs.store import BATCH_WRITE_LIMIT, JobStore, require_running, utcnow
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
from dataport.models.jobs import Job, JobError, JobStatus, Progress, RestoreState, UploadPin
from dataport.models.restores import (
    BACKUP_FILENAME,
    INSTANCE_TARGET,
    BackupLink,
    RestoreMode,
    RestoreSource,
)
from dataport.models.tasks import ImportStep, RestoreShardsTask, ShardList
from dataport.observability import logger
from dataport.progress import throttle
from dataport.progress.publisher import publish_claimed, publish_progress, publish_terminal
from dataport.progress.throttle import Cadence
from dataport.settings import get_settings
from dataport.source.collections import PROJECTS, SESSIONS
from dataport.source.conflicts import UserData
from dataport.source.mongo import get_database
from dataport.source.staging import Staging
from dataport.source.writes import (
    IMPORT_TAG,
    Target,
    delete_empty_projects,
    refresh_project_stats,
    restore,
)
from dataport.workflows import imports, restore_checks, restore_progress, sealing
from dataport.workflows.failure import describe

#: shards restored at once: each is an import execution with its own Lambdas
MAX_CONCURRENT_SHARDS = 10
#: the progress phase of a job being rolled back (api.imports shows the same)
ROLLING_BACK = "rolling_back"
#: the progress phase of a restore while its shards run (`current` of `total` records)
RESTORING = restore_progress.RESTORING
#: the import pipeline's statuses a shard ends in, rolled back or not
_ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
#: what a restore's finalize ends it in
_FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.ROLLED_BACK, JobStatus.CANCELLED)
#: an uploaded backup file's stored bytes per message, to size a restore before reading it
#: (zstd level 3 on ClaudeLens messages: ~1 KB of Extended JSON each, ratio ~8.7)
UPLOAD_BYTES_PER_MESSAGE = 120


def shards_prefix(job_id: str) -> str:
    return f"restores/{job_id}/shards/"


def items_key(job_id: str) -> str:
    """The Map's items: one JSON array `[{shards: [{jobId, records}]}]` for all the shards
    (the ItemReader's s3:getObject; `groups`), written once by the plan after every shard's
    job."""
    return f"{shards_prefix(job_id)}items.json"


def planned_key(job_id: str) -> str:
    """The ids of every shard the plan makes, written before the first of their jobs: what a
    plan that fails (or is cancelled) while making them ends (`_unstarted`)."""
    return f"{shards_prefix(job_id)}planned.json"


def removal_id(job_id: str, user_id: str) -> str:
    """The staging and journal of a split user's removal pass (imports/<id>.<user>/...)."""
    return f"{job_id}.{user_id}"


def map_items(job_id: str) -> list[dict[str, Any]]:
    """A restore's items object (none before the plan made every shard's job)."""
    with packages_bucket().lines_from(items_key(job_id), 0) as lines:
        return [] if lines is None else list(json.loads(b"".join(lines)))


def shard_ids(job_id: str) -> list[str]:
    """The job ids of a restore's shards, in the plan's order."""
    return [shard["jobId"] for item in map_items(job_id) for shard in item["shards"]]


class ShardJobs:
    """A restore's shards' jobs, read a BatchGetItem (100) at a time each time they are
    walked: what walks them (finalize, a cancel's undo, the Catch) holds a page of jobs, not
    every shard's (a few KB each, and an instance restore has a shard per user)."""

    def __init__(self, store: JobStore, job_ids: list[str], *, required: bool = True) -> None:
        """`required`: every id is a job (a finalize's shards); otherwise the ids the plan
        meant to make, some of which it may not have made (`planned_ids`)."""
        self._store, self._ids, self._required = store, job_ids, required

    def __iter__(self) -> Iterator[Job]:
        return self._store.iter_many(self._ids, required=self._required)

    def which(self, matches: Callable[[Job], bool]) -> tuple[int, list[Job]]:
        """How many of them match, and the first ten that do (what an error names)."""
        count, first = 0, list[Job]()
        for shard in self:
            if matches(shard):
                count += 1
                if len(first) < 10:
                    first.append(shard)
        return count, first


def planned_ids(job_id: str) -> list[str]:
    """The job ids the plan makes or made (`planned_key`), whether or not it made them all."""
    with packages_bucket().lines_from(planned_key(job_id), 0) as lines:
        return [] if lines is None else list(json.loads(b"".join(lines)))


def child_id(job_id: str, shard: str) -> str:
    """A shard's job id: the same for the same restore and shard (a retried plan)."""
    return hashlib.blake2b(f"{job_id}/{shard}".encode(), digest_size=16).hexdigest()


def shard_size(messages: int, stored_bytes: int) -> int:
    """How many messages a shard of a backup of `messages` messages in `stored_bytes` bytes
    holds: `restore_shard_messages`, or fewer when its messages are large, so that a shard's
    part is about `restore_shard_bytes` at most. One user's restore of more messages than
    that runs in shards (a smaller one stays one import execution: no plan, no Map)."""
    settings = get_settings()
    if messages <= 0 or stored_bytes <= settings.restore_shard_bytes:
        return settings.restore_shard_messages
    return max(1, min(settings.restore_shard_messages,
                      messages * settings.restore_shard_bytes // stored_bytes))


def _shard_messages(job: Job) -> int:
    """The messages a shard of this restore holds (decided when it was made)."""
    return job.restore_state.shard_messages or get_settings().restore_shard_messages


# ---------------------------------------------------------------------------- plan


def plan(task: RestoreShardsTask, remaining_ms: Callable[[], int]) -> RestoreShardsTask:
    """One invocation of the plan: the split from where the last one handed over (or from
    the start), until it hands over at a checked member's end (`next: plan`, or
    `plan_on`: in a fresh child execution), or reaches the end; then (a split that was
    handed over: in an invocation of its own) the whole objects' SHA-256, and once every
    member and object checked clean, the shards' jobs."""
    store = JobStore()
    job = store.take(task.job_id)  # started, or as it is (a retried plan)
    require_running(job)
    remaining_ms = _unless_cancelled(store, job.job_id, remaining_ms)
    bucket = packages_bucket()
    done_before = task.split_at
    task = task.model_copy(update={"split_at": done_before + 1, "planned": task.planned + 1,
                                   "next": None})
    if not done_before:  # the first invocation (or its retry): anew
        publish_progress(job, Progress(phase="planning"), record=True)
        bucket.delete_prefix(storage.shard_parts_prefix(job.job_id))
        bucket.delete_prefix(storage.split_prefix(job.job_id))
    # the parts and the hand-overs are sealed: an encrypted backup's data lies in clear
    # nowhere (docs/backups.md "Sealed parts")
    sealer = sealing.parts_sealer(bucket, job.job_id)
    state = _read_state(bucket, sealer, job.job_id, done_before) if done_before else None
    if state is not None and state["phase"] == "jobs":  # the split done: jobs go on
        return _make_shards(job, task, remaining_ms, _jobs_parts(state), store=store,
                            bucket=bucket, sealer=sealer, made=state["made"])
    try:
        if state is not None and state["phase"] == "hash":
            parts, splitter, report = _checked_whole(job, bucket, sealer, state)
        elif state is not None and state["phase"] == NEWEST_FIRST:
            bucket.delete_prefix(storage.shard_parts_prefix(job.job_id))  # anew
            parts, splitter, report = _split(job, bucket, sealer, remaining_ms, state=None,
                                             number=done_before + 1, newest_first=True)
        else:
            parts, splitter, report = _split(job, bucket, sealer, remaining_ms, state=state,
                                             number=done_before + 1)
    except _HandedOver:
        more = task.planned >= get_settings().restore_plan_invocations
        return task.model_copy(update={"next": "plan_on" if more else "plan"})
    except _OutOfTime as stopped:
        sealing.drop_parts(bucket, job.job_id)
        _too_large(store, job, stopped.records, stopped.why)
        return task.model_copy(update={"shard_list": None})
    if not report.ok or not parts:
        sealing.drop_parts(bucket, job.job_id)
        _refuse(store, job, report)
        return task.model_copy(update={"shard_list": None})
    assert splitter is not None
    for key in splitter.superseded:  # parts reopened and stored again: no plan reads them
        bucket.delete(key)
    counts: dict[str, int] = {}
    for part in parts:
        counts[part.user_id] = counts.get(part.user_id, 0) + 1
    split = sorted(user for user, count in counts.items() if count > 1)
    decision = imports.decided(job)
    if split:  # created now (a dry run: counted), once for all the user's shards
        created = _create_projects(job, splitter, split, dry_run=decision.dry_run)
        bucket.put(_created_key(job.job_id), json.dumps(created).encode(), {})
    if split and job.restore_state.restore.mode is RestoreMode.FULL:
        for user in split:
            key = storage.kept_prefix(job.job_id) + user
            bucket.put(key, sealer.seal(_kept_lines(bucket, sealer, job.job_id, splitter, user),
                                        key), {})
    return _make_shards(job, task, remaining_ms, parts, store=store, bucket=bucket,
                        sealer=sealer, made=0)


def _make_shards(job: Job, task: RestoreShardsTask, remaining_ms: Callable[[], int],
                 parts: list[ShardPart], *, store: JobStore, bucket: PackagesBucket,
                 sealer: Sealer, made: int) -> RestoreShardsTask:
    """The shards' jobs, 25 rows a BatchWriteItem (a stable id each, the same row bytes for
    the same plan: a retried plan makes none twice), from the `made` first on; then the
    Map's items, one object. A plan short of time hands the rest over (`_jobs_state`: the
    parts and how many jobs are made), so no number of shards outlasts an invocation."""
    counts: dict[str, int] = {}
    for part in parts:
        counts[part.user_id] = counts.get(part.user_id, 0) + 1
    shards = [_shard(job, part, split=counts[part.user_id] > 1) for part in parts]
    reserve = get_settings().worker_reserve_ms
    first = made
    if made == 0:  # the same ids for the same plan: a retry writes the same object
        bucket.put(planned_key(job.job_id),
                   json.dumps([shard_id for shard_id, _ in shards]).encode(), {})
    while made < len(shards):
        # at least one batch an invocation, so the plan always goes on
        if made > first and remaining_ms() < reserve:  # a clock, no request
            _write_state(bucket, sealer, job.job_id, task.split_at,
                         _jobs_state(parts, made))
            more = task.planned >= get_settings().restore_plan_invocations
            return task.model_copy(update={"next": "plan_on" if more else "plan"})
        batch = shards[made:made + BATCH_WRITE_LIMIT]
        store.create_many(job.user_id, batch, created_at=job.created_at)
        made += len(batch)
    items = groups([{"jobId": shard_id, "records": part.records}
                    for (shard_id, _), part in zip(shards, parts, strict=True)],
                   [part.messages for part in parts])
    bucket.put(items_key(job.job_id), json.dumps(items).encode(), {})
    store.update_restore(job.job_id, shards=len(parts))
    # progress counts records: the shards fold theirs in as they go (restore_progress)
    publish_progress(job, Progress(phase=RESTORING, current=0,
                                   total=sum(part.records for part in parts)), record=True)
    logger.info("restore planned", extra={"job_id": job.job_id, "shards": len(parts),
                                          "parts": len({part.pin.key for part in parts}),
                                          "split_users": sum(1 for n in counts.values() if n > 1),
                                          "invocations": task.split_at})
    return task.model_copy(update={
        "mode": "restore", "next": None,
        "shard_list": ShardList(bucket=bucket.name, prefix=shards_prefix(job.job_id),
                                key=items_key(job.job_id)),
        "concurrency": min(len(items), MAX_CONCURRENT_SHARDS)})


def groups(shards: list[dict[str, Any]], messages: list[int]) -> list[dict[str, Any]]:
    """The Map's items: a shard of more than `restore_pack_messages` messages alone, the
    others (small users' shards) `restore_group_shards` together, in their order. An item is
    one child execution that runs its shards at once, so at `MAX_CONCURRENT_SHARDS` items a
    restore of many small users runs that many times more of them at once, while large shards,
    MongoDB's real write load, still run at most `MAX_CONCURRENT_SHARDS` at once."""
    settings = get_settings()
    items: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []
    for shard, count in zip(shards, messages, strict=True):
        if count > settings.restore_pack_messages:
            items.append({"shards": [shard]})
            continue
        group.append(shard)
        if len(group) == settings.restore_group_shards:
            items.append({"shards": group})
            group = []
    if group:
        items.append({"shards": group})
    return items


def _jobs_state(parts: list[ShardPart], made: int) -> dict[str, Any]:
    """A plan handed over while making the shards' jobs: the parts, and how many are made."""
    return {"phase": "jobs", "made": made,
            "parts": [{**vars(part), "pin": part.pin.model_dump()} for part in parts]}


def _jobs_parts(state: dict[str, Any]) -> list[ShardPart]:
    return [ShardPart(**{**part, "pin": UploadPin.model_validate(part["pin"])})
            for part in state["parts"]]


def _unless_cancelled(store: JobStore, job_id: str,
                      remaining_ms: Callable[[], int]) -> Callable[[], int]:
    """The split's clock, which also looks at the job's row once a second: a cancel stops
    the split where it is (`JobCancelled`; the parts it wrote are dropped by the undo)."""
    pulse = Cadence(imports.PULSE_MS)
    pulse.due()  # the row was just read

    def left() -> int:
        if pulse.due():
            require_running(store.require(job_id))
        return remaining_ms()

    return left


def _state_key(job_id: str, number: int) -> str:
    return f"{storage.split_prefix(job_id)}state-{number:06d}.json"


def _ids_key(job_id: str, number: int) -> str:
    return f"{storage.split_prefix(job_id)}ids-{number:06d}.json"


def _taken_key(job_id: str, number: int) -> str:
    return f"{storage.split_prefix(job_id)}taken-{number:06d}.json"


class _Earlier:
    """The sessions the plan's earlier invocations read, from their pages (`taken-<n>`, one
    entry per session: the link its version came from, its shard), loaded when a message
    away from its session's place first asks (a backup in order never does)."""

    def __init__(self, bucket: PackagesBucket, sealer: Sealer, job_id: str, before: int) -> None:
        self._bucket, self._sealer, self._job_id, self._before = bucket, sealer, job_id, before
        self._sessions: dict[str, tuple[int, str, int]] | None = None

    def link(self, session_id: str) -> int | None:
        found = self._read().get(session_id)
        return None if found is None else found[0]

    def shard(self, session_id: str) -> ShardKey | None:
        found = self._read().get(session_id)
        return None if found is None else (found[1], found[2])

    def _read(self) -> dict[str, tuple[int, str, int]]:
        if self._sessions is None:
            self._sessions = {}
            # (an invocation that read no session, one of late messages, wrote no page)
            for key in self._bucket.keys(_taken_key(self._job_id, 0)[:-len("000000.json")]):
                if key >= _taken_key(self._job_id, self._before):
                    continue  # a later invocation's (none: each writes its own, in turn)
                with self._bucket.lines_from(key, 0) as lines:
                    page = json.loads(self._sealer.open(b"".join(lines or []), key))
                self._sessions.update((sid, (link, user, shard))
                                      for sid, (link, user, shard) in page.items())
        return self._sessions


def _read_state(bucket: PackagesBucket, sealer: Sealer, job_id: str,
                number: int) -> dict[str, Any]:
    key = _state_key(job_id, number)
    with bucket.lines_from(key, 0) as lines:
        if lines is None:
            raise Conflict(f"Restore {job_id}: the plan's state {number} is missing.")
        return decode_line(sealer.open(b"".join(lines), key))  # the projects' documents exactly


def _write_state(bucket: PackagesBucket, sealer: Sealer, job_id: str, number: int,
                 state: dict[str, Any]) -> None:
    key = _state_key(job_id, number)
    bucket.put(key, sealer.seal(encode_line(state), key), {})


class _OutOfTime(Exception):
    """The split cannot go on: a member did not fit what was left of an invocation (or a
    chain read newest link first did not fit one)."""

    def __init__(self, records: int, why: str = "") -> None:
        super().__init__(records)
        self.records = records
        self.why = why


class _HandedOver(Exception):
    """The split stopped at a member's end and stored its state: the next invocation goes on."""


class _Stop(Exception):
    """Raised by the reader's position callback: the split stops there."""

    def __init__(self, position: Position, records: int) -> None:
        super().__init__()
        self.position, self.records = position, records


def _split(job: Job, bucket: PackagesBucket, sealer: Sealer, remaining_ms: Callable[[], int],
           *, state: dict[str, Any] | None, number: int, newest_first: bool = False
           ) -> tuple[list[ShardPart], Splitter | None, ValidationReport]:
    """The backup read into shard objects; every member checked as it streams by. A report
    with errors: nothing kept. The backup (a chain: its links merged in sessionId order)
    hands over at a checked member's end the reader offers (a `sessions/` member's, or a
    `messages/` member's of messages away from their sessions' place) when less than
    `restore_plan_reserve_ms` + `restore_plan_member_ms` is left (`_HandedOver`: state
    `number` stored); a split that
    went on that way ends with its parts stored and the whole objects' SHA-256 left to an
    invocation of its own (`_checked_whole`). One that never handed over checks every stored
    object's SHA-256 against its catalog record from the digest of its own read, as before.
    Past `restore_plan_reserve_ms` inside a member `_OutOfTime`, nothing kept: stopped by
    Lambda instead, the split would leave its files on the container's /tmp."""
    state_ = job.restore_state
    pin = state_.upload_pin or state_.source.restored.pin
    owner_of = _owner_of(job)
    selections = state_.restore.selections

    def source(digest: UploadDigest, in_order: bool) -> BackupSource:
        return BackupSource(imports.opener(pin, digest), BACKUP_FILENAME,
                            options=ImportOptions(), limits=imports.limits(job),
                            password=imports.password_of(job),
                            chain=[imports.opener(link.pin) for link in state_.source.links[:-1]],
                            selection=Selection(frozenset(selections.projects),
                                                frozenset(selections.sessions)),
                            in_order=in_order)

    chain = len(state_.source.links) > 1
    resumed = state is not None
    earlier = _Earlier(bucket, sealer, job.job_id, number) if resumed else None
    # a chain whose links' sessions are not in sessionId order (dataport writes them in
    # order) is read newest link first, in one invocation, keeping every shard to the end:
    # at once, or, found after a hand-over, from the start in the next invocation
    tries = (False,) if newest_first else (True, False) if chain and not resumed else (True,)
    for in_order in tries:
        splitter = Splitter(bucket, storage.shard_parts_prefix(job.job_id),
                            _shard_messages(job), owner_of=owner_of, eager=in_order,
                            made_at=job.created_at, sealer=sealer, **_packing(job))
        if state is not None:
            splitter.load(state["splitter"])
        if earlier is not None:
            splitter.earlier = earlier.shard
        digest = UploadDigest()
        read = source(digest, in_order)
        try:
            report, count = _read_into(splitter, read, state, remaining_ms,
                                       hands_over=in_order,
                                       taken=earlier.link if earlier is not None else None)
            if report.ok and resumed:  # the whole objects in an invocation of their own
                splitter.finish()
                _hand_over(bucket, sealer, job.job_id, splitter, read, number=number,
                           state={"phase": "hash", "records": count})
            if report.ok:
                _, sha256 = digest.finish(imports.tail(pin))
                report = restore_checks.whole_objects(job, report, sha256)
            if not report.ok:
                splitter.abort()
                return [], None, report
            return splitter.finish(), splitter, report
        except _Stop as stop:
            _hand_over(bucket, sealer, job.job_id, splitter, read, number=number, state={
                "phase": "split", "records": stop.records, "position": stop.position.state()})
        except NotInOrder as where:
            logger.info("chain not in sessionId order: read newest link first", extra={
                "job_id": job.job_id, "member": str(where), "handed_over": resumed})
            splitter.abort(stored=not resumed)
            if resumed:
                _write_state(bucket, sealer, job.job_id, number, {"phase": NEWEST_FIRST})
                raise _HandedOver() from None
        except BaseException:  # a retried invocation finds the earlier ones' parts in place
            splitter.abort(stored=not resumed)
            raise
    raise AssertionError("a chain read newest link first is read to its end")


#: the state of a plan whose chain was found out of sessionId order after a hand-over: the
#: next invocation splits it again from the start, newest link first
NEWEST_FIRST = "newest-first"
_NEWEST_FIRST_TOO_LARGE = (
    "the sessions of a backup of its chain are not in sessionId order (dataport writes them in "
    "order), so it is read in one run of the plan (15 minutes), which it does not fit")


def _read_into(splitter: Splitter, source: BackupSource, state: dict[str, Any] | None,
               remaining_ms: Callable[[], int], *, hands_over: bool,
               taken: Callable[[str], int | None] | None) -> tuple[ValidationReport, int]:
    """The records (from the state's position) into the splitter: the report and how many
    records were read in all. `hands_over`: `_Stop` at a checked member's end the reader
    offers once less than the reserve and one more member's time is left."""
    settings = get_settings()
    problems: list[Issue] = []
    count = state["records"] if state is not None else 0

    def at_member_end(position: Position) -> None:
        if not any(p.severity == "error" for p in problems) and remaining_ms() < (
                settings.restore_plan_reserve_ms + settings.restore_plan_member_ms):
            raise _Stop(position, count)

    records = source.records(problems.append,
                             start=Position.of(state["position"]) if state is not None else None,
                             on_position=at_member_end if hands_over else None, taken=taken)
    for record in records:
        count += 1
        # known since the reader read the manifests (before its first record): the layout
        # every part's manifest carries to its shard (an attribute, set as cheaply as read)
        splitter.message_layout = source.message_layout
        splitter.add(record)
        if remaining_ms() < settings.restore_plan_reserve_ms:  # a clock, no request
            raise _OutOfTime(count, "" if hands_over else _NEWEST_FIRST_TOO_LARGE)
    errors = [p for p in problems if p.severity == "error"]
    return ValidationReport(errors=errors[:100], errors_total=len(errors)), count


def _hand_over(bucket: PackagesBucket, sealer: Sealer, job_id: str, splitter: Splitter,
               source: BackupSource, *, number: int, state: dict[str, Any]) -> None:
    """State `number` stored (the open shards' members with it), the sessionIds this
    invocation read, and its page of them (each one's link and shard, for the messages that
    come away from their sessions' place); then `_HandedOver`."""
    state["splitter"] = splitter.hand_over(f"{storage.split_prefix(job_id)}members/")
    _write_state(bucket, sealer, job_id, number, state)
    key = _ids_key(job_id, number)
    bucket.put(key, sealer.seal(json.dumps(splitter.session_ids).encode(), key), {})
    page = {sid: [source.chosen[sid], *shard] for sid, shard in splitter.session_shards.items()}
    if page:
        key = _taken_key(job_id, number)
        bucket.put(key, sealer.seal(json.dumps(page).encode(), key), {})
    raise _HandedOver()


def _checked_whole(job: Job, bucket: PackagesBucket, sealer: Sealer, state: dict[str, Any]
                   ) -> tuple[list[ShardPart], Splitter | None, ValidationReport]:
    """After a split that was handed over: every stored object's SHA-256 against its catalog
    record, each read once from S3 by several ranged GETs at once (imports.tail: bound by
    the hashing, docs/backups.md "Bounds of the plan"); the parts the split stored, once it
    checked clean."""
    state_ = job.restore_state
    pin = state_.upload_pin or state_.source.restored.pin
    splitter = Splitter(bucket, storage.shard_parts_prefix(job.job_id),
                        _shard_messages(job), owner_of=_owner_of(job),
                        eager=True, made_at=job.created_at, sealer=sealer, **_packing(job))
    splitter.load(state["splitter"])
    _, sha256 = UploadDigest().finish(imports.tail(pin))
    report = restore_checks.whole_objects(job, ValidationReport(), sha256)
    if not report.ok:
        splitter.abort()
        return [], None, report
    return splitter.finish(), splitter, report  # (no shard is open: its /tmp removed)


def _packing(job: Job) -> dict[str, int]:
    """An instance restore packs small users' shards together (each shard's user owns its
    projects there, so its reader can take only theirs); a restore into one user does not."""
    settings = get_settings()
    if job.restore_state.target_user_id != INSTANCE_TARGET:
        return {}
    return {"pack_messages": min(settings.restore_pack_messages, _shard_messages(job)),
            "pack_users": settings.restore_pack_users}


def _owner_of(job: Job) -> Callable[[dict[str, Any]], str | None]:
    """Whose shard a project's sessions go to: an instance restore's, their owner's (a project
    of no user is not restored); a restore into one user, that user's."""
    target = job.restore_state.target_user_id
    if target != INSTANCE_TARGET:
        return lambda _project: target

    def owner(project: dict[str, Any]) -> str | None:
        user = project.get("user_id")
        return str(user) if isinstance(user, ObjectId) else None

    return owner


def _create_projects(job: Job, splitter: Splitter, users: list[str], *,
                     dry_run: bool) -> dict[str, int]:
    """The projects a split user's sessions need and the target lacks, created once (their
    shards run in parallel and would each create them), tagged with the restore's id; how
    many per user (a dry run: would create)."""
    db = get_database()
    target = Target(db)
    now = utcnow()
    created: dict[str, int] = {}
    for user in users:
        data = UserData(db, user)
        existing = data.projects_by_path()
        wanted = {str(doc["path"]): doc for doc in splitter.projects_with_sessions(user)
                  if isinstance(doc.get("path"), str) and doc["path"] not in existing}
        if not dry_run:
            target.create_projects(data.scope.user_id, wanted, job.job_id, now)
        created[user] = len(wanted)
    return created


def _created_key(job_id: str) -> str:
    """How many projects the plan created for each split user (a dry run: would create)."""
    return f"{storage.prefix(job_id)}created.json"


def _created_counts(job_id: str) -> dict[str, int]:
    with packages_bucket().lines_from(_created_key(job_id), 0) as lines:
        return {} if lines is None else dict(json.loads(b"".join(lines)))


def _kept_lines(bucket: PackagesBucket, sealer: Sealer, job_id: str, splitter: Splitter,
                user: str) -> bytes:
    """What a split user's removal keeps: line 1 the backup's project paths (JSON), then one
    sessionId a line (those the plan's earlier invocations read, then this one's)."""
    paths = json.dumps(sorted(splitter.project_paths.get(user, set())))
    ids: list[str] = []
    for key in bucket.keys(f"{storage.split_prefix(job_id)}ids-"):
        with bucket.lines_from(key, 0) as lines:
            ids.extend(json.loads(sealer.open(b"".join(lines or []), key)).get(user, []))
    return "\n".join([paths, *ids, *splitter.session_ids.get(user, [])]).encode()


def _refuse(store: JobStore, job: Job, report: ValidationReport) -> None:
    """The backup could not be planned (damaged, or no user's data): nothing was written."""
    if report.ok:
        report = ValidationReport(errors=[issue(
            IssueCode.NO_RECORDS, "the backup holds no project of any user",
            file=BACKUP_FILENAME)], errors_total=1)
    error = restore_checks.refusal(job, report) or JobError(
        code="invalid_upload", message=f"The backup cannot be restored: "
        f"{report.errors[0].message}. Nothing was written.")
    failed = store.fail_import(job.job_id, error, report=report,
                               progress=Progress(phase="done"))
    publish_terminal(failed)
    logger.info("restore refused", extra={"job_id": job.job_id, "code": error.code})


def _too_large(store: JobStore, job: Job, records: int, why: str = "") -> None:
    """The split could not go on (a member that does not fit an invocation, or a chain whose
    links' sessions are not in sessionId order that does not fit one): the job ends failed,
    `backup_too_large`, nothing written and no part left (docs/backups.md, "Time of the
    plan")."""
    why = why or "a member of it does not fit one run of the plan (15 minutes)"
    failed = store.fail_import(job.job_id, JobError(code="backup_too_large", message=(
        f"The backup cannot be split into shards: {why}; it was stopped after reading "
        f"{records} records, and nothing was written. "
        "Restore smaller backups (POST /backups with filters: a few projects each), one after the "
        "other in mode merge.")), progress=Progress(phase="done"))
    publish_terminal(failed)
    logger.warning("restore refused: the split does not fit one invocation",
                   extra={"job_id": job.job_id, "records": records})


def _shard(job: Job, part: ShardPart, *, split: bool) -> tuple[str, RestoreState]:
    """One shard: a restore of its part of the backup (its own object, or a pack it shares
    with other small users, pinned, with the SHA-256 the plan wrote it with) into its user.
    A split user's shards of a full restore run as `merge`: the removal runs once, after
    them."""
    shard_id = child_id(job.job_id, f"{part.user_id}/{part.number}")
    request = job.restore_state.restore
    if split and request.mode is RestoreMode.FULL:
        request = request.model_copy(update={"mode": RestoreMode.MERGE})
    link = BackupLink(backup_id=shard_id, pin=part.pin, sha256=part.sha256)
    state = job.restore_state.model_copy(update={
        "target_user_id": part.user_id, "parent_id": job.job_id, "shards": None,
        "in_shards": False, "restore": request, "upload_pin": part.pin,
        "shared_part": part.shared,
        # the part is no catalogued backup: damage found in it marks no record corrupted
        "source": RestoreSource(links=[link], from_upload=True)})
    return shard_id, state


def shard_ended(task: RestoreShardsTask) -> RestoreShardsTask:
    """A shard ended, whichever way (`task.job_id` is its restore, `task.shard_id` the shard).
    A restore: the shard's records counted whole in the restore's progress (what it folded in
    as it went, and the rest); a rollback: one more shard rolled back. One conditional write
    (two when the throttle refuses the event), and the event when it may go out. Progress is a
    courtesy: nothing here fails the shard, and Finalize reads the shards' own jobs."""
    store = JobStore()
    if task.mode == "rollback":
        counted = store.count_shard(task.job_id, ROLLING_BACK, claim_at_ms=throttle.now_ms(),
                                    min_interval_ms=throttle.MIN_INTERVAL_MS)
        if counted is not None:
            publish_claimed(counted)
        elif store.count_shard(task.job_id, ROLLING_BACK) is None:
            logger.info("shard not counted (the restore is not rolling back)",
                        extra={"job_id": task.job_id})
        return task
    if task.shard_id is None:
        return task
    records = task.records if task.records is not None else 0
    folded = store.fold_records(task.job_id, task.shard_id, records, RESTORING,
                                claim_at_ms=throttle.now_ms(),
                                min_interval_ms=throttle.MIN_INTERVAL_MS)
    if folded is not None and folded[1]:
        publish_claimed(folded[0])
    return task


def plan_rollback(task: RestoreShardsTask) -> RestoreShardsTask:
    """The shards again, to roll each back (the API moved the job to rolling back)."""
    store = JobStore()
    job = store.require(task.job_id)
    if job.status is not JobStatus.CANCELLING:  # a cancel's undo runs this Map too
        require_running(job)
    bucket = packages_bucket()
    items = map_items(job.job_id)
    shards = sum(len(item["shards"]) for item in items)
    # counted as each shard's rollback ends (shard_ended)
    publish_progress(job, Progress(phase=ROLLING_BACK, current=0, total=shards), record=True)
    return task.model_copy(update={
        "mode": "rollback",
        "shard_list": ShardList(bucket=bucket.name, prefix=shards_prefix(job.job_id),
                                key=items_key(job.job_id)),
        "concurrency": max(1, min(len(items), MAX_CONCURRENT_SHARDS))})


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


# ---------------------------------------------------------------------------- removal


def remove(task: RestoreShardsTask, remaining_ms: Callable[[], int]) -> RestoreShardsTask:
    """Mode full, every shard succeeded: each split user's removal pass (what the target has
    and the backup lacks: pre-images journalled, then removed), resumable user by user and
    batch by batch; `next` says whether it is done."""
    task = task.model_copy(update={"invocations": task.invocations + 1})
    done = task.model_copy(update={"next": "finalize"})
    store = JobStore()
    job = store.require(task.job_id)
    require_running(job)
    users = _split_users(job.job_id)
    if not users:
        return done
    # the split users' shards' ids, in one walk over every shard's job
    mine: dict[str, list[str]] = {user: [] for user in users}
    for shard in ShardJobs(store, shard_ids(job.job_id)):
        if shard.status is not JobStatus.SUCCEEDED:
            return done  # the restore fails: the target is left as the shards left it
        if shard.restore_state.target_user_id in mine:
            mine[shard.restore_state.target_user_id].append(shard.job_id)
    settings = get_settings()
    decision = imports.decided(job)
    db, bucket = get_database(), packages_bucket()
    sealer = sealing.parts_sealer(bucket, job.job_id)

    pulse = Cadence(imports.PULSE_MS)
    pulse.due()  # the row was just read

    def keep_going() -> bool:  # a dry run too: it resumes after what it listed
        if pulse.due() and store.require(job.job_id).status is not JobStatus.RUNNING:
            return False  # cancelled: stop between batches; the next invocation ends it
        return remaining_ms() > settings.worker_reserve_ms

    for number, user in enumerate(users[task.after:], task.after):
        staging = Staging(db, removal_id(job.job_id, user))
        if not decision.dry_run:
            recover_removals(db, bucket, staging)  # a batch an earlier invocation left
        paths, kept = _kept(bucket, sealer, job.job_id, user)
        # copies the shards wrote (another id than the backup's) stay too
        kept |= {str(doc["sessionId"]) for doc in db[SESSIONS].find(
            {IMPORT_TAG: {"$in": mine[user]}}, {"sessionId": 1})}
        removal = Removal(db=db, bucket=bucket, staging=staging, user=UserData(db, user),
                          run_id=f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
                          dry_run=decision.dry_run, strategy=decision.strategy,
                          batch=min(settings.import_batch_ops, 200), kept=kept,
                          kept_paths=paths, resume=True)
        with imports.database_errors():
            finished = removal.run(keep_going)
        if not finished:
            return task.model_copy(update={"next": "remove", "after": number})
    return done


def _split_users(job_id: str) -> list[str]:
    prefix = storage.kept_prefix(job_id)
    return [key[len(prefix):] for key in packages_bucket().keys(prefix)]


def _kept(bucket: PackagesBucket, sealer: Sealer, job_id: str,
          user: str) -> tuple[set[str], set[str]]:
    key = storage.kept_prefix(job_id) + user
    with bucket.lines_from(key, 0) as lines:
        if lines is None:
            return set(), set()
        first, *rest = sealer.open(b"".join(lines), key).split(b"\n")
        return set(json.loads(first)), {line.strip().decode() for line in rest if line.strip()}


def _removed(job: Job, users: list[str], dry_run: bool) -> tuple[int, MessageCounts, int]:
    """What the split users' removal passes removed (dry: would remove)."""
    db = get_database()
    sessions, messages, projects = 0, MessageCounts(), 0
    for user in users:
        staging = Staging(db, removal_id(job.job_id, user))
        for result in removed(staging, dry_run=dry_run):
            sessions += 1
            messages = messages.plus(MessageCounts.model_validate(result.get("messages", {})))
        projects += removed_projects(staging, dry_run=dry_run)
    return sessions, messages, projects


# ---------------------------------------------------------------------------- the end


def finalize(task: RestoreShardsTask) -> RestoreShardsTask:
    store = JobStore()
    job = store.require(task.job_id)
    if job.status in _FINAL:
        return task  # a retried finalize whose first attempt ended the job
    if task.mode == "rollback" and job.status is JobStatus.CANCELLING:
        _undone(store, job)  # the cancel's undo: its shards rolled back by the Map
        return task
    require_running(job)
    ids = shard_ids(job.job_id)
    shards = ShardJobs(store, ids)
    if task.mode == "rollback":
        _roll_back_own(job)
        _rolled_back(store, job, shards, len(ids))
        return task
    removal = _removed(job, _split_users(job.job_id), imports.decided(job).dry_run)
    _tidy(job)
    outcome = summed(job, shards, removal)
    failed, named = shards.which(lambda s: s.status is not JobStatus.SUCCEEDED)
    records = job.progress.total if job.progress.phase == RESTORING else 0
    done = Progress(phase="done", current=records if not failed else job.progress.current,
                    total=records)
    if failed:
        names = ", ".join(_shard_name(s) for s in named)
        first = named[0].error
        ended = store.fail_import(job.job_id, JobError(code="shards_failed", message=(
            f"{failed} of {len(ids)} shards of the restore failed ({names}"
            f"{', ...' if failed > 10 else ''}): "
            f"{first.message if first else 'see their restores'}. The other shards were "
            f"restored; POST /restores/{job.job_id}/rollback undoes them all.")),
            outcome=outcome, progress=done)
        logger.warning("restore in shards failed", extra={"job_id": job.job_id,
                                                          "failed": failed})
    else:
        if outcome.dry_run:
            store.update_import(job.job_id, dry_run=outcome)
        ended = store.succeed_import(job.job_id, outcome=outcome, progress=done)
        logger.info("restore in shards succeeded", extra={"job_id": job.job_id,
                                                          "shards": len(ids)})
    publish_terminal(ended)
    return task


def _shard_name(shard: Job) -> str:
    """A failed shard as the parent's error names it: its user (and its job)."""
    return f"user {shard.owner_of_data}: restore {shard.job_id}"


def _tidy(job: Job) -> None:
    """After the shards: the projects the plan created refreshed (or removed, left empty),
    the removal's staging dropped, the parts of the backup deleted. The kept lists stay
    (a rollback finds the removal's journal by them); the job's objects go with it."""
    db, bucket = get_database(), packages_bucket()
    for owner in _created_for(job.job_id):
        refresh_project_stats(db, job.job_id, owner)
        delete_empty_projects(db, job.job_id, owner)
    for user in _split_users(job.job_id):
        Staging(db, removal_id(job.job_id, user)).drop()
    sealing.drop_parts(bucket, job.job_id)  # split/ kept to here: a retried plan reads it


def _created_for(job_id: str) -> list[ObjectId]:
    """The users the plan created projects for (tagged with the restore's id)."""
    users = get_database()[PROJECTS].distinct("user_id", {IMPORT_TAG: job_id})
    return sorted(user for user in users if isinstance(user, ObjectId))


def _roll_back_own(job: Job) -> None:
    """What the restore itself wrote, undone once its shards are rolled back: the removal
    passes' pre-images put back, the projects its plan created removed when left empty."""
    db, bucket = get_database(), packages_bucket()
    for user in _split_users(job.job_id):
        for key in storage.journal_keys(bucket, removal_id(job.job_id, user)):
            _, preimages = storage.read_journal(bucket, key)
            with imports.database_errors():
                restore(db, preimages)
    for owner in _created_for(job.job_id):
        delete_empty_projects(db, job.job_id, owner)


def _drop_empty_projects(job_id: str) -> None:
    """The projects the plan created that no shard wrote into (a failure after the plan):
    removed, so a failed restore leaves none behind. The database may be why it failed: the
    job ends failed all the same (POST the rollback, or restore again, to tidy them)."""
    try:
        db = get_database()
        for owner in _created_for(job_id):
            delete_empty_projects(db, job_id, owner)
    except Exception:  # the job must end whatever this finds
        logger.warning("projects the plan created were not checked", extra={"job_id": job_id})


def summed(job: Job, shards: Iterable[Job],
           removal: tuple[int, MessageCounts, int] = (0, MessageCounts(), 0)
           ) -> ImportOutcome:
    """What the shards (and the split users' removal) did (a dry run: would do), added up."""
    decision = imports.decided(job)
    sessions = dict.fromkeys(SessionCounts.model_fields, 0)
    messages = MessageCounts()
    created = removed_total = 0
    started = job.created_at
    for outcome in _outcomes(shards):
        for name in sessions:
            sessions[name] += getattr(outcome.sessions, name)
        messages = messages.plus(outcome.messages)
        created += outcome.projects_created
        removed_total += outcome.projects_removed
        started = min(started, outcome.started_at)
    sessions["removed"] += removal[0]
    # a split user's projects are the plan's to create (its shards found them made; a dry
    # run's shards would each count them)
    split = _created_counts(job.job_id)
    created -= sum(o.projects_created for s in shards
                   if s.restore_state.target_user_id in split
                   for o in _outcomes([s]))
    created += sum(split.values()) if decision.dry_run else sum(
        1 for _ in get_database()[PROJECTS].find({IMPORT_TAG: job.job_id}, {"_id": 1}))
    return ImportOutcome(dry_run=decision.dry_run, strategy=decision.strategy,
                         sessions=SessionCounts(**sessions), messages=messages.plus(removal[1]),
                         projects_created=created, projects_removed=removed_total + removal[2],
                         started_at=started, finished_at=utcnow())


def _outcomes(shards: Iterable[Job]) -> Iterator[ImportOutcome]:
    for shard in shards:
        outcome = shard.import_state.outcome
        if outcome is not None:
            yield outcome


def _rolled_back(store: JobStore, job: Job, shards: ShardJobs, count: int) -> None:
    """rolled_back once no shard's writes are left in place."""
    left, named = shards.which(_left_in_place)
    if left:
        names = ", ".join(s.job_id for s in named)
        ended = store.fail(job.job_id, JobError(code="rollback_failed", message=(
            f"The rollback of {left} of {count} shards did not finish ({names}); "
            "POST the rollback again (it is safe to repeat).")))
    else:
        ended = store.roll_back(job.job_id, Progress(phase="done", current=count,
                                                     total=count))
    publish_terminal(ended)
    logger.info("restore in shards rolled back", extra={"job_id": job.job_id, "left": left})


def _left_in_place(shard: Job) -> bool:
    """A shard not rolled back whose writes may be in place."""
    return shard.status is not JobStatus.ROLLED_BACK and _wrote(shard)


def _wrote(shard: Job) -> bool:
    """Whether a shard's writes may be in place (a clean-up that failed may have left some)."""
    outcome = shard.import_state.outcome
    repair = shard.error is not None and shard.error.code == CLEANUP_FAILED
    return repair or (outcome is not None and outcome.wrote)


# ---------------------------------------------------------------------------- cancel


def _unstarted(store: JobStore, shards: Iterable[Job], reason: JobError | None) -> None:
    """Shards that never started (a plan that failed or was cancelled while it made them, or
    a Map that never reached them) end: cancelled (`reason` None: the restore's cancel, which
    has stopped the running ones too), or failed with `reason` (a failed restore: only those
    still queued, a running one ends by itself); none is left queued in the history."""
    unstarted = (JobStatus.QUEUED, JobStatus.RUNNING) if reason is None else (JobStatus.QUEUED,)
    for shard in shards:
        if shard.status not in unstarted:
            continue
        try:
            if reason is None:
                store.cancel(shard.job_id, progress=Progress(phase="done"))
            else:
                store.fail(shard.job_id, reason, progress=Progress(phase="done"))
        except Conflict:
            logger.info("shard ended meanwhile", extra={"job_id": shard.job_id})


def _undo(store: JobStore, job: Job, task: RestoreShardsTask) -> RestoreShardsTask:
    """A cancelled restore stopped (a task saw it cancelling): the parts, what the plan
    handed over and the data key dropped at once, any upload still open under the job
    aborted; then, when it has shards, the rollback's Map over them (`next: undo`: each
    shard that wrote rolled back by the import machine; those that saw the cancel undid
    themselves) and `finalize` ends it; with none, it ends here. An undo that fails itself
    ends the job failed, `cleanup_failed`: POST the rollback to finish it."""
    bucket = packages_bucket()
    if task.mode == "rollback":
        failed_undo = store.fail_import(job.job_id, JobError(code=CLEANUP_FAILED, message=(
            f"The restore was cancelled, and undoing what it wrote could not finish. POST "
            f"/restores/{job.job_id}/rollback puts the target back as it was (it is safe "
            "to repeat).")))
        publish_terminal(failed_undo)
        return task.model_copy(update={"next": None})
    sealing.drop_parts(bucket, job.job_id)
    bucket.abort_uploads(storage.prefix(job.job_id))
    if shard_ids(job.job_id):
        return task.model_copy(update={"action": "plan_rollback", "mode": "rollback",
                                       "next": "undo", "error": None, "shard_list": None})
    _undone(store, job)
    return task.model_copy(update={"next": "cancelled", "error": None})


def _undone(store: JobStore, job: Job) -> None:
    """The end of a cancel: what the restore wrote itself undone (the removal's journal,
    the projects its plan made); shards never started cancelled; every object of the
    restore and its shards under `imports/` dropped; cancelled, or failed `cleanup_failed`
    naming the shards whose rollback did not finish."""
    db, bucket = get_database(), packages_bucket()
    shards = ShardJobs(store, planned_ids(job.job_id), required=False)
    left, named = shards.which(_left_in_place)
    if left:
        ended = store.fail_import(job.job_id, JobError(code=CLEANUP_FAILED, message=(
            f"The restore was cancelled, and the rollback of {left} of its shards did "
            f"not finish ({', '.join(s.job_id for s in named)}). POST "
            f"/restores/{job.job_id}/rollback puts the target back as it was.")))
        publish_terminal(ended)
        return
    _roll_back_own(job)
    users = _split_users(job.job_id)
    for user in users:
        Staging(db, removal_id(job.job_id, user)).drop()
        bucket.delete_prefix(storage.prefix(removal_id(job.job_id, user)))
    _unstarted(store, shards, None)
    made = undone = 0
    for shard in shards:
        bucket.delete_prefix(storage.prefix(shard.job_id))
        made += 1
        undone += shard.status is JobStatus.ROLLED_BACK
    bucket.delete_prefix(storage.prefix(job.job_id))
    ended = store.cancel(job.job_id, JobError(code="cancelled", message=(
        f"Cancelled at your request. What the restore had written was undone ({undone} of "
        f"its {made} shards had finished and were rolled back, the others stopped "
        "and undid themselves); the target is as it was before it.")),
        progress=Progress(phase="done"))
    publish_terminal(ended)
    logger.info("restore in shards cancelled and undone", extra={
        "job_id": job.job_id, "shards": made, "rolled_back": undone})


def failed(task: RestoreShardsTask) -> RestoreShardsTask:
    """The Catch: the job ends failed with a readable reason (the shards keep their own
    state; what they wrote is in the outcome, and a rollback undoes it). A cancelled
    restore is undone instead (`_undo`)."""
    store = JobStore()
    job = store.require(task.job_id)
    if job.status is JobStatus.CANCELLING:
        return _undo(store, job, task)
    error = task.error
    what = "rollback" if task.mode == "rollback" else "restore"
    reason = describe(error.Error if error else "States.Runtime", error.Cause if error else None,
                      job.job_id, what=what, hint="Start it again.")
    if task.mode == "rollback":
        reason = JobError(code="rollback_failed", message=reason.message)
    shards = ShardJobs(store, planned_ids(job.job_id), required=False)
    _unstarted(store, shards, JobError(code="restore_failed", message=(
        f"Its restore ({job.job_id}) failed before this shard started: nothing of it was "
        "written.")))
    outcome = None
    if job.import_state.decision is not None and next(iter(shards), None) is not None:
        try:
            outcome = summed(job, shards)
        except Exception:  # summed reads the database, which may be why this failed
            logger.warning("outcome not summed", extra={"job_id": job.job_id})
    if task.mode != "rollback":
        sealing.drop_parts(packages_bucket(), job.job_id)
        _drop_empty_projects(job.job_id)
    try:
        ended = store.fail_import(job.job_id, reason, outcome=outcome)
    except Conflict:
        logger.info("restore already ended", extra={"job_id": job.job_id})
        return task
    publish_terminal(ended)
    return task
