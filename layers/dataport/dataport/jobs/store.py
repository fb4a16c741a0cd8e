"""The job store: job rows, per-user history, shard progress and staged-file records.

Every status change is a conditional write (`status IN (...)`), so two actors racing (a cancel
and a worker, a retry and its original) can never both win. Reads filter expired rows because
DynamoDB deletes TTL'd items up to two days late.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from dataport import aws
from dataport.errors import Conflict, InvalidRequest, JobCancelled, NotFound
from dataport.jobs import keys
from dataport.jobs.dynamo import from_item, is_conditional_failure, to_item, to_value
from dataport.models.jobs import Job, JobKind, JobStatus, Progress
from dataport.packaging.staging import StagedFile
from dataport.settings import get_settings


def utcnow() -> datetime:
    return datetime.now(UTC)


def require_running(job: Job) -> None:
    """Workflow tasks stop here once a job was cancelled (or ended) under them."""
    if job.status is not JobStatus.RUNNING:
        raise JobCancelled(f"Job {job.job_id} is {job.status.value}; stopping.")


def new_job_id() -> str:
    """Sortable-enough, unguessable, and a valid Step Functions execution name."""
    return uuid.uuid4().hex


class JobStore:
    def __init__(self, table: str | None = None) -> None:
        self.table = table or get_settings().jobs_table
        self.db = aws.dynamodb()

    # ------------------------------------------------------------------ job rows
    def create(self, kind: JobKind, user_id: str, request: Mapping[str, Any],
               job_id: str | None = None, sealed_password: str | None = None) -> Job:
        now = utcnow()
        retention = timedelta(days=get_settings().job_retention_days)
        job = Job(job_id=job_id or new_job_id(), kind=kind, user_id=user_id,
                  status=JobStatus.QUEUED, created_at=now, updated_at=now,
                  expires_at=int((now + retention).timestamp()), request=dict(request),
                  encrypted=sealed_password is not None, sealed_password=sealed_password)
        item = self._row(job)
        try:
            self.db.put_item(TableName=self.table, Item=to_item(item),
                             ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_conditional_failure(error):
                raise Conflict(f"Job {job.job_id} already exists.") from error
            raise
        return job

    def get(self, job_id: str, user_id: str) -> Job:
        """The caller's job. Another user's job and an expired one are simply not found."""
        job = self.find(job_id)
        if job is None or job.user_id != user_id:
            raise NotFound(f"No job {job_id} was found for this account.")
        return job

    def find(self, job_id: str) -> Job | None:
        """A job by id for the workflow tasks (the job row itself names its owner)."""
        answer = self.db.get_item(TableName=self.table, ConsistentRead=True,
                                  Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}))
        if "Item" not in answer:
            return None
        job = _job_from(from_item(answer["Item"]))
        return None if job.expires_at <= int(utcnow().timestamp()) else job

    def require(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            raise NotFound(f"Job {job_id} does not exist or has expired.")
        return job

    def history(self, user_id: str, kind: JobKind, limit: int = 20,
                next_token: str | None = None) -> tuple[list[Job], str | None]:
        """Newest first. The token is opaque to clients and checked to be the caller's own."""
        pk = keys.owner_pk(user_id, kind)
        query: dict[str, Any] = {
            "TableName": self.table, "IndexName": keys.OWNER_INDEX,
            "KeyConditionExpression": "gsi1pk = :pk", "ScanIndexForward": False,
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": to_item({":pk": pk, ":now": int(utcnow().timestamp())}),
            "Limit": limit,
        }
        if next_token:
            query["ExclusiveStartKey"] = _decode_token(next_token, pk)
        jobs: list[Job] = []
        # A filter applies after Limit, so keep reading until the page is full or ends.
        while True:
            answer = self.db.query(**query)
            jobs.extend(_job_from(from_item(item)) for item in answer.get("Items", []))
            last = answer.get("LastEvaluatedKey")
            if not last or len(jobs) >= limit:
                break
            query["ExclusiveStartKey"] = last
            query["Limit"] = limit - len(jobs)
        return jobs, (_encode_token(last) if last else None)

    def transition(self, job_id: str, to: JobStatus, *, allowed_from: Iterable[JobStatus],
                   **changes: Any) -> Job:
        """Move a job to `to` only from one of `allowed_from`; other fields change with it.
        A job that ends forgets its sealed password, whichever path ends it."""
        names = {"#status": "status"}
        values: dict[str, Any] = {":to": to.value, ":now": utcnow().isoformat()}
        sets = ["#status = :to", "updated_at = :now"]
        removes = []
        if not to.is_active:
            names["#sealed"] = "sealed_password"
            removes.append("#sealed")
        for i, (field, value) in enumerate(changes.items()):
            names[f"#f{i}"] = field
            if value is None:  # None clears the field
                removes.append(f"#f{i}")
                continue
            values[f":v{i}"] = _storable(value)
            sets.append(f"#f{i} = :v{i}")
        froms = []
        for i, status in enumerate(allowed_from):
            values[f":from{i}"] = status.value
            froms.append(f":from{i}")
        try:
            answer = self.db.update_item(
                TableName=self.table,
                Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
                UpdateExpression="SET " + ", ".join(sets)
                + (" REMOVE " + ", ".join(removes) if removes else ""),
                ConditionExpression=f"attribute_exists(pk) AND #status IN ({', '.join(froms)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_conditional_failure(error):
                current = self.find(job_id)
                state = current.status.value if current else "missing"
                raise Conflict(f"Job {job_id} is {state}; it cannot become {to.value}.",
                               details={"status": state}) from error
            raise
        return _job_from(from_item(answer["Attributes"]))

    def record_execution(self, job_id: str, execution_arn: str) -> Job:
        """Remember the job's workflow execution. Unconditional on status: the workflow may
        already have moved the job on by the time its starter hears back."""
        answer = self.db.update_item(
            TableName=self.table,
            Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
            UpdateExpression="SET execution_arn = :arn",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_item({":arn": execution_arn}),
            ReturnValues="ALL_NEW",
        )
        return _job_from(from_item(answer["Attributes"]))

    def set_progress(self, job_id: str, progress: Progress) -> None:
        """Progress only moves while the job runs; a late worker never overwrites the end."""
        try:
            self.db.update_item(
                TableName=self.table,
                Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
                UpdateExpression="SET progress = :p, updated_at = :now",
                ConditionExpression="#status = :running",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({
                    ":p": progress.model_dump(exclude={"percentage"}),
                    ":now": utcnow().isoformat(), ":running": JobStatus.RUNNING.value}),
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    # ------------------------------------------------------------------ shards and files
    def put_shard(self, job_id: str, shard: int, state: Mapping[str, Any]) -> None:
        self._put_child(job_id, keys.shard_sk(shard), state)

    def shards(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._children(job_id, "SHARD#"))

    def put_files(self, job_id: str, shard: int, first_seq: int,
                  files: Iterable[StagedFile]) -> None:
        for seq, staged in enumerate(files, start=first_seq):
            self._put_child(job_id, keys.file_sk(shard, seq),
                            {"file": staged.model_dump_json()})

    def files(self, job_id: str) -> Iterator[StagedFile]:
        """Staged files in package order (shard, then sequence), streamed page by page."""
        for item in self._children(job_id, "FILE#"):
            yield StagedFile.model_validate_json(item["file"])

    def forget_files_from(self, job_id: str, shard: int, seq: int) -> None:
        """Drop file records a failed attempt left at or after `seq` (its retry rewrites them)."""
        paginator = self.db.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues=to_item({
                ":pk": keys.job_pk(job_id), ":lo": keys.file_sk(shard, seq),
                ":hi": keys.file_sk(shard, 999_999)}),
            ProjectionExpression="pk, sk",
        ):
            for item in page.get("Items", []):
                self.db.delete_item(TableName=self.table, Key=item)

    def _put_child(self, job_id: str, sk: str, values: Mapping[str, Any]) -> None:
        job = self.require(job_id)
        item = {**values, "pk": keys.job_pk(job_id), "sk": sk, "expires_at": job.expires_at}
        self.db.put_item(TableName=self.table, Item=to_item(item))

    def _children(self, job_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.db.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=to_item({":pk": keys.job_pk(job_id), ":prefix": prefix}),
        ):
            for item in page.get("Items", []):
                yield from_item(item)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _row(job: Job) -> dict[str, Any]:
        created = job.created_at.isoformat()
        return {
            "pk": keys.job_pk(job.job_id), "sk": keys.JOB_SK,
            "gsi1pk": keys.owner_pk(job.user_id, job.kind), "gsi1sk": keys.owner_sk(created,
                                                                                    job.job_id),
            "job_id": job.job_id, "kind": job.kind.value, "user_id": job.user_id,
            "status": job.status.value, "created_at": created,
            "updated_at": job.updated_at.isoformat(), "expires_at": job.expires_at,
            "request": json.dumps(job.request), "progress": job.progress.model_dump(
                exclude={"percentage"}),
            **({"encrypted": True, "sealed_password": job.sealed_password}
               if job.sealed_password else {}),
        }


def _storable(value: Any) -> Any:
    """Models go in as plain maps (by field name); datetimes as ISO strings."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude={"percentage"})
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _job_from(item: Mapping[str, Any]) -> Job:
    data = {k: v for k, v in item.items() if k not in {"pk", "sk", "gsi1pk", "gsi1sk"}}
    data["request"] = json.loads(data.get("request") or "{}")
    return Job.model_validate(_plain(data))


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; our counters are integers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    return value


def _encode_token(last_key: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(last_key, sort_keys=True).encode()).decode()


def _decode_token(token: str, owner_pk: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(key, dict) or key.get("gsi1pk") != to_value(owner_pk):
            raise ValueError("not this caller's listing")
    except (ValueError, binascii.Error) as error:
        raise InvalidRequest("The nextToken is not valid; start again without it.",
                             details={"field": "nextToken"}) from error
    return key
