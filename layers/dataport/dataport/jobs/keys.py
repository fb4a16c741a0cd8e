"""The single-table key scheme of the jobs table (one place, so no key is spelled twice).

  JOB#<id>   / JOB                       the job row
             GSI by-owner: OWNER#<user>#<kind> / <created>#<id>
  JOB#<id>   / SHARD#<nnnnn>             one shard's progress (workers SET it: retries stay exact)
  JOB#<id>   / FILE#<nnnnn>#<nnnnnn>     one staged package file, in package order
  RATE#<user>#<kind> / WINDOW#<start>    fixed-window rate-limit counter
  UPLOAD#<id> / RESTORE-UPLOAD           a backup file uploaded for a restore (multipart)
"""

from __future__ import annotations

JOB_SK = "JOB"
SHARD_PREFIX = "SHARD#"
OWNER_INDEX = "by-owner"


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def owner_pk(user_id: str, kind: str) -> str:
    return f"OWNER#{user_id}#{kind}"


def owner_sk(created_at_iso: str, job_id: str) -> str:
    return f"{created_at_iso}#{job_id}"


def shard_sk(shard: int) -> str:
    return f"{SHARD_PREFIX}{shard:05d}"


FILE_PREFIX = "FILE#"
#: the export's shard 0 holds what the plan writes (projects), so it comes first in the package
PLAN_SHARD = 0


def file_sk(shard: int, seq: int) -> str:
    return f"{FILE_PREFIX}{shard:05d}#{seq:06d}"


def rate_pk(user_id: str, kind: str) -> str:
    return f"RATE#{user_id}#{kind}"


def rate_sk(window_start: int) -> str:
    return f"WINDOW#{window_start}"


RESTORE_UPLOAD_SK = "RESTORE-UPLOAD"


def upload_pk(upload_id: str) -> str:
    return f"UPLOAD#{upload_id}"
