"""`Idempotency-Key` on the routes that start a job (POST /exports, POST /imports), with
Powertools idempotency over the IdempotencyTable.

The same key from the same user within 24 hours returns the job the first request made, without
counting against the rate limit again; the same key with another request is refused (422). What
is fingerprinted is the command `{userId, idempotencyKey, request, encrypted}`. A password stays
out of it (a hash of a password is a password verifier) and is passed beside it, so the same key
with another password returns the first job, sealed with the first password. Only the job id is
stored as the answer: what a route returns besides (an upload form is a credential) is made
afresh for a replay.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from pydantic import SecretStr

from dataport import aws
from dataport.jobs.rate_limit import RateLimitState
from dataport.settings import get_settings

#: records a job and starts it: `start(command=..., password=...)` -> {"jobId": ...}, which is
#: all idempotency stores
StartJob = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Started:
    job_id: str
    rate: RateLimitState | None  # None when an Idempotency-Key replayed the job


#: set by a start that really ran (a replay leaves it None)
_fresh_rate: ContextVar[RateLimitState | None] = ContextVar("fresh_rate", default=None)


def counted(rate: RateLimitState) -> None:
    """A start function's note that it ran and counted against the limit."""
    _fresh_rate.set(rate)


def start_once(start: StartJob, *, user_id: str, idempotency_key: str | None,
               request: dict[str, Any], password: SecretStr | None,
               lambda_context: Any = None) -> Started:
    """Run `start` unless this user's `idempotency_key` already did (then its job again)."""
    command = {"userId": user_id, "idempotencyKey": idempotency_key, "request": request,
               "encrypted": password is not None}
    _fresh_rate.set(None)
    if idempotency_key is None:
        result = start(command=command, password=password)
    else:
        if lambda_context is not None:
            _config().register_lambda_context(lambda_context)
        result = _idempotent(start)(command=command, password=password)
    return Started(job_id=str(result["jobId"]), rate=_fresh_rate.get())


@cache
def _config() -> IdempotencyConfig:
    return IdempotencyConfig(event_key_jmespath='["userId", "idempotencyKey"]',
                             payload_validation_jmespath="[request, encrypted]",
                             expires_after_seconds=24 * 3600)


@cache
def _idempotent(start: StartJob) -> StartJob:
    """Built on first use: the table name and client come from the environment at run time.
    Records are keyed by the function's qualified name too, so exports and imports never
    share one."""
    persistence = DynamoDBPersistenceLayer(table_name=get_settings().idempotency_table,
                                           boto3_client=aws.dynamodb())
    wrapped: StartJob = idempotent_function(
        data_keyword_argument="command", persistence_store=persistence,
        config=_config())(start)
    return wrapped
