"""A backup is produced by the export pipeline (workflows/export.py, the export state machine):
the same plan, shards, staged members, UploadPartCopy assembly and ShardReporter progress, with
the backup writer (backups/writer.py) where an export format plugs in. This module holds what
differs, and export.py asks it when the job is a backup:

source    the scope a backup reads: one user's (SelectionScope) or every user's (InstanceScope),
          whole sessions with every message; an increment reads the sessions updated in
          (parentWatermark, watermark]
plan      the watermark (the time the snapshot read starts), the catalog record running, and
          for an increment `deletions.jsonl.zst`: what its chain holds and the source no longer
          has (backups/chain.py, streamed)
finalize  the zip from the staged members with the backup manifest (level 0: the members are
          already zstd), the whole object's SHA-256 (streamed once), the catalog record
          completed, the job succeeded
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO

from pydantic import SecretStr

from dataport.backups.catalog import BackupCatalog
from dataport.backups.chain import (
    chain_projects,
    chain_sessions,
    deletion_lines,
    session_deletions,
)
from dataport.backups.format import (
    BackupManifest,
    Compression,
    FormatError,
    MemberEntry,
    collection_of,
)
from dataport.backups.verify import chunks_sha256
from dataport.backups.writer import BackupWriter
from dataport.bucket import PackagesBucket, packages_bucket
from dataport.errors import InvalidRequest, NotFound
from dataport.formats.base import ExportContext, FileSink
from dataport.jobs.store import JobStore, require_running, utcnow
from dataport.models.backups import (
    BackupCounts,
    BackupRecord,
    BackupScope,
    BackupSizes,
    BackupStatus,
    BackupType,
)
from dataport.models.exports import ExportFilters
from dataport.models.jobs import Job, Progress
from dataport.models.staged import StagedFile
from dataport.observability import logger
from dataport.packaging import locations
from dataport.packaging.cleanup import discard_job_objects
from dataport.packaging.package import assemble_zip
from dataport.progress.publisher import publish_progress, publish_terminal
from dataport.progress.throttle import Cadence, now_ms
from dataport.settings import get_settings
from dataport.source.collections import layout_in_use
from dataport.source.mongo import get_database
from dataport.source.reader import projects_in_scope, session_keys
from dataport.source.scope import BackupSelection, InstanceScope, OwnerScope, SelectionScope

#: backup members are stored in the zip: their bytes are zstd already
STORED = 0
#: a member is cut when its lines pass this size (a restore reads members in parallel)
MEMBER_SPLIT_BYTES = 256 * 1024 * 1024
#: the longest chain followed (base + increments): a guard against a cycle in the records
MAX_CHAIN = 1000
MIB = 1024 * 1024
#: the reader's own filters: a backup never filters messages (its selection is in its scope)
NO_FILTERS = ExportFilters()


def selection_of(job: Job, *, window: bool = True) -> BackupSelection:
    state = job.backup_state
    incremental = state.request.type is BackupType.INCREMENTAL and window
    return BackupSelection(filters=state.filters,
                           updated_after=state.parent_watermark if incremental else None,
                           updated_upto=state.watermark if incremental else None)


def scope_of(job: Job, selection: BackupSelection | None = None) -> OwnerScope:
    chosen = selection or selection_of(job)
    if job.backup_state.request.scope is BackupScope.INSTANCE:
        return InstanceScope(get_database(), chosen)
    return SelectionScope(get_database(), job.user_id, chosen)


def writer_for(job: Job, sink: FileSink, *, shard: int, seq: int) -> BackupWriter:
    state = job.backup_state
    level = state.request.compression_level or get_settings().backup_zstd_level
    context = ExportContext(job_id=job.job_id, owner_id=job.user_id, created_at=job.created_at,
                            format="backup")
    return BackupWriter(sink, context=context, split_bytes=MEMBER_SPLIT_BYTES, level=level,
                        shard=shard, first_seq=seq)


def begin(job: Job, store: JobStore) -> Job:
    """The plan's first step for a backup: its catalog record running, the watermark set
    (once: a retried plan keeps the first one, so every shard reads the same window) with the
    source's message layout (a database property, for a user backup too: the manifest records
    it, and a restore into a database with no message collection yet writes it; read here,
    where the database is reached, not by the finalizer, which has no access to it)."""
    BackupCatalog().mark_running(job.job_id)
    if job.backup_state.watermark is None:
        job = store.update_backup(job.job_id, watermark=utcnow(),
                                  message_layout=layout_in_use(get_database()))
    return job


def write_plan_members(job: Job, writer: BackupWriter, password: SecretStr | None) -> int:
    """An increment's deletions member (what the chain holds and the source no longer has);
    returns how many. Full and selective backups have none."""
    state = job.backup_state
    if state.request.type is not BackupType.INCREMENTAL:
        return 0
    catalog, bucket = BackupCatalog(), packages_bucket()
    chain = chain_of(catalog, job.job_id)
    secret = password.get_secret_value() if password else None
    openers = [opener_of(bucket, record) for record in chain]
    now = scope_of(job, selection_of(job, window=False))
    try:
        sessions = session_deletions(chain_sessions(openers, secret),
                                     session_keys(now, NO_FILTERS))
        held_projects = chain_projects(openers, secret)
        current = {project["_id"] for project in projects_in_scope(now, NO_FILTERS)}
        return writer.write_deletions(deletion_lines(sessions, held_projects - current))
    except FormatError as error:
        raise InvalidRequest(f"The backup this increment follows cannot be read: {error}",
                             details={"parentId": state.request.parent_id}) from error


def chain_of(catalog: BackupCatalog, backup_id: str) -> list[BackupRecord]:
    """The chain an increment follows, base first (the increment itself left out)."""
    record = catalog.find(backup_id)
    if record is None:
        raise NotFound(f"Backup {backup_id} is not in the catalog.")
    chain: list[BackupRecord] = []
    parent_id = record.parent_id
    while parent_id is not None:
        parent = catalog.find(parent_id)
        if (parent is None or parent.status is not BackupStatus.COMPLETED
                or not parent.object_key):
            raise InvalidRequest(f"Backup {parent_id} in this chain is no longer usable "
                                 f"({parent.status.value if parent else 'deleted'}); start a "
                                 "full backup.", details={"parentId": parent_id})
        chain.append(parent)
        if len(chain) > MAX_CHAIN:
            raise InvalidRequest("This backup chain is too long; start a full backup.")
        parent_id = parent.parent_id
    chain.reverse()
    return chain


def opener_of(bucket: PackagesBucket, record: BackupRecord) -> Callable[[], IO[bytes]]:
    """Opens the stored backup for reading (ranged GETs), each time it is called."""
    key = record.object_key
    assert key is not None  # chain_of keeps completed backups only

    def open_backup() -> IO[bytes]:
        return bucket.open_read(key)

    return open_backup


def finalize(job: Job, store: JobStore, password: SecretStr | None,
             files_in_order: Callable[[], Iterator[StagedFile]]) -> Job:
    """Assemble the backup, hash it, complete its catalog record and the job. `files_in_order`
    is the finalizer's read of the staged files (`JobStore.for_packaging`: a failed attempt's
    leftovers already skipped)."""
    require_running(job)
    state = job.backup_state
    settings = get_settings()
    catalog = BackupCatalog()
    record = catalog.find(job.job_id)
    if record is None:
        raise NotFound(f"Backup {job.job_id} is not in the catalog.")
    now = utcnow()
    filename = (f"dataport-backup-{state.request.scope.value}-{state.request.type.value}-"
                f"{now.astimezone(UTC):%Y%m%d-%H%M%S}-{job.job_id[:8]}.zip")
    key = locations.backup_key(job.job_id, filename)
    packaging = job.progress.model_copy(update={"phase": "packaging"})
    publish_progress(job, packaging, record=True)
    cadence = Cadence()
    level = state.request.compression_level or settings.backup_zstd_level
    watermark = state.watermark or job.created_at
    built: list[BackupManifest] = []

    def files() -> Iterator[StagedFile]:
        for staged in files_in_order():
            if cadence.due():
                publish_progress(job, packaging)
            yield staged

    def manifest(members: list[tuple[str, StagedFile]]) -> bytes:
        entries = [_entry(name, staged) for name, staged in members]
        counts = BackupCounts(**{
            collection: sum(e.records for e in entries if e.collection == collection)
            for collection in ("projects", "sessions", "messages", "deletions")})
        built.append(BackupManifest(
            backup_id=job.job_id, name=record.name, description=record.description,
            scope=record.scope.value, type=record.type.value,
            owner_id=job.user_id if record.scope is BackupScope.USER else None,
            parent_id=record.parent_id, parent_watermark=state.parent_watermark,
            watermark=watermark, created_at=now,
            filters=state.filters.model_dump(mode="json", by_alias=True, exclude_none=True)
            if state.filters else {},
            compression=Compression(level=level),
            encryption="aes-256" if password is not None else None,
            message_layout=state.message_layout, counts=counts,
            bytes={"uncompressed": sum(e.bytes for e in entries),
                   "compressed": sum(e.compressed_bytes for e in entries)},
            members=entries))
        return built[-1].to_json()

    bucket = packages_bucket()
    result = assemble_zip(bucket, key, files, manifest, modified=now,
                          part_size=settings.upload_part_size_mb * MIB, level=STORED,
                          password=password,
                          content_disposition=f'attachment; filename="{filename}"')
    # the whole object's SHA-256: several ranged GETs at once, each requiring the ETag of what
    # was just assembled (bound by the hashing, not one S3 stream: docs/backups.md)
    with bucket.read_pinned(bucket.pin_written(key)) as stored:
        sha256, size = chunks_sha256(stored)
    discard_job_objects(bucket, job.job_id, include_package=False)
    full = built[-1]
    catalog.mark_completed(
        job.job_id, object_key=key, filename=filename, sha256=sha256, counts=full.counts,
        sizes=BackupSizes(stored=size, uncompressed=full.bytes.uncompressed,
                          compressed=full.bytes.compressed),
        watermark=watermark, parent_watermark=state.parent_watermark)
    done = store.succeed_backup(
        job.job_id, object_key=key, size=result.bytes, counts=full.counts,
        progress=Progress(phase="done", current=full.counts.sessions,
                          total=full.counts.sessions, bytes=result.bytes), claim_at_ms=now_ms())
    publish_terminal(done, claimed=True)
    logger.info("backup completed", extra={"job_id": job.job_id, "bytes": result.bytes,
                                           "members": result.files})
    return done


def _entry(name: str, staged: StagedFile) -> MemberEntry:
    collection = collection_of(name)
    if collection is None or staged.content_size is None or staged.content_sha256 is None:
        raise ValueError(f"{name}: not a backup member")
    return MemberEntry(path=name, collection=collection, records=staged.records,
                       bytes=staged.content_size, compressed_bytes=staged.size,
                       sha256=staged.content_sha256, compressed_sha256=staged.sha256)


def expires_at(days: int | None, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(days=days or get_settings().backup_retention_days)
