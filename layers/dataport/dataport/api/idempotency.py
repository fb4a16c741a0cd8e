"""`Idempotency-Key` on the routes that start a job (POST /exports, POST /imports), with
Powertools idempotency over the IdempotencyTable.

The same key from the same user within 24 hours returns the job the first request made, without
counting against the rate limit again; the same key with another request is refused (422). What
is fingerprinted is the command `{userId, idempotencyKey, request, encrypted}`, the request as
its job row keeps it: a password stays out of it (a hash of a password is a password verifier),
so the same key with another password returns the first job, sealed with the first password.
Only the job id is stored as the answer: the rate-limit state belongs to the request that
counted, and what a route returns besides (an upload form is a credential) is made afresh for a
replay.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (
    PydanticSerializer,
)
from pydantic import BaseModel, ConfigDict, Field, model_serializer

from dataport.jobs.idempotency import persistence_layer
from dataport.jobs.rate_limit import RateLimitState
from dataport.models.backups import BackupRequest
from dataport.models.exports import ExportRequest
from dataport.models.imports import ImportCreate
from dataport.models.jobs import Job
from dataport.models.restores import RestoreRequest

#: the requests that start a job
RequestT = TypeVar("RequestT", ExportRequest, ImportCreate, BackupRequest, RestoreRequest)


class StartCommand(BaseModel, Generic[RequestT]):
    """A user's request to start a job, under an Idempotency-Key or none."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    idempotency_key: str | None
    request: RequestT

    @model_serializer
    def fingerprint(self) -> dict[str, Any]:
        """What Powertools hashes (key: userId and idempotencyKey; payload: the rest), in the
        shape earlier releases stored, so their records still match."""
        return {"userId": self.user_id, "idempotencyKey": self.idempotency_key,
                "request": self.request.stored(), "encrypted": self.request.password is not None}


class Started(BaseModel):
    """What starting a job answers; `rate` is None when an Idempotency-Key replayed the job."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    job_id: str = Field(alias="jobId")
    rate: RateLimitState | None = None
    #: the job as the start recorded it (None on a replay, which reads it): what the answer
    #: shows, without reading back a row the workflow may already have moved on
    job: Job | None = None

    @model_serializer
    def stored(self) -> dict[str, Any]:
        """The idempotency record's answer: the job id only. A replay reads back no rate,
        which is true: it counted nothing."""
        return {"jobId": self.job_id}


class StartJob(Hashable, Protocol[RequestT]):
    """Counts against the rate limit, records a job and starts it (a module's function)."""

    def __call__(self, *, command: StartCommand[RequestT]) -> Started: ...


def start_once(start: StartJob[RequestT], command: StartCommand[RequestT],
               lambda_context: Any = None) -> Started:
    """Run `start` unless this user's idempotency key already did (then its job again)."""
    if command.idempotency_key is None:
        return start(command=command)
    if lambda_context is not None:
        _config().register_lambda_context(lambda_context)
    started: Started = _idempotent(start)(command=command)
    return started


@cache
def _config() -> IdempotencyConfig:
    return IdempotencyConfig(event_key_jmespath='["userId", "idempotencyKey"]',
                             payload_validation_jmespath="[request, encrypted]",
                             expires_after_seconds=24 * 3600)


@cache
def _idempotent(start: StartJob[Any]) -> StartJob[Any]:
    """Built on first use: the table name and client come from the environment at run time.
    Records are keyed by the function's qualified name too, so exports and imports never
    share one."""
    wrapped: StartJob[Any] = idempotent_function(
        data_keyword_argument="command", persistence_store=persistence_layer(), config=_config(),
        output_serializer=PydanticSerializer(Started))(start)
    return wrapped
