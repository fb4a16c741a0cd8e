"""Backup files uploaded for a restore: one row each in the jobs table (jobs.keys), owned by
one user, from the multipart upload's creation to its completion (then pinned: its ETag and
size). Rows expire with the upload's objects (the `expire-restore-uploads` lifecycle rule)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import AwareDatetime

from dataport import aws
from dataport.errors import Conflict, NotFound
from dataport.jobs import keys
from dataport.jobs.dynamo import from_item, is_conditional_failure, to_item
from dataport.models.common import ApiModel
from dataport.models.job_common import UploadPin
from dataport.settings import get_settings

#: how long an upload (and its row) is kept: long enough to upload 50 GB and restore it
UPLOAD_DAYS = 7


class RestoreUpload(ApiModel):
    upload_id: str
    user_id: str
    key: str
    s3_upload_id: str  # internal: never shown (it names the multipart upload)
    size: int
    part_size: int
    parts: int
    status: Literal["uploading", "completed"] = "uploading"
    pin: UploadPin | None = None
    created_at: AwareDatetime
    expires_at: int


class RestoreUploads:
    def __init__(self, table: str | None = None) -> None:
        self.table = table or get_settings().jobs_table
        self.db = aws.dynamodb()

    def create(self, upload: RestoreUpload) -> RestoreUpload:
        self.db.put_item(TableName=self.table, Item=to_item(_row(upload)),
                         ConditionExpression="attribute_not_exists(pk)")
        return upload

    def get(self, upload_id: str, user_id: str) -> RestoreUpload:
        """The caller's upload; another user's, or an expired one, is not found."""
        item = self.db.get_item(TableName=self.table, ConsistentRead=True, Key=to_item(
            {"pk": keys.upload_pk(upload_id), "sk": keys.RESTORE_UPLOAD_SK})).get("Item")
        upload = _upload(from_item(item)) if item else None
        if (upload is None or upload.user_id != user_id
                or upload.expires_at <= int(datetime.now(UTC).timestamp())):
            raise NotFound(f"No restore upload {upload_id} was found for this account.")
        return upload

    def complete(self, upload_id: str, pin: UploadPin) -> RestoreUpload:
        """uploading -> completed, pinned."""
        try:
            answer = self.db.update_item(
                TableName=self.table,
                Key=to_item({"pk": keys.upload_pk(upload_id), "sk": keys.RESTORE_UPLOAD_SK}),
                UpdateExpression="SET #status = :done, pin = :pin",
                ConditionExpression="#status = :uploading",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":done": "completed", ":uploading": "uploading",
                                                   ":pin": pin.model_dump(mode="json")}),
                ReturnValues="ALL_NEW")
        except ClientError as error:
            if is_conditional_failure(error):
                raise Conflict(f"Restore upload {upload_id} is completed already.") from error
            raise
        return _upload(from_item(answer["Attributes"]))

    def forget(self, upload_id: str) -> None:
        """An aborted upload's row deleted, while it is still uploading (a completion that
        won the race keeps it: 409)."""
        try:
            self.db.delete_item(
                TableName=self.table,
                Key=to_item({"pk": keys.upload_pk(upload_id), "sk": keys.RESTORE_UPLOAD_SK}),
                ConditionExpression="#status = :uploading",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":uploading": "uploading"}))
        except ClientError as error:
            if is_conditional_failure(error):
                raise Conflict(f"Restore upload {upload_id} was completed meanwhile.",
                               details={"code": "upload_completed"}) from error
            raise


def new_expiry(now: datetime) -> int:
    return int((now + timedelta(days=UPLOAD_DAYS)).timestamp())


def _row(upload: RestoreUpload) -> dict[str, Any]:
    return {"pk": keys.upload_pk(upload.upload_id), "sk": keys.RESTORE_UPLOAD_SK,
            **upload.model_dump(mode="json", exclude_none=True)}


def _upload(row: dict[str, Any]) -> RestoreUpload:
    data: dict[str, Any] = {k: (int(v) if k in ("size", "part_size", "parts", "expires_at")
                                else v) for k, v in row.items() if k not in ("pk", "sk")}
    pin = data.get("pin")
    if isinstance(pin, dict):
        data["pin"] = {**pin, "bytes": int(pin["bytes"])}
    return RestoreUpload.model_validate(data)
