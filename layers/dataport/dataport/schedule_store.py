"""The schedule store: the only module that reads or writes the schedules table.

One table, two kinds of row under a schedule's partition `schedule#<id>`:
- `sk = "schedule"`: the schedule (`ScheduleRecord`), with `version` bumped by every write so a
  read-modify-write (PATCH) never overwrites what the dispatcher recorded meanwhile;
- `sk = "run#<due>"`: one run per due time a dispatcher claimed (`RunRecord`), kept
  `schedule_run_retention_days` (TTL on `expires_at`, epoch seconds; reads filter too).

Two sparse indexes: `by-owner` (`owner_pk`, `owner_sk` = created#id) lists a user's schedules
newest first; `due` (`due_shard`, `next_run_at`) holds only schedules that are not paused, in
`schedule_due_shards` partitions (a hash of the id), so the dispatcher's "due by now" query is
a handful of key-range reads however many schedules exist, and no partition is hot.

A run is claimed by one conditional write: the schedule's `next_run_at` moves from the due time
to the next one *on the condition that it still is the due time* (and the schedule is not
paused). Two dispatchers that read the same due schedule both try; exactly one write succeeds,
and only its dispatcher starts the backup and writes the run row `run#<due>`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from dataport import aws
from dataport.errors import Conflict
from dataport.jobs.dynamo import (
    decode_page_token,
    encode_page_token,
    from_item,
    is_conditional_failure,
    to_item,
)
from dataport.models.schedules import RunRecord, RunStatus, ScheduleRecord
from dataport.settings import get_settings

OWNER_INDEX = "by-owner"
DUE_INDEX = "due"
SCHEDULE_SK = "schedule"
_TIME = "%Y-%m-%dT%H:%M:%SZ"  # fixed width: string order is time order


class ScheduleChanged(Conflict):
    """The schedule was written by someone else since it was read (read again and retry)."""

    code = "schedule_changed"


def stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime(_TIME)


def unstamp(text: str) -> datetime:
    return datetime.strptime(text, _TIME).replace(tzinfo=UTC)


class ScheduleStore:
    def __init__(self, table: str | None = None) -> None:
        settings = get_settings()
        self.table = table or settings.schedules_table
        self.shards = settings.schedule_due_shards
        self.run_retention = timedelta(days=settings.schedule_run_retention_days)
        self.db = aws.dynamodb()

    # ------------------------------------------------------------------ schedules

    def create(self, record: ScheduleRecord) -> None:
        self.db.put_item(TableName=self.table, Item=to_item(self._row(record)),
                         ConditionExpression="attribute_not_exists(pk)")

    def get(self, schedule_id: str) -> ScheduleRecord | None:
        item = self.db.get_item(TableName=self.table, ConsistentRead=True,
                                Key=to_item(_key(schedule_id))).get("Item")
        return _record(from_item(item)) if item else None

    def replace(self, record: ScheduleRecord) -> ScheduleRecord:
        """Write `record` (read at `record.version`) as version + 1; ScheduleChanged when the
        stored one is no longer that version."""
        written = record.model_copy(update={"version": record.version + 1})
        try:
            self.db.put_item(TableName=self.table, Item=to_item(self._row(written)),
                             ConditionExpression="version = :read",
                             ExpressionAttributeValues=to_item({":read": record.version}))
        except ClientError as error:
            if is_conditional_failure(error):
                raise ScheduleChanged("The schedule changed while this request was handled; "
                                      "send it again.") from error
            raise
        return written

    def delete(self, schedule_id: str, owner_id: str) -> bool:
        """Delete the owner's schedule (its runs lapse by TTL); False when there is none."""
        try:
            self.db.delete_item(TableName=self.table, Key=to_item(_key(schedule_id)),
                                ConditionExpression="owner_id = :me",
                                ExpressionAttributeValues=to_item({":me": owner_id}))
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def of_owner(self, owner_id: str, limit: int,
                 next_token: str | None) -> tuple[list[ScheduleRecord], str | None]:
        """The owner's schedules, newest first; the token is checked to be the caller's."""
        owner_pk = _owner_pk(owner_id)
        query: dict[str, Any] = {
            "TableName": self.table, "IndexName": OWNER_INDEX, "Limit": limit,
            "KeyConditionExpression": "owner_pk = :me", "ScanIndexForward": False,
            "ExpressionAttributeValues": to_item({":me": owner_pk})}
        if next_token:
            query["ExclusiveStartKey"] = decode_page_token(next_token, "owner_pk", owner_pk)
        answer = self.db.query(**query)
        records = [_record(from_item(item)) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return records, (encode_page_token(last) if last else None)

    def all_schedules(self) -> Iterator[ScheduleRecord]:
        """Every schedule, paused ones too (the retention sweep), a page at a time."""
        pages = self.db.get_paginator("scan").paginate(
            TableName=self.table, FilterExpression="sk = :schedule",
            ExpressionAttributeValues=to_item({":schedule": SCHEDULE_SK}))
        for page in pages:
            for item in page.get("Items", []):
                yield _record(from_item(item))

    # ------------------------------------------------------------------ the dispatcher

    def due(self, shard: int, now: datetime) -> Iterator[ScheduleRecord]:
        """Schedules of one shard due at or before `now`, earliest first (the index is
        eventually consistent: the claim checks the row itself)."""
        pages = self.db.get_paginator("query").paginate(
            TableName=self.table, IndexName=DUE_INDEX,
            KeyConditionExpression="due_shard = :shard AND next_run_at <= :now",
            ExpressionAttributeValues=to_item({":shard": _shard_key(shard),
                                               ":now": stamp(now)}))
        for page in pages:
            for item in page.get("Items", []):
                yield _record(from_item(item))

    def claim(self, record: ScheduleRecord, due: datetime, next_run_at: datetime) -> bool:
        """Take the run due at `due`: one conditional write moves next_run_at from `due` to
        `next_run_at` (and notes the claim in `claimed_due`). False when another dispatcher
        took it, or the schedule was paused, changed or deleted since it was read."""
        try:
            self.db.update_item(
                TableName=self.table, Key=to_item(_key(record.schedule_id)),
                UpdateExpression="SET next_run_at = :next, claimed_due = :due, "
                                 "version = version + :one",
                ConditionExpression="next_run_at = :due AND paused = :no",
                ExpressionAttributeValues=to_item({
                    ":next": stamp(next_run_at), ":due": stamp(due), ":one": 1, ":no": False}))
        except ClientError as error:
            if is_conditional_failure(error):
                return False
            raise
        return True

    def record_run(self, run: RunRecord) -> None:
        """The claimed run and its outcome (only its claimant writes it)."""
        self.db.put_item(TableName=self.table, Item=to_item(self._run_row(run)))

    def record_chain(self, schedule_id: str, *, active_backup_id: str | None,
                     active_backup_type: str | None, chain_head_id: str | None,
                     chain_runs: int) -> None:
        """What the next run needs to know: the backup in flight (overlap) and the chain being
        built (a new chain asked for is begun: `new_chain` goes). A schedule deleted meanwhile
        stays deleted."""
        names = {"#active": "active_backup_id", "#kind": "active_backup_type",
                 "#head": "chain_head_id", "#new": "new_chain"}
        sets, removes = ["chain_runs = :runs", "version = version + :one"], ["#new"]
        values: dict[str, object] = {
            ":runs": chain_runs, ":one": 1}
        for name, value in (("#active", active_backup_id), ("#kind", active_backup_type),
                            ("#head", chain_head_id)):
            if value is None:
                removes.append(name)
            else:
                sets.append(f"{name} = :{name[1:]}")
                values[f":{name[1:]}"] = value
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes)
                                                 if removes else "")
        try:
            self.db.update_item(TableName=self.table, Key=to_item(_key(schedule_id)),
                                UpdateExpression=expression, ExpressionAttributeNames=names,
                                ConditionExpression="attribute_exists(pk)",
                                ExpressionAttributeValues=to_item(values))
        except ClientError as error:
            if not is_conditional_failure(error):
                raise

    def runs(self, schedule_id: str, limit: int, now: datetime) -> list[RunRecord]:
        """The schedule's latest runs, newest first."""
        answer = self.db.query(
            TableName=self.table, ScanIndexForward=False, Limit=limit,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
            ExpressionAttributeValues=to_item({":pk": _pk(schedule_id), ":run": "run#"}))
        expiry = int(now.timestamp())
        return [_run(row) for row in map(from_item, answer.get("Items", []))
                if int(row.get("expires_at", expiry + 1)) > expiry]

    # ------------------------------------------------------------------ rows

    def _row(self, record: ScheduleRecord) -> dict[str, Any]:
        row = {**_key(record.schedule_id), **record.model_dump(mode="json", exclude_none=True)}
        row.pop("filters", None)
        if record.filters is not None:
            row["filters"] = json.dumps(record.filters, sort_keys=True)
        for name in ("created_at", "updated_at", "anchor", "next_run_at", "claimed_due"):
            value = getattr(record, name)
            if value is not None:
                row[name] = stamp(value)
        row["owner_pk"] = _owner_pk(record.owner_id)
        row["owner_sk"] = f"{stamp(record.created_at)}#{record.schedule_id}"
        if not record.paused and record.next_run_at is not None:  # in the due index
            row["due_shard"] = _shard_key(_shard_of(record.schedule_id, self.shards))
        return row

    def _run_row(self, run: RunRecord) -> dict[str, Any]:
        row = {"pk": _pk(run.schedule_id), "sk": f"run#{stamp(run.due_at)}",
               **run.model_dump(mode="json", exclude_none=True)}
        for name in ("due_at", "slot", "fired_at"):
            row[name] = stamp(getattr(run, name))
        row["expires_at"] = int((run.fired_at + self.run_retention).timestamp())
        return row


