"""The one factory for boto3 clients.

botocore itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, so the local stack and
AWS differ only in environment. Clients are cached per process (Lambda reuses them warm).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

_CONFIG = Config(
    signature_version="s3v4",
    retries={"mode": "standard", "max_attempts": 5},
    s3={"addressing_style": "path"},
)


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    session = boto3.session.Session()
    return session.client(service, config=_CONFIG, endpoint_url=endpoint_url)  # type: ignore[call-overload]


def s3() -> S3Client:
    return client("s3")  # type: ignore[no-any-return]


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]


def stepfunctions() -> SFNClient:
    return client("stepfunctions")  # type: ignore[no-any-return]


def connections_api(endpoint_url: str | None = None) -> ApiGatewayManagementApiClient:
    return client("apigatewaymanagementapi", endpoint_url)  # type: ignore[no-any-return]


def reset_clients() -> None:
    """Forget cached clients (the local stack changes endpoints between test sessions)."""
    client.cache_clear()
