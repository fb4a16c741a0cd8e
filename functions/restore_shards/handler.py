"""Instance restore tasks (restore.asl.json): plan the shards (one restore per user), count a
shard that ended in the progress, begin a shard's rollback, sum the shards up, or record a
failure; `action` says which."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.models.tasks import RestoreShardsTask
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings
from dataport.workflows import restore_shards

get_settings()  # at cold start: a missing variable fails here, named, not mid-request

_ACTIONS = {"plan": restore_shards.plan, "plan_rollback": restore_shards.plan_rollback,
            "shard_ended": restore_shards.shard_ended,
            "finalize": restore_shards.finalize, "failed": restore_shards.failed}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = RestoreShardsTask.model_validate(event)
    if task.action == "begin_rollback":
        return restore_shards.begin_rollback(task).wire()
    return _ACTIONS[task.action](task).wire()
