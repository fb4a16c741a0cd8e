"""Import workflow Catch: undo half-written sessions, drop staging, mark the job failed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.models.tasks import ImportFailedInput
from dataport.observability import logger
from dataport.workflows import imports


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return imports.cleanup(ImportFailedInput.model_validate(event)).wire()
