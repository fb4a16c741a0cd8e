"""REST API Lambda authorizer (REQUEST type, identity source: the Authorization header).

Thin by design: find the header, let `dataport.auth` decide, answer with an IAM policy. The
policy allows the whole stage (`.../<stage>/*/*`), not just the called method, because API
Gateway caches the answer per identity and reuses it for every route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
    HttpVerb,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from dataport.auth import authenticate_header
from dataport.errors import Unauthorized
from dataport.observability import logger

AUTHORIZATION = "authorization"


def authorization_header(event: Mapping[str, Any]) -> str | None:
    """The Authorization header, whatever its letter case, from `headers` or `multiValueHeaders`.

    Several Authorization values make the request ambiguous: it is refused rather than guessed.
    """
    values: list[str] = []
    for name, value in (event.get("multiValueHeaders") or {}).items():
        if name.lower() == AUTHORIZATION and value:
            values.extend(v for v in value if v is not None)
    if not values:
        for name, value in (event.get("headers") or {}).items():
            if name.lower() == AUTHORIZATION and value is not None:
                values.append(value)
    if len(set(values)) > 1:
        raise Unauthorized("Several Authorization headers were sent")
    return values[0] if values else None


@logger.inject_lambda_context(log_event=False)  # the event carries the credential: never log it
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Allow the caller on the whole stage, or raise "Unauthorized" (API Gateway answers 401)."""
    request = APIGatewayAuthorizerRequestEvent(event)
    try:
        principal = authenticate_header(authorization_header(event))
    except Unauthorized as exc:
        logger.info("Request denied", extra={"reason": exc.message})
        raise Exception("Unauthorized") from None  # the exact text API Gateway maps to 401

    arn = request.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id=principal.user_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        partition=arn.partition,
        context={"userId": principal.user_id, "authMethod": principal.method},
    )
    policy.allow_all_routes(HttpVerb.ALL.value)  # arn:...:<api>/<stage>/*/*
    logger.info("Request allowed", extra={"user_id": principal.user_id, "method": principal.method})
    return policy.asdict()
