"""The one factory for boto3 clients.

botocore itself honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, so the local stack and
AWS differ only in environment. Clients are cached per process (Lambda reuses them warm).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config

from dataport.settings import get_settings

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

_CONFIG = Config(signature_version="s3v4", retries={"mode": "standard", "max_attempts": 5})
#: Posting to a WebSocket must never hold a job up: short timeouts, one retry (a 410 Gone is
#: final and never retried; throttling and 5xx are).
_CONNECTIONS_CONFIG = Config(connect_timeout=1, read_timeout=2,
                             retries={"mode": "standard", "total_max_attempts": 2})
#: botocore reads this itself; the local stack points it at its @connections endpoint.
CONNECTIONS_ENDPOINT_ENV = "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"


@cache
def _client(service: str, endpoint_url: str | None, config: Config) -> Any:
    session = boto3.session.Session()
    return session.client(service, config=config, endpoint_url=endpoint_url)  # type: ignore[call-overload]


def client(service: str, endpoint_url: str | None = None) -> Any:
    return _client(service, endpoint_url, _CONFIG)


@cache
def _s3_config(addressing_style: Literal["virtual", "path"]) -> Config:
    return _CONFIG.merge(Config(s3={"addressing_style": addressing_style}))


def s3() -> S3Client:
    """S3 with the settings' addressing style: virtual-hosted on AWS (path-style URLs are being
    retired), path-style for an endpoint on an IP address, where a bucket cannot be a host name
    (the local stack's 127.0.0.1)."""
    config = _s3_config(get_settings().s3_addressing_style)
    return _client("s3", None, config)  # type: ignore[no-any-return]


def dynamodb() -> DynamoDBClient:
    return client("dynamodb")  # type: ignore[no-any-return]


def stepfunctions() -> SFNClient:
    return client("stepfunctions")  # type: ignore[no-any-return]


def kms() -> KMSClient:
    return client("kms")  # type: ignore[no-any-return]


def connections_api() -> ApiGatewayManagementApiClient:
    """The WebSocket stage's @connections API: the one place its endpoint is decided.

    AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI wins when set (botocore applies it; the local
    gateway), else the stage's callback URL from the template (`websocket_callback_url`): this
    API has no regional default endpoint, every stage is its own.
    """
    endpoint = (None if os.environ.get(CONNECTIONS_ENDPOINT_ENV)
                else get_settings().websocket_callback_url)
    return _client("apigatewaymanagementapi", endpoint,  # type: ignore[no-any-return]
                   _CONNECTIONS_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (the local stack changes endpoints between test sessions)."""
    _client.cache_clear()
    _s3_config.cache_clear()
