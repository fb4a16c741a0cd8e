"""Step Functions task input and output: small, typed, well under the 256 KB state limit."""

from __future__ import annotations

from pydantic import Field

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


class ExportPlan(ApiModel):
    job_id: str
    shards: list[ShardCursor]


class TaskError(ApiModel):
    """What a Catch puts at $.error: the error name and the Lambda's JSON cause."""

    model_config = ApiModel.model_config | {"alias_generator": None, "extra": "ignore"}

    Error: str = "States.Runtime"
    Cause: str | None = None


class FailedTaskInput(ApiModel):
    job_id: str
    error: TaskError
