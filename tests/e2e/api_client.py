"""A small HTTP client for the REST API on the local stack, as a user's script would use it."""

from __future__ import annotations

import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import requests
from pymongo import MongoClient, monitoring
from pymongo.database import Database

from dataport.jobs import keys
from dataport.settings import get_settings
from dataport.source import mongo
from dataport.source.mongo import Document, connect, reset
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.fixtures.moto_speed import TABLE_WRITES

TERMINAL = {"succeeded", "failed", "cancelled", "deleted"}


def job_row(stack: LocalStack, job_id: str) -> dict[str, Any]:
    """A job's row as DynamoDB holds it (attribute values typed: {"S": ...})."""
    item: dict[str, Any] = stack.client("dynamodb").get_item(
        TableName=stack.tables["JobsTable"],
        Key={"pk": {"S": keys.job_pk(job_id)}, "sk": {"S": keys.JOB_SK}})["Item"]
    return item


def table_text(stack: LocalStack, logical_id: str) -> str:
    """Every item of a table as one text, to search for what must not be there."""
    pages = stack.client("dynamodb").get_paginator("scan").paginate(
        TableName=stack.tables[logical_id])
    return json.dumps([item for page in pages for item in page["Items"]])


@dataclass
class Api:
    stack: LocalStack
    user_id: str
    admin: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return self.stack.auth_headers(self.user_id, admin=self.admin)

    def url(self, path: str) -> str:
        return f"{self.stack.rest_url}{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.url(path), headers=headers, timeout=30,
                                allow_redirects=False, **kwargs)

    def start_export(self, body: dict[str, Any] | None = None, **kwargs: Any) -> str:
        answer = self.request("POST", "/exports", json=body or {}, **kwargs)
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["jobId"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.request("GET", f"/exports/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def wait(self, job_id: str, *, until: set[str] | None = None,
             timeout: float = 60) -> dict[str, Any]:
        ends = until or TERMINAL
        deadline = time.monotonic() + timeout
        while True:
            # The row watched (a look that runs no API invocation, which would compete with
            # the job for this process), then the API read: moto applies an UpdateItem's SETs
            # one by one, so a read racing the final transition may see the new status before
            # its other fields; a read after the status was seen does not.
            seen = TABLE_WRITES.count
            if job_row(self.stack, job_id)["status"]["S"] in ends:
                job = self.job(job_id)
                if job["status"] in ends:
                    return job
            if time.monotonic() > deadline:
                job = self.job(job_id)
                pytest.fail(f"job {job_id} still {job['status']} after {timeout} s: {job}")
            time.sleep(0.05)  # at most 20 looks a second, and one only once a row changed
            TABLE_WRITES.wait_past(seen, 0.5)

    def download(self, job_id: str, target: Path) -> Path:
        answer = self.request("GET", f"/exports/{job_id}/download")
        assert answer.status_code == 302, answer.text
        with requests.get(answer.headers["Location"], stream=True, timeout=30) as package:
            package.raise_for_status()
            with target.open("wb") as file:
                for chunk in package.iter_content(1 << 20):
                    file.write(chunk)
        assert zipfile.is_zipfile(target)
        return target

    def export(self, tmp_path: Path, body: dict[str, Any] | None = None) -> Path:
        job_id = self.start_export(body)
        job = self.wait(job_id)
        assert job["status"] == "succeeded", job
        return self.download(job_id, tmp_path / f"{job_id}.zip")


@contextmanager
def seeded_database(monkeypatch: pytest.MonkeyPatch, stack: LocalStack, name: str,
                    **options: Any) -> Iterator[seed.SeedSummary]:
    """Point the functions at a database of their own, seeded; dropped afterwards."""
    db = connect(stack.mongo_uri, name)
    db.client.drop_database(name)
    summary = seed.seed(db, **options)
    monkeypatch.setenv("MONGODB_DATABASE", name)
    get_settings.cache_clear()
    reset()
    try:
        yield summary
    finally:
        db.client.drop_database(name)
        db.client.close()
        monkeypatch.undo()
        get_settings.cache_clear()
        reset()


def listen_to_mongodb(monkeypatch: pytest.MonkeyPatch,
                      listener: monitoring.CommandListener) -> None:
    """Every command the functions' MongoDB client sends from now on goes to `listener` (a new
    client, as after a cold start; the caller's monkeypatch undo and `reset` forget it)."""

    def client_for(uri: str) -> MongoClient[Document]:
        return MongoClient(uri, tz_aware=True, tzinfo=UTC, uuidRepresentation="standard",
                           appname="dataport", event_listeners=[listener])

    monkeypatch.setattr(mongo, "client_for", client_for)
    reset()


def seeded_dataset(name: str, **options: Any) -> Any:
    """A module's `dataset` fixture: the functions pointed at the seeded database `name` for
    the module's tests (`dataset = seeded_dataset(DB_NAME, sessions_per_project=2)`)."""
    @pytest.fixture(scope="module")
    def dataset(local_stack: LocalStack) -> Iterator[seed.SeedSummary]:
        with pytest.MonkeyPatch.context() as patch, seeded_database(
                patch, local_stack, name, **options) as summary:
            yield summary
    return dataset


# Shared through tests/conftest.py; `dataset` is the requesting module's own (seeded_dataset).
@pytest.fixture
def api(fresh_stack: LocalStack, dataset: seed.SeedSummary) -> Api:
    """The demo user's client, over the module's seeded data."""
    return Api(fresh_stack, seed.DEMO_USER_ID)


@pytest.fixture
def intruder(api: Api, dataset: seed.SeedSummary) -> Api:
    """Another seeded user, for isolation tests."""
    return Api(api.stack, next(u.user_id for u in dataset.users if u.user_id != api.user_id))


@contextmanager
def seeded_db(monkeypatch: pytest.MonkeyPatch, stack: LocalStack, prefix: str,
              **options: Any) -> Iterator[Database[Document]]:
    """A seeded database of a fresh name (`prefix` + random), connected, for one test."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with seeded_database(monkeypatch, stack, name, **options):
        database = connect(stack.mongo_uri, name)
        try:
            yield database
        finally:
            database.client.close()


def bucket_leftovers(stack: LocalStack, job_id: str) -> dict[str, list[str]]:
    """Objects and open multipart uploads a job still has in the packages bucket."""
    s3 = stack.client("s3")
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])
               if job_id in o["Key"]]
    uploads = [u["Key"] for u in s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
               if job_id in u["Key"]]
    return {"objects": objects, "uploads": uploads}


def backup_ended(api: Api, backup_id: str, timeout: float = 90) -> dict[str, Any]:
    """The backup once it is no longer pending or running (it runs on its own: a POST's, a
    scheduled run's)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.request("GET", f"/backups/{backup_id}")
        assert answer.status_code == 200, answer.text
        backup: dict[str, Any] = answer.json()
        if backup["status"] not in {"pending", "running"}:
            return backup
        assert time.monotonic() < deadline, backup
        time.sleep(0.2)
