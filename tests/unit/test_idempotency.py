"""Idempotency-Key over (moto) DynamoDB: the typed command is fingerprinted without its
password, the start runs once per key, and a replay answers the same job with no rate (it
counted nothing), with nothing beside the answer but the job id stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from dataport import aws
from dataport.api.idempotency import StartCommand, Started, start_once
from dataport.jobs.rate_limit import RateLimitState
from dataport.models.exports import ExportRequest
from dataport.models.imports import ImportCreate
from dataport.settings import get_settings
from tests.fixtures.aws import create_table_like

USER = "66ad9b005f2b4a0012c0aaaa"
#: what Powertools reads of the Lambda context: the time left (for its in-progress expiry)
CONTEXT = SimpleNamespace(get_remaining_time_in_millis=lambda: 10_000)
STARTS: list[StartCommand[ImportCreate]] = []


def _start(*, command: StartCommand[ImportCreate]) -> Started:
    """Counts as a real start would, and says which start this was."""
    STARTS.append(command)
    rate = RateLimitState(user_id=command.user_id, kind="import", limit=5,
                          remaining=5 - len(STARTS), window_start=0, reset_at=3600)
    return Started(job_id=f"job-{len(STARTS)}", rate=rate)


@pytest.fixture
def idempotency_table(moto_aws: None) -> Iterator[str]:
    name = get_settings().idempotency_table
    create_table_like("IdempotencyTable", name)
    STARTS.clear()
    yield name
    STARTS.clear()


def _command(key: str | None, filename: str = "a.zip", password: str | None = None
             ) -> StartCommand[ImportCreate]:
    request = ImportCreate.model_validate({"filename": filename, "password": password})
    return StartCommand[ImportCreate](user_id=USER, idempotency_key=key, request=request)


def test_the_fingerprint_is_the_stored_request_without_the_password() -> None:
    request = ExportRequest.model_validate(
        {"format": "csv", "options": {"encryption": {"password": "correct horse"}}})
    command = StartCommand[ExportRequest](user_id=USER, idempotency_key="k", request=request)
    fingerprint = command.model_dump(mode="json")
    assert fingerprint == {"userId": USER, "idempotencyKey": "k", "request": request.stored(),
                           "encrypted": True}
    assert "correct horse" not in json.dumps(fingerprint)
    assert command.request.password is not None  # the logic still gets it, typed


@pytest.mark.usefixtures("idempotency_table")
def test_a_replay_returns_the_first_job_and_no_rate() -> None:
    first = start_once(_start, _command("k-1", password="one"), CONTEXT)
    assert first.job_id == "job-1"
    assert first.rate is not None
    assert first.rate.remaining == 4

    # the password is not fingerprinted: another one replays the first job
    again = start_once(_start, _command("k-1", password="another one"), CONTEXT)
    assert again == Started(job_id="job-1", rate=None)  # not counted again
    assert len(STARTS) == 1
    assert isinstance(STARTS[0].request, ImportCreate)  # the typed request reached the start

    other_key = start_once(_start, _command("k-2"), CONTEXT)
    assert (other_key.job_id, other_key.rate is not None) == ("job-2", True)


@pytest.mark.usefixtures("idempotency_table")
def test_without_a_key_every_request_starts_a_job() -> None:
    started = [start_once(_start, _command(None), CONTEXT).job_id for _ in range(2)]
    assert started == ["job-1", "job-2"]


def test_only_the_job_id_is_stored(idempotency_table: str) -> None:
    start_once(_start, _command("k-1", password="s3cret-pass"), CONTEXT)
    (record,) = aws.dynamodb().scan(TableName=idempotency_table)["Items"]
    assert json.loads(record["data"]["S"]) == {"jobId": "job-1"}
    assert "s3cret-pass" not in json.dumps(record)
