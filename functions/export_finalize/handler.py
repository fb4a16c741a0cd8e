"""Export task: assemble the package from the staged files and mark the job succeeded."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.heap import freezes_runtime
from dataport.models.tasks import JobRef
from dataport.observability import logger, metrics, tracer
from dataport.settings import get_settings
from dataport.workflows import export

get_settings()  # at cold start: a missing variable fails here, named, not mid-request


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
@freezes_runtime  # the runtime's objects left out of the task's collections
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return export.finalize(JobRef.model_validate(event)).wire()
