"""Crafted input through the real flow (issue 8, items 4 and 5): over HTTP and the WebSocket on
the local stack, into MongoDB with the real pymongo. Each answer is a 4xx or a failed import
with a code of its own; nothing of the attacker's is written and the database is unchanged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from pymongo.database import Database

from dataport.api.body import MAX_BODY_DEPTH
from dataport.models.imports import IssueCode
from dataport.progress.events import ErrorEvent
from dataport.source.mongo import Document
from dataport.source.staging import Staging
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, seeded_db
from tests.e2e.import_client import Importer, snapshot
from tests.imports.test_corpus import CASES

CORPUS = Path(__file__).parents[1] / "imports" / "corpus"
#: the corpus files of items 4 and 5: each must end the import before anything is written
CRAFTED = ["deep_first_line.jsonl", "content_object.jsonl", "text_block_object.jsonl",
           "dollar_field.json", "dotted_field.json", "nul_field_name.jsonl",
           "parent_cycle.jsonl", "self_parent.json", "year_one.json", "year_one_offset.jsonl",
           "far_future.csv", "duplicate_key.jsonl", "duplicate_key.json", "newline_uuid.jsonl",
           "newline_object_id.json"]


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_crafted", sessions_per_project=1) as db_:
        yield db_


@pytest.fixture
def api(fresh_stack: LocalStack) -> Api:
    return Api(fresh_stack, seed.DEMO_USER_ID)


def jobs_count(stack: LocalStack) -> int:
    count: int = stack.client("dynamodb").scan(TableName=stack.tables["JobsTable"],
                                               Select="COUNT")["Count"]
    return count


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------------------ item 4


def test_a_signed_token_whose_subject_ends_in_a_newline_is_a_401(api: Api) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": api.user_id + "\n", "iat": now, "exp": now + 600},
                       api.stack.jwt_secret, algorithm="HS256")
    for method, path in (("GET", "/exports"), ("POST", "/imports")):
        answer = api.request(method, path, json={"filename": "a.jsonl"},
                             headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthorized"
    assert jobs_count(api.stack) == 0


@pytest.mark.parametrize("depth", [5_000, MAX_BODY_DEPTH + 1])
@pytest.mark.parametrize("path", ["/imports", "/exports"])
def test_a_body_nested_too_deep_is_a_400_and_creates_nothing(api: Api, path: str,
                                                             depth: int) -> None:
    body = '{"filename": "a.jsonl", "options": ' + nested(depth - 1) + "}"
    answer = api.request("POST", path, data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "body_too_deep"
    assert jobs_count(api.stack) == 0


def test_a_websocket_frame_nested_too_deep_is_answered_with_its_code(api: Api) -> None:
    with ProgressSocket(api.stack.ws_url, api.stack.token_for(api.user_id)) as socket:
        socket.send('{"action": ' + nested(5_000) + "}")
        answer = socket.receive()
    assert isinstance(answer, ErrorEvent), answer
    assert answer.code == "body_too_deep"


# --------------------------------------------------------------------------- items 4 and 5


@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_upload_fails_validation_and_writes_nothing(
        name: str, db: Database[Document], api: Api) -> None:
    before = snapshot(db)
    importer = Importer(api)
    job = importer.validated((CORPUS / name).read_bytes(), name)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "invalid_upload"
    code, where = CASES[name]
    first = job["report"]["errors"][0]
    assert first["code"] == code.value != IssueCode.INTERNAL_ERROR.value, first
    assert {key: first[key] for key in where} == where
    assert snapshot(db) == before
    assert Staging(db, job["jobId"]).count() == 0
