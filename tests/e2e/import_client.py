"""The import flow over HTTP, as a user's script drives it, and views of the database to check
what it did (snapshots compare every document exactly, BSON types included)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from pymongo.database import Database

from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.mongo import Document
from tests.e2e.api_client import Api

#: an account with nothing in the seeded database
EMPTY_USER = "66ad9b005f2b4a0012c0bbbb"
WAITING = {"awaiting_decision", "succeeded", "failed", "cancelled", "rolled_back"}
ENDED = {"succeeded", "failed", "cancelled", "rolled_back"}


@dataclass
class Importer:
    api: Api

    def create(self, filename: str = "package.zip", **body: Any) -> dict[str, Any]:
        answer = self.api.request("POST", "/imports", json={"filename": filename, **body})
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    @staticmethod
    def upload(created: dict[str, Any], content: bytes, filename: str = "package.zip") -> None:
        form = created["upload"]
        answer = requests.post(form["url"], data=form["fields"],
                               files={"file": (filename, content)}, timeout=30)
        assert answer.status_code in (200, 201, 204), answer.text

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.api.request("GET", f"/imports/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    def wait(self, job_id: str, until: set[str], timeout: float = 60) -> dict[str, Any]:
        # POST /execute answers once the job is running
        return self.wait_for(job_id, lambda job: job["status"] in until, timeout)

    def wait_for(self, job_id: str, condition: Callable[[dict[str, Any]], bool],
                 timeout: float = 60) -> dict[str, Any]:
        """The job once `condition` holds for its view."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if condition(job):
                return self.job(job_id)  # read again: moto may show a half-applied update
            if time.monotonic() > deadline:
                pytest.fail(f"import {job_id} still {job['status']} after {timeout} s: {job}")
            time.sleep(0.05)

    def validated(self, content: bytes, filename: str = "package.zip",
                  **body: Any) -> dict[str, Any]:
        """Create, upload, validate: the job as it awaits the decision (or failed)."""
        created = self.create(filename, **body)
        self.upload(created, content, filename)
        answer = self.api.request("POST", f"/imports/{created['jobId']}/validate")
        assert answer.status_code == 202, answer.text
        return self.wait(created["jobId"], WAITING)

    def decide(self, job_id: str, **decision: Any) -> dict[str, Any]:
        answer = self.api.request("POST", f"/imports/{job_id}/execute", json=decision)
        assert answer.status_code == 202, answer.text
        return self.wait(job_id, {"awaiting_decision"} if decision.get("dryRun") else ENDED)

    def run(self, content: bytes, filename: str = "package.zip",
            **decision: Any) -> dict[str, Any]:
        job = self.validated(content, filename)
        assert job["status"] == "awaiting_decision", job
        return self.decide(job["jobId"], **decision)

    def rollback(self, job_id: str) -> dict[str, Any]:
        answer = self.api.request("POST", f"/imports/{job_id}/rollback")
        assert answer.status_code == 202, answer.text
        return self.wait(job_id, {"rolled_back", "failed"})

    def pages(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every entry of a paged listing, following nextToken."""
        entries: list[dict[str, Any]] = []
        token = None
        while True:
            answer = self.api.request("GET", path, params={**params,
                                                           **({"nextToken": token} if token
                                                              else {})})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            entries.extend(page[key])
            token = page.get("nextToken")
            if not token:
                return entries


def snapshot(db: Database[Document]) -> dict[str, list[Document]]:
    """Every ClaudeLens document of the database, exactly, by collection."""
    names = [name for name in db.list_collection_names()
             if name in (PROJECTS, SESSIONS) or is_message_collection(name)]
    found = {name: sorted(db[name].find(), key=lambda doc: str(doc["_id"])) for name in names}
    return {name: docs for name, docs in found.items() if docs}


def messages_of(db: Database[Document], session_id: str) -> dict[str, Document]:
    """A session's messages by uuid, from every message collection."""
    found: dict[str, Document] = {}
    for name in db.list_collection_names():
        if is_message_collection(name):
            for doc in db[name].find({"sessionId": session_id}):
                found[doc["uuid"]] = doc
    return found