def _pk(schedule_id: str) -> str:
    return f"schedule#{schedule_id}"


def _key(schedule_id: str) -> dict[str, str]:
    return {"pk": _pk(schedule_id), "sk": SCHEDULE_SK}


def _owner_pk(owner_id: str) -> str:
    return f"owner#{owner_id}"


def _shard_of(schedule_id: str, shards: int) -> int:
    return int(hashlib.sha256(schedule_id.encode()).hexdigest()[:8], 16) % shards


def _shard_key(shard: int) -> str:
    return f"due#{shard:03d}"


def _record(row: Mapping[str, Any]) -> ScheduleRecord:
    fields = {k: v for k, v in row.items()
              if k in ScheduleRecord.model_fields and k != "filters"}
    for name in ("created_at", "updated_at", "anchor", "next_run_at", "claimed_due"):
        if name in fields:
            fields[name] = unstamp(fields[name])
    for name in ("version", "full_every", "keep_last", "keep_days", "chain_runs"):
        if name in fields:
            fields[name] = int(fields[name])
    filters = json.loads(row["filters"]) if row.get("filters") else None
    return ScheduleRecord(**fields, filters=filters)


def _run(row: Mapping[str, Any]) -> RunRecord:
    fields = {k: v for k, v in row.items() if k in RunRecord.model_fields}
    for name in ("due_at", "slot", "fired_at"):
        fields[name] = unstamp(fields[name])
    fields["missed"] = int(fields.get("missed", 0))
    fields["status"] = RunStatus(fields["status"])
    return RunRecord(**fields)

