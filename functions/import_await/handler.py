"""Import task (waitForTaskToken): keep the token the user's decision will answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.models.tasks import DecisionWait
from dataport.observability import logger
from dataport.workflows import imports


@logger.inject_lambda_context(log_event=False)  # the event carries the task token
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    imports.await_decision(DecisionWait.model_validate(event))
    return {}
