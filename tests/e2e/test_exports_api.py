"""The /exports routes over HTTP through the local REST gateway and the template's authorizer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from botocore.exceptions import ClientError

from dataport import aws
from dataport.jobs import keys
from dataport.jobs.dynamo import to_item
from dataport.jobs.store import JobStore
from dataport.settings import get_settings
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_dataset

DB_NAME = "dataport_api_tests"


dataset = seeded_dataset(DB_NAME, sessions_per_project=2)




def _history(api: Api) -> list[dict[str, object]]:
    answer = api.request("GET", "/exports", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    exports: list[dict[str, object]] = answer.json()["exports"]
    return exports


@pytest.mark.parametrize("authorization", [
    None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "ApiKey dpk_unknownkeyunknownkey",
])
def test_requests_without_a_valid_credential_get_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = api.request("GET", "/exports", headers={"Authorization": ""} | headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_an_expired_token_gets_401_and_starts_nothing(api: Api) -> None:
    now = int(time.time())
    expired = jwt.encode({"sub": api.user_id, "iat": now - 7200, "exp": now - 3600},
                         api.stack.jwt_secret, algorithm="HS256")
    answer = api.request("POST", "/exports", json={},
                         headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert _history(api) == []


def test_bad_requests_get_field_errors_and_create_no_job(api: Api) -> None:
    answer = api.request("POST", "/exports", json={
        "format": "xlsx", "options": {"splitSizeMb": 0},
        "filters": {"projectIds": ["nope"], "dateRange": {"start": "yesterday"}}})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    fields = {d["field"] for d in error["details"]}
    assert {"format", "options.splitSizeMb", "filters.projectIds.0",
            "filters.dateRange.start"} <= fields
    assert api.request("POST", "/exports", data="{not json",
                       headers={"Content-Type": "application/json"}).status_code == 400
    assert _history(api) == []


def test_an_export_runs_to_a_presigned_download(api: Api, tmp_path: Path) -> None:
    answer = api.request("POST", "/exports", json={"format": "csv"})
    assert answer.status_code == 202
    accepted = answer.json()
    assert accepted["status"] == "queued"
    assert accepted["links"]["self"] == f"/exports/{accepted['jobId']}"
    assert int(answer.headers["X-RateLimit-Remaining"]) == 9
    job = api.wait(accepted["jobId"])
    assert job["status"] == "succeeded"
    assert job["progress"]["percentage"] == 100.0
    assert job["counts"]["sessions"] > 0
    assert job["package"]["bytes"] > 0
    redirect = api.request("GET", f"/exports/{job['jobId']}/download")
    assert redirect.status_code == 302
    query = parse_qs(urlparse(redirect.headers["Location"]).query)
    assert int(query["X-Amz-Expires"][0]) <= 900
    assert query["response-content-disposition"][0].startswith("attachment; filename=")
    assert redirect.headers["Cache-Control"] == "no-store"
    assert api.download(job["jobId"], tmp_path / "package.zip").stat().st_size == \
        job["package"]["bytes"]


def test_another_users_job_is_exactly_like_a_missing_one(api: Api, intruder: Api) -> None:
    job_id = api.start_export()
    missing = "0" * 32
    for method, path in [("GET", "/exports/{}"), ("DELETE", "/exports/{}"),
                         ("GET", "/exports/{}/download")]:
        theirs = intruder.request(method, path.format(job_id))
        nobodys = intruder.request(method, path.format(missing))
        assert theirs.status_code == nobodys.status_code == 404
        assert theirs.json()["error"]["code"] == nobodys.json()["error"]["code"] == "not_found"
    assert job_id not in {e["jobId"] for e in _history(intruder)}
    assert api.wait(job_id)["status"] == "succeeded"  # untouched by the intruder's DELETE


def test_the_eleventh_export_in_an_hour_gets_429(api: Api, intruder: Api) -> None:
    for remaining in range(9, -1, -1):
        answer = api.request("POST", "/exports", json={"filters": {"sessionIds": ["none"]}})
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-RateLimit-Remaining"] == str(remaining)
    refused = api.request("POST", "/exports", json={})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["X-RateLimit-Limit"] == "10"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert len(_history(api)) == 10
    assert intruder.request("POST", "/exports", json={}).status_code == 202  # per user


def test_an_idempotency_key_returns_the_same_job(api: Api) -> None:
    body = {"format": "markdown"}
    first = api.request("POST", "/exports", json=body, headers={"Idempotency-Key": "k-1"})
    again = api.request("POST", "/exports", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"]
    assert len(_history(api)) == 1
    other = api.request("POST", "/exports", json={"format": "csv"},
                        headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_history_pages_newest_first_with_an_opaque_token(api: Api, intruder: Api) -> None:
    started = []
    for _ in range(3):
        started.append(api.start_export({"filters": {"sessionIds": ["none"]}}))
        time.sleep(0.01)
    first = api.request("GET", "/exports", params={"limit": 2}).json()
    assert [e["jobId"] for e in first["exports"]] == started[::-1][:2]
    second = api.request("GET", "/exports", params={"limit": 2,
                                                    "nextToken": first["nextToken"]}).json()
    assert [e["jobId"] for e in second["exports"]] == started[:1]
    stolen = intruder.request("GET", "/exports", params={"nextToken": first["nextToken"]})
    assert stolen.status_code == 400
    assert api.request("GET", "/exports", params={"limit": 0}).status_code == 400


def test_download_is_404_until_ready_and_410_once_deleted_or_expired(api: Api) -> None:
    job_id = api.start_export({"format": "json"})
    not_ready = api.request("GET", f"/exports/{job_id}/download")
    if api.job(job_id)["status"] != "succeeded":  # it may already have finished
        assert not_ready.status_code == 404
    assert api.wait(job_id)["status"] == "succeeded"

    _expire_package(api.stack, job_id)
    assert api.request("GET", f"/exports/{job_id}/download").status_code == 410

    deleted = api.request("DELETE", f"/exports/{job_id}")
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "deleted"
    assert api.request("GET", f"/exports/{job_id}/download").status_code == 410
    s3 = api.stack.client("s3")
    assert not [o for o in s3.list_objects_v2(Bucket=api.stack.bucket).get("Contents", [])
                if job_id in o["Key"]]


def _expire_package(stack: LocalStack, job_id: str) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    stack.client("dynamodb").update_item(
        TableName=stack.tables["JobsTable"],
        Key=to_item({"pk": keys.job_pk(job_id), "sk": keys.JOB_SK}),
        UpdateExpression="SET package.expires_at = :past",
        ExpressionAttributeValues=to_item({":past": past}))


def test_a_workflow_that_cannot_start_is_a_503_and_a_failed_job(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}},
                          "StartExecution")

    monkeypatch.setattr(aws, "stepfunctions",
                        lambda: SimpleNamespace(start_execution=refused))
    answer = api.request("POST", "/exports", json={"format": "json"})
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    error = answer.json()["error"]
    assert error["code"] == "transient"
    job = api.job(error["details"]["jobId"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "start_failed"

    monkeypatch.undo()  # the service is back: the failed start was not counted
    answer = api.request("POST", "/exports", json={"format": "json"})
    assert answer.status_code == 202, answer.text
    assert answer.headers["X-RateLimit-Remaining"] == str(get_settings().export_rate_limit - 1)


def test_an_unexpected_error_is_a_500_with_a_request_id_and_no_internals(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("connection string mongodb://admin:hunter2@db")

    monkeypatch.setattr(JobStore, "history", broken)
    answer = api.request("GET", "/exports")
    assert answer.status_code == 500, answer.text
    error = answer.json()["error"]
    assert error["code"] == "internal_error"
    assert error["details"]["requestId"]
    assert "hunter2" not in answer.text
