"""The backup catalog: one record per backup in the backups table (template.yaml
BackupsTable), the only module that reads or writes it.

Why a table of its own rather than job rows: a backup lives for days to months (its retention),
a job row for JobRetentionDays and then DynamoDB's TTL deletes it. The record's id is the id of
the job that made the backup.

  backup_id                            the record (pk)
  GSI by-list:   list_key / created_key  `USER#<owner>` for user backups, `INSTANCE` for
                                         instance backups; `<createdAt ISO>#<id>`: newest first
  GSI by-parent: parent_id / created_key the increments that follow a backup (sparse)
  GSI by-status: status / expires_epoch  what a retention sweep expires (sparse on expiry)

Every status change is one conditional UpdateItem from the statuses it may come from, so a
verify racing a sweep, or a retried finalize, can never both win: pending -> running ->
completed | failed; completed -> corrupted (verify); completed | corrupted | failed -> expired.
Reads are scoped: a user sees their own user-scope backups, an administrator instance ones;
anything else is "not found", never "forbidden" (which would say it exists).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from dataport import aws
from dataport.errors import Conflict, NotFound
from dataport.jobs.dynamo import (
    decode_page_token,
    encode_page_token,
    from_item,
    is_conditional_failure,
    plain,
    to_item,
)
from dataport.models.backups import (
    BackupCounts,
    BackupRecord,
    BackupScope,
    BackupSizes,
    BackupStatus,
    Verification,
)
from dataport.models.job_common import JobError
from dataport.settings import get_settings

LIST_INDEX = "by-list"
PARENT_INDEX = "by-parent"
STATUS_INDEX = "by-status"
INSTANCE_LIST = "INSTANCE"

_ENDED_BADLY = frozenset({BackupStatus.COMPLETED, BackupStatus.CORRUPTED, BackupStatus.FAILED})
_VERIFIABLE = frozenset({BackupStatus.COMPLETED, BackupStatus.CORRUPTED})


def list_key(scope: BackupScope, owner_id: str) -> str:
    return INSTANCE_LIST if scope is BackupScope.INSTANCE else f"USER#{owner_id}"


def _now() -> datetime:
    return datetime.now(UTC)


class BackupCatalog:
    def __init__(self, table: str | None = None) -> None:
        self.table = table or get_settings().backups_table
        self.db = aws.dynamodb()

    # ------------------------------------------------------------------ records
    def create_pending(self, record: BackupRecord) -> BackupRecord:
        """Record a new backup (status pending); an id already recorded is refused."""
        if record.status is not BackupStatus.PENDING:
            raise ValueError("a backup is recorded pending")
        try:
            self.db.put_item(TableName=self.table, Item=to_item(_row(record)),
                             ConditionExpression="attribute_not_exists(backup_id)")
        except ClientError as error:
            if is_conditional_failure(error):
                raise Conflict(f"Backup {record.backup_id} exists already.") from error
            raise
        return record

    def find(self, backup_id: str) -> BackupRecord | None:
        """A record by id, unscoped: for the workflow's tasks, which act for its owner."""
        item = self.db.get_item(TableName=self.table, ConsistentRead=True,
                                Key=to_item({"backup_id": backup_id})).get("Item")
        return _record(from_item(item)) if item else None

    def get(self, backup_id: str, user_id: str, *, admin: bool = False) -> BackupRecord:
        """The backup if the caller may see it: their own user backup, or any instance backup
        for an administrator. Anything else is NotFound."""
        record = self.find(backup_id)
        if record is None or not visible(record, user_id, admin=admin):
            raise NotFound(f"No backup {backup_id} was found for this account.")
        return record

    def listing(self, user_id: str, *, instance: bool = False, limit: int = 20,
             next_token: str | None = None) -> tuple[list[BackupRecord], str | None]:
        """The caller's user backups (or, `instance`, the instance backups), newest first, a
        page at a time; the token is opaque and checked to be this listing's."""
        key = INSTANCE_LIST if instance else list_key(BackupScope.USER, user_id)
        query: dict[str, Any] = {
            "TableName": self.table, "IndexName": LIST_INDEX, "Limit": limit,
            "KeyConditionExpression": "list_key = :key", "ScanIndexForward": False,
            "ExpressionAttributeValues": to_item({":key": key})}
        if next_token:
            query["ExclusiveStartKey"] = decode_page_token(next_token, "list_key", key)
        answer = self.db.query(**query)
        records = [_record(from_item(item)) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return records, (encode_page_token(last) if last else None)

    def children(self, backup_id: str) -> list[BackupRecord]:
        """The increments that name this backup as their parent, oldest first (a backup has
        few: one chain step each)."""
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, IndexName=PARENT_INDEX,
            KeyConditionExpression="parent_id = :id",
            ExpressionAttributeValues=to_item({":id": backup_id}))
        ids = [str(from_item(item)["backup_id"]) for page in pages for item in page["Items"]]
        # the index holds keys only and is eventually consistent: read each record itself
        fresh = (self.find(backup_id) for backup_id in ids)
        return [record for record in fresh if record is not None]

    def dependents(self, backup_id: str, now: datetime | None = None) -> list[BackupRecord]:
        """Increments that still need this backup: not expired, not failed."""
        moment = now or _now()
        return [child for child in self.children(backup_id)
                if child.status not in (BackupStatus.EXPIRED, BackupStatus.FAILED)
                and (child.expires_at is None or child.expires_at > moment)]

    def expiring(self, now: datetime, status: BackupStatus = BackupStatus.COMPLETED
                 ) -> Iterator[BackupRecord]:
        """Backups of `status` whose expiry has passed (for the retention sweep), oldest
        expiry first, streamed."""
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status AND expires_epoch <= :now",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item({":status": status.value,
                                               ":now": int(now.timestamp())}))
        for page in pages:
            for item in page["Items"]:
                yield _record(from_item(item))

    def delete(self, backup_id: str) -> None:
        """Forget the record (its object is the caller's to delete first)."""
        self.db.delete_item(TableName=self.table, Key=to_item({"backup_id": backup_id}))

    # ------------------------------------------------------------------ status changes
    def mark_running(self, backup_id: str) -> BackupRecord:
        return self._change(backup_id, {BackupStatus.PENDING, BackupStatus.RUNNING},
                            BackupStatus.RUNNING)

    def mark_completed(self, backup_id: str, *, object_key: str, filename: str,
                       sizes: BackupSizes, counts: BackupCounts, sha256: str,
                       watermark: datetime, parent_watermark: datetime | None) -> BackupRecord:
        return self._change(backup_id, {BackupStatus.RUNNING}, BackupStatus.COMPLETED, sets={
            "object_key": object_key, "filename": filename, "sha256": sha256,
            "sizes": sizes.model_dump(mode="json"), "counts": counts.model_dump(mode="json"),
            "watermark": watermark.isoformat(),
            "parent_watermark": parent_watermark.isoformat() if parent_watermark else None,
            "completed_at": _now().isoformat()})

    def mark_failed(self, backup_id: str, error: JobError) -> BackupRecord:
        return self._change(backup_id, {BackupStatus.PENDING, BackupStatus.RUNNING},
                            BackupStatus.FAILED, sets={"error": error.model_dump(mode="json")})

    def mark_verified(self, backup_id: str) -> BackupRecord:
        """A verify found it intact (it stays completed)."""
        return self._change(backup_id, {BackupStatus.COMPLETED}, BackupStatus.COMPLETED,
                            sets={"verified_at": _now().isoformat()})

    def mark_corrupted(self, backup_id: str, *, member: str | None,
                       error: JobError) -> BackupRecord:
        """A verify found damage: which member (None: the object as a whole) and why."""
        return self._change(backup_id, {BackupStatus.COMPLETED, BackupStatus.CORRUPTED},
                            BackupStatus.CORRUPTED, sets={
                                "corrupted_member": member, "error": error.model_dump(mode="json"),
                                "verified_at": _now().isoformat()})

    def start_verification(self, backup_id: str, job_id: str) -> BackupRecord:
        """A verification job began (completed or corrupted backups only)."""
        verification = Verification(job_id=job_id, status="running", started_at=_now())
        return self._change(backup_id, _VERIFIABLE, None, sets={
            "verification": verification.model_dump(mode="json", exclude_none=True)})

    def end_verification(self, backup_id: str, job_id: str, *, ok: bool | None = None,
                         sha256: str | None = None, members: int = 0, records: int = 0,
                         member: str | None = None, problem: str | None = None,
                         error: JobError | None = None,
                         cancelled: bool = False) -> BackupRecord | None:
        """The verification job `job_id` ended: `completed` with what it found, `failed` with
        `error`, or `cancelled` (with `error` saying so). Nothing changes when another
        verification began since, when this one already ended (a task that stops after a
        cancel does not turn it into a failure), or when the record is gone (None)."""
        record = self.find(backup_id)
        if record is None or record.verification is None \
                or record.verification.job_id != job_id \
                or record.verification.status != "running":
            return record
        status = "cancelled" if cancelled else "failed" if error is not None else "completed"
        ended = record.verification.model_copy(update={
            "status": status, "ended_at": _now(),
            "ok": ok, "sha256": sha256, "members": members, "records": records,
            "member": member, "problem": problem, "error": error})
        try:
            return self._change(backup_id, set(BackupStatus), None, sets={
                "verification": ended.model_dump(mode="json", exclude_none=True)})
        except Conflict:
            return self.find(backup_id)

    def mark_expired(self, backup_id: str) -> BackupRecord:
        """Retention ended and the object is deleted (the record stays, as history)."""
        return self._change(backup_id, _ENDED_BADLY, BackupStatus.EXPIRED,
                            removes=("expires_epoch",))

    def set_expires_at(self, backup_id: str, expires_at: datetime | None) -> BackupRecord:
        """A new expiry (None: kept until deleted), whatever the status but expired."""
        if expires_at is None:
            return self._change(backup_id, set(BackupStatus) - {BackupStatus.EXPIRED}, None,
                                removes=("expires_at", "expires_epoch"))
        return self._change(backup_id, set(BackupStatus) - {BackupStatus.EXPIRED}, None, sets={
            "expires_at": expires_at.astimezone(UTC).isoformat(),
            "expires_epoch": int(expires_at.timestamp())})

    def set_schedule(self, backup_id: str, schedule_id: str) -> None:
        """Record the schedule whose run made this backup (once: a later call changes nothing)."""
        try:
            self.db.update_item(
                TableName=self.table, Key=to_item({"backup_id": backup_id}),
                UpdateExpression="SET schedule_id = :schedule",
                ConditionExpression="attribute_exists(backup_id) AND "
                                    "attribute_not_exists(schedule_id)",
                ExpressionAttributeValues=to_item({":schedule": schedule_id}))
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    def _change(self, backup_id: str, froms: Collection[BackupStatus],
                to: BackupStatus | None, *, sets: Mapping[str, Any] | None = None,
                removes: Collection[str] = ()) -> BackupRecord:
        names = {"#status": "status"}
        values: dict[str, Any] = {":now": _now().isoformat()}
        assignments = ["updated_at = :now"]
        removed = list(removes)
        if to is not None:
            values[":to"] = to.value
            assignments.append("#status = :to")
        for i, (name, value) in enumerate((sets or {}).items()):
            names[f"#s{i}"] = name
            if value is None:
                removed.append(name)
                continue
            values[f":s{i}"] = value
            assignments.append(f"#s{i} = :s{i}")
        froms_sorted = sorted(froms)
        for i, status in enumerate(froms_sorted):
            values[f":f{i}"] = status.value
        for i, name in enumerate(removed):
            names[f"#r{i}"] = name
        expression = "SET " + ", ".join(assignments)
        if removed:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
        used = {name for name in names if name in expression or name == "#status"}
        try:
            answer = self.db.update_item(
                TableName=self.table, Key=to_item({"backup_id": backup_id}),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(backup_id) AND #status IN ("
                + ", ".join(f":f{i}" for i in range(len(froms_sorted))) + ")",
                ExpressionAttributeNames={k: v for k, v in names.items() if k in used},
                ExpressionAttributeValues=to_item(values), ReturnValues="ALL_NEW")
        except ClientError as error:
            if is_conditional_failure(error):
                current = self.find(backup_id)
                now_is = current.status.value if current else "missing"
                becomes = f"become {to.value}" if to else "change"
                raise Conflict(f"Backup {backup_id} is {now_is}; it cannot {becomes}.",
                               details={"status": now_is}) from error
            raise
        return _record(from_item(answer["Attributes"]))


def visible(record: BackupRecord, user_id: str, *, admin: bool) -> bool:
    if record.scope is BackupScope.INSTANCE:
        return admin
    return record.owner_id == user_id


def _row(record: BackupRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json", exclude_none=True)
    data["list_key"] = list_key(record.scope, record.owner_id)
    data["created_key"] = f"{data['created_at']}#{record.backup_id}"
    if record.expires_at is not None:
        data["expires_epoch"] = int(record.expires_at.timestamp())
    return data


def _record(row: Mapping[str, Any]) -> BackupRecord:
    fields = {name: plain(value) for name, value in row.items()
              if name in BackupRecord.model_fields}
    return BackupRecord.model_validate(fields)
