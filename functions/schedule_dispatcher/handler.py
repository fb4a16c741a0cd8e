"""EventBridge rule, every minute: claim and start the backup schedules due at the tick."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.observability import logger, metrics, tracer
from dataport.scheduling.dispatcher import event_time, run
from dataport.settings import get_mongo_settings, get_settings
from dataport.source.mongo import renews_credentials

get_settings()  # at cold start: a missing variable fails here, named, not mid-request
get_mongo_settings()  # does a user-scope run's owner still own data? (the URI: its secret)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers may hold credentials
@metrics.log_metrics
@renews_credentials  # a rotated password: read the secret again, retry (claims make it safe)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asdict(run(event_time(event), context))
