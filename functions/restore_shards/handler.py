"""Tasks of a restore in shards (restore.asl.json): plan the shards (the backup split once),
count a shard that ended in the progress, begin a shard's rollback, remove what a full restore
of a split user removes, sum the shards up, or record a failure; `action` says which."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.heap import freezes_runtime
from dataport.models.tasks import RestoreShardsTask
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_mongo_settings, get_settings
from dataport.source.mongo import renews_credentials
from dataport.workflows import restore_shards

get_settings()  # at cold start: a missing variable fails here, named, not mid-request
get_mongo_settings()  # projects created once, the removal pass, finalize (the URI's secret)

_ACTIONS = {"plan_rollback": restore_shards.plan_rollback,
            "shard_ended": restore_shards.shard_ended,
            "finalize": restore_shards.finalize, "failed": restore_shards.failed}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@renews_credentials  # a rotated password: read the secret again, retry
@freezes_runtime  # the runtime's objects left out of the task's collections
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = RestoreShardsTask.model_validate(event)
    if task.action == "begin_rollback":
        return restore_shards.begin_rollback(task).wire()
    if task.action == "plan":
        return restore_shards.plan(task, context.get_remaining_time_in_millis).wire()
    if task.action == "remove":
        return restore_shards.remove(task, context.get_remaining_time_in_millis).wire()
    return _ACTIONS[task.action](task).wire()
