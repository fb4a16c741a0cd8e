"""Where a job's objects live in the packages bucket (lifecycle rules key on these prefixes)."""

from __future__ import annotations

STAGING = "staging/"
PACKAGES = "packages/"
BACKUPS = "backups/"


def staging_prefix(job_id: str) -> str:
    return f"{STAGING}{job_id}/"


def shard_prefix(job_id: str, shard: int) -> str:
    return f"{staging_prefix(job_id)}{shard:05d}/"


def package_prefix(job_id: str) -> str:
    return f"{PACKAGES}{job_id}/"


def package_key(job_id: str, filename: str) -> str:
    return f"{package_prefix(job_id)}{filename}"


def shard_list_prefix(job_id: str) -> str:
    """One small object per export shard (its first cursor): the Distributed Map's items."""
    return f"{staging_prefix(job_id)}shards/"



def backup_prefix(backup_id: str) -> str:
    """A backup's stored object lives here; no lifecycle rule expires it (retention does)."""
    return f"{BACKUPS}{backup_id}/"


def backup_key(backup_id: str, filename: str) -> str:
    return f"{backup_prefix(backup_id)}{filename}"
