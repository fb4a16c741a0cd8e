"""Import task: validate the upload; stage a clean one and compare it with the user's data."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.models.tasks import ImportStep
from dataport.observability import logger
from dataport.workflows import imports


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return imports.validate(ImportStep.model_validate(event)).wire()
