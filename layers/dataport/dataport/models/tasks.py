"""Step Functions task input and output: small, typed, well under the 256 KB state limit."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from dataport.models.common import ApiModel


class JobRef(ApiModel):
    job_id: str


class ShardCursor(ApiModel):
    """One shard's position in the page loop: sessions after `after` (exclusive) up to `upto`
    (inclusive, None = to the end), `seq` the next staging file number, `done` when finished."""

    job_id: str
    shard: int = Field(ge=1)
    after: str | None = None
    upto: str | None = None
    seq: int = 0
    sessions: int = 0
    messages: int = 0
    bytes: int = 0
    done: bool = False


class ShardRef(ApiModel):
    """A shard's first input, as the Distributed Map lists it: the key of the object holding
    its first cursor (the worker reads it; Step Functions never carries the list), and the job
    (a failed shard records its reason on the job itself)."""

    job_id: str
    shard_key: str = Field(min_length=1, max_length=1024)


class ShardList(ApiModel):
    """Where the plan put the shards: one object each under `prefix`, listed by the Distributed
    Map's ItemReader, or (`key`) one object holding them all as a JSON array, read by the
    ItemReader's `s3:getObject` (a restore's: one write for any number of shards). Only this
    location travels in the state, never the list (256 KB)."""

    bucket: str
    prefix: str
    key: str | None = None


class ExportPlan(ApiModel):
    job_id: str
    shard_list: ShardList
    shards: int = Field(ge=1, description="how many shards (objects under shard_list.prefix)")
    concurrency: int = Field(ge=1, description="the Distributed Map's MaxConcurrency")


class TaskError(ApiModel):
    """What a Catch puts at $.error: the error name and the Lambda's JSON cause."""

    model_config = ApiModel.model_config | {"alias_generator": None, "extra": "ignore"}

    Error: str = "States.Runtime"
    Cause: str | None = None


class FailedTaskInput(ApiModel):
    job_id: str
    error: TaskError


class ImportStep(ApiModel):
    """The import workflow's state between tasks: which step runs next (the ASL's one router
    reads `next`), the mode (an import, or a rollback of one) and a page loop's cursor."""

    job_id: str
    mode: Literal["import", "rollback"] = "import"
    next: Literal["validate", "stage", "decide", "execute", "finalize", "rollback", "end",
                  "invalid"]
    dry_run: bool = False
    after: str | None = Field(default=None, description="last session (or journal entry) done "
                                                        "by the page loop")
    done: int = Field(default=0, description="sessions done so far (progress)")
    started_at: AwareDatetime | None = None
    invocations: int = Field(default=0, ge=0, description=(
        "page-loop invocations in this execution of the import pass machine: it hands over "
        "to a fresh one at its bound (import-pass.asl.json), which starts again at 0"))


class DecisionWait(ApiModel):
    """What the awaiting task gets: the token that the decision (or a cancel) will answer."""

    job_id: str
    task_token: str = Field(min_length=1, max_length=1024)


class ImportFailedInput(FailedTaskInput):
    mode: Literal["import", "rollback"] = "import"
    cleanup_failed: bool = Field(default=False, description="the clean-up failed too: only "
                                                            "end the job")


class RestoreShardsTask(ApiModel):
    """A task of an instance restore (restore.asl.json, dataport.workflows.restore_shards):
    `action` is what the task does; the plan answers with the shard list the Map reads (one
    object, a JSON array of `{jobId, records}`) and `mode` (restore, or rollback) for the
    Map's items."""

    action: Literal["plan", "plan_rollback", "shard_ended", "begin_rollback", "remove",
                    "finalize", "failed"]
    job_id: str
    mode: Literal["restore", "rollback"] = "restore"
    shard_list: ShardList | None = None
    concurrency: int = Field(default=1, ge=1)
    error: TaskError | None = None
    #: `shard_ended`: the shard that ended (`job_id` is its restore), and its records (the
    #: plan's count, from the Map's item)
    shard_id: str | None = None
    records: int | None = Field(default=None, ge=0)
    #: `remove`: done (`finalize`) or not yet (`remove` again); `after` the users done so far;
    #: `plan`: the split handed over (`plan` again, or `plan_on`: in a child execution);
    #: `failed` on a cancelled restore: `undo` (its shards rolled back, then finalize ends it
    #: cancelled) or `cancelled` (nothing to roll back: ended)
    next: Literal["remove", "finalize", "plan", "plan_on", "undo", "cancelled"] | None = None
    after: int = Field(default=0, ge=0)
    #: `remove`: invocations of the pass in this execution, and whether it is a child one
    #: (RemoveOn: the restore's own execution runs one, a child hands over after 1,000)
    invocations: int = Field(default=0, ge=0)
    child: bool = False
    #: `plan`: the plan's invocations so far (its state objects are numbered by it), and in
    #: this execution (a child execution goes on after `restore_plan_invocations`)
    split_at: int = Field(default=0, ge=0)
    planned: int = Field(default=0, ge=0)
