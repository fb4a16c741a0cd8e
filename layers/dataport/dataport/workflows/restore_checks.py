"""A restore's checks beyond the import's validation, in the Validate task: the SHA-256 of every
stored object of the chain against what its catalog record says (the manifest cannot hold its
own object's checksum), and what the job says when a backup is refused (`backup_corrupted`,
with the catalog record of a damaged backup marked corrupted).

The restored object itself is hashed by the validation pass as it reads it (its `UploadDigest`,
as an import's upload is); the parents of an increment are read once more here, each by
several ranged GETs at once (PackagesBucket.read_pinned), each GET requiring its pin's ETag.
All of it happens before Stage: nothing of a backup that fails is written.
"""

from __future__ import annotations

import hashlib

from dataport.backups.catalog import BackupCatalog
from dataport.bucket import packages_bucket
from dataport.errors import Conflict
from dataport.imports.limits import issue
from dataport.models.imports import Issue, IssueCode, ValidationReport
from dataport.models.jobs import Job, JobError, JobKind
from dataport.models.restores import BackupLink
from dataport.observability import logger

BACKUP_CORRUPTED = "backup_corrupted"


def whole_objects(job: Job, report: ValidationReport, restored_sha256: str) -> ValidationReport:
    """The report with an error per stored object whose SHA-256 is not its catalog's."""
    links = job.restore_state.source.links
    problems: list[Issue] = []
    for link in links:
        if link.sha256 is None:
            continue  # an uploaded file: no catalog record to compare with
        actual = restored_sha256 if link is links[-1] else _sha256(link)
        if actual != link.sha256:
            problems.append(issue(IssueCode.CHECKSUM_MISMATCH, (
                f"backup {link.backup_id}: the stored object's SHA-256 is not the one recorded "
                "when it was made; it was changed or damaged, and nothing of it is restored"),
                file=link.backup_id))
    if not problems:
        return report
    # the members' own errors first: they name what is damaged
    return report.model_copy(update={"errors": [*report.errors, *problems],
                                     "errors_total": report.errors_total + len(problems)})


def refusal(job: Job, report: ValidationReport) -> JobError | None:
    """A restore refused for a damaged backup: the job's error, and the backups of its chain
    that are damaged marked corrupted in the catalog. None for anything else."""
    if job.kind is not JobKind.RESTORE:
        return None
    damaged = [e for e in report.errors if e.code == IssueCode.CHECKSUM_MISMATCH]
    if not damaged:
        return None
    state = job.restore_state
    if not state.source.from_upload:
        links = state.source.links
        ids = {link.backup_id for e in damaged for number, link in enumerate(links)
               if e.file == link.backup_id or f"(chain link {number})" in e.message
               or (number == len(links) - 1 and "(chain link" not in e.message)}
        mark_corrupted(sorted(ids), damaged[0].message)
    return JobError(code=BACKUP_CORRUPTED, message=(
        f"The backup is damaged and was not restored: {damaged[0].message}. Nothing was "
        "written. Restore another backup, or verify this one (POST /backups/{id}/verify)."))


def mark_corrupted(backup_ids: list[str], reason: str) -> None:
    """The catalog records of damaged backups, marked so (listed as corrupted from now on;
    a record no longer completed, expired meanwhile, is left as it is)."""
    catalog = BackupCatalog()
    error = JobError(code=BACKUP_CORRUPTED, message=reason[:1000])
    for backup_id in backup_ids:
        try:
            catalog.mark_corrupted(backup_id, member=None, error=error)
        except Conflict:
            logger.info("backup not marked corrupted", extra={"backup_id": backup_id})
    logger.warning("backup refused as corrupted", extra={"backups": backup_ids})


def _sha256(link: BackupLink) -> str:
    """A parent's SHA-256, read by several ranged GETs at once, each requiring its pin."""
    digest = hashlib.sha256()
    with packages_bucket().read_pinned(link.pin) as chunks:
        for chunk in chunks:
            digest.update(chunk)
    return digest.hexdigest()
