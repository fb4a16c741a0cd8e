"""A rotated MongoDB password works without a redeploy or a restart: the functions read the URI
from its secret, and when the database refuses the credentials they read it again.

The database here checks passwords (the embedded server with a password file, SASL PLAIN). The
rotation is what an operator or a rotation function does: change the password on the database,
put the new URI into the secret. The server restarts to make it (dropping every connection, as
a failover would), so the functions' client must open new ones with the old password.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities import parameters

from dataport.source import mongo
from infrastructure.local import mongo_server, seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api

DB_NAME = "dataport_rotation"


class Database:
    """A password-checking embedded server whose password and URI can be rotated."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.password_file = workdir / "password"
        self.password_file.write_text("first-password")
        self.server = mongo_server.start(workdir / "mongo", password_file=self.password_file)

    @property
    def uri(self) -> str:
        return mongo_server.plain_uri(self.server.port, self.password_file.read_text())

    def rotate(self, password: str) -> None:
        self.password_file.write_text(password)
        port = self.server.port
        self.server.stop()
        self.server = mongo_server.start(self.workdir / "mongo", port=port,
                                         password_file=self.password_file)


@pytest.fixture
def database(fresh_stack: LocalStack, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The functions' secret points at a password-checking database, seeded, for this test."""
    database = Database(tmp_path)
    secrets = fresh_stack.client("secretsmanager")
    secret = os.environ["MONGODB_URI_SECRET"]
    try:
        db = mongo.connect(database.uri, DB_NAME)
        seed.seed(db, sessions_per_project=1)
        db.client.close()
        secrets.put_secret_value(SecretId=secret, SecretString=database.uri)
        monkeypatch.setenv("MONGODB_DATABASE", DB_NAME)
        mongo.reset()  # a cold start: the URI is read from the secret on first use
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        yield database
    finally:
        secrets.put_secret_value(SecretId=secret, SecretString=fresh_stack.mongo_uri)
        monkeypatch.undo()
        mongo.reset()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        database.server.stop()


def _task_outcomes(stack: LocalStack, job_id: str) -> list[str]:
    """How the export's task attempts ended, in order (Plan's first): an error name or "ok"."""
    arn = stack.state_machines["ExportStateMachine"].replace(":stateMachine:", ":execution:")
    outcomes = []
    for event in stack.execution_history(f"{arn}:{job_id}"):
        if event["type"] == "TaskFailed":
            outcomes.append(json.loads(event["taskFailedEventDetails"]["cause"])["errorType"])
        elif event["type"] == "TaskSucceeded":
            outcomes.append("ok")
    return outcomes


def test_an_export_after_a_password_rotation_works_without_a_restart(
        database: Database, fresh_stack: LocalStack) -> None:
    api = Api(fresh_stack, seed.DEMO_USER_ID)
    before = api.wait(api.start_export({"format": "json"}))
    assert before["status"] == "succeeded", before

    database.rotate("second-password")
    fresh_stack.client("secretsmanager").put_secret_value(
        SecretId=os.environ["MONGODB_URI_SECRET"], SecretString=database.uri)

    job_id = api.start_export({"format": "json"})
    after = api.wait(job_id)
    assert after["status"] == "succeeded", after
    # the stale client was refused once, the secret read again, the retry used the new URI
    assert _task_outcomes(fresh_stack, job_id)[:2] == ["TransientError", "ok"]


def test_a_password_that_the_secret_does_not_fix_fails_the_job_plainly(
        database: Database, fresh_stack: LocalStack) -> None:
    api = Api(fresh_stack, seed.DEMO_USER_ID)
    database.rotate("changed-on-the-database-only")  # the secret still holds the old URI

    job = api.wait(api.start_export({"format": "json"}))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "database_refused"
    assert "MONGODB_URI_SECRET" in job["error"]["message"]
    assert "first-password" not in json.dumps(job)  # the URI is never echoed
