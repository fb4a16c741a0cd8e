"""`dataport backups`, `restores` and `schedules` against the local stack over real HTTP and
WebSocket: a backup made live, listed, verified, downloaded to a file whose size and SHA-256 are
the catalog's, restored dry then for real, rolled back, deleted; schedules paused and resumed;
the documented exit codes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

from dataport.source.collections import SESSIONS
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.client.cli_runner import dataport
from tests.client.conftest import DB_NAME

MISSING = "0" * 32


@dataclass
class LostSession:
    sessions: Collection[dict[str, Any]]
    session_id: Any

    def present(self) -> bool:
        return self.sessions.find_one({"sessionId": self.session_id}) is not None


@contextmanager
def _one_session_lost(stack: LocalStack) -> Iterator[LostSession]:
    """One of the demo user's session documents gone for the block, put back after it (the
    seeded database is shared by the package's tests)."""
    db = connect(stack.mongo_uri, DB_NAME)
    try:
        user = ObjectId(seed.DEMO_USER_ID)
        projects = [p["_id"] for p in db["projects"].find({"user_id": user})]
        sessions = db[SESSIONS]
        document = sessions.find_one({"projectId": {"$in": projects}})
        assert document is not None
        sessions.delete_one({"_id": document["_id"]})
        try:
            yield LostSession(sessions, document["sessionId"])
        finally:
            sessions.delete_many({"sessionId": document["sessionId"]})
            sessions.insert_one(document)
    finally:
        db.client.close()


def test_backup_lifecycle_create_verify_download_restore_rollback(
        env: dict[str, str], stack: LocalStack, tmp_path: Path,
        dataset: seed.SeedSummary) -> None:
    made = dataport(env, "--json", "backups", "create", "--name", "cli full", "--wait")
    assert made.code == 0, made.err
    backup = made.json()  # --json: one document (the backup), no bars
    backup_id = backup["backupId"]
    assert backup["status"] == "completed"
    assert backup["counts"]["sessions"] > 0
    assert backup["sizes"]["stored"] > 0

    listed = dataport(env, "backups", "list", "--json")
    assert [b["backupId"] for b in listed.json()["backups"]] == [backup_id]
    human = dataport(env, "backups", "show", backup_id)
    assert human.code == 0, human.err
    assert backup["sha256"] in human.out
    shown = dataport(env, "--json", "backups", "show", backup_id).json()
    assert shown["sha256"] == backup["sha256"]

    verified = dataport(env, "--json", "backups", "verify", backup_id)
    assert verified.code == 0, verified.err
    assert verified.json()["ok"] is True
    assert verified.json()["sha256"] == shown["sha256"]
    # a verification job (a large backup, or --background): waited for, the same report
    in_job = dataport(env, "--json", "backups", "verify", backup_id, "--background")
    assert in_job.code == 0, in_job.err
    assert (in_job.json()["ok"], in_job.json()["sha256"]) == (True, shown["sha256"])
    assert in_job.json()["members"] == verified.json()["members"]
    assert in_job.json()["jobId"]
    left = dataport(env, "--json", "backups", "verify", backup_id, "--background", "--no-wait")
    assert left.code == 0, left.err
    assert left.json()["verification"]["status"] == "running"
    stopped = dataport(env, "--json", "backups", "verify", backup_id, "--cancel")
    if stopped.code == 0:  # cancelled while it ran: the backup's own status is untouched
        assert stopped.json()["verification"]["status"] == "cancelled"
        assert stopped.json()["status"] == "completed"
    else:  # a small backup's job may end first: nothing left to cancel (409)
        assert (stopped.code, "409" in stopped.err) == (1, True), stopped.err

    target = tmp_path / "backups"
    fetched = dataport(env, "--json", "backups", "download", backup_id, "-o", f"{target}/")
    assert fetched.code == 0, fetched.err
    path = Path(fetched.json()["path"])
    assert path.parent == target
    assert path.stat().st_size == shown["sizes"]["stored"] == fetched.json()["bytes"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == shown["sha256"]
    assert not list(target.glob("*.part"))

    dry = dataport(env, "--json", "backups", "restore", backup_id, "--dry-run")
    assert dry.code == 0, dry.err
    planned = dry.json()
    assert planned["status"] == "succeeded"
    assert planned["dryRun"]["dryRun"] is True
    assert planned["dryRun"]["sessions"]["unchanged"] == backup["counts"]["sessions"]

    refused = dataport(env, "--json", "backups", "restore", backup_id)
    assert refused.code == 2  # no --yes and no terminal to ask on: nothing started
    assert "--yes" in refused.err
    assert len(dataport(env, "--json", "restores", "list").json()["restores"]) == 1

    with _one_session_lost(stack) as lost:  # something for the restore to write
        restored = dataport(env, "--json", "backups", "restore", backup_id, "--mode", "merge",
                            "--conflicts", "overwrite", "--yes")
        assert restored.code == 0, restored.err
        job = restored.json()
        assert job["status"] == "succeeded"
        assert job["chain"] == [backup_id]
        assert job["outcome"]["sessions"]["inserted"] == 1
        assert lost.present()  # back
        history = dataport(env, "--json", "restores", "list").json()["restores"]
        assert [r["jobId"] for r in history] == [job["jobId"], planned["jobId"]]
        assert dataport(env, "restores", "show", job["jobId"]).code == 0

        finished = dataport(env, "--json", "restores", "cancel", job["jobId"])
        assert finished.code == 1  # 409: a finished restore is rolled back, not cancelled
        assert "rollback" in finished.err
        assert lost.present()  # still restored

        undone = dataport(env, "--json", "restores", "rollback", job["jobId"])
        assert undone.code == 0, undone.err
        assert undone.json()["status"] == "rolled_back"
        assert not lost.present()  # as before the restore

    deleted = dataport(env, "--json", "backups", "delete", backup_id)
    assert (deleted.code, deleted.json()["status"]) == (0, "deleted")
    assert dataport(env, "backups", "show", backup_id).code == 4


def test_schedules_create_pause_resume_delete(env: dict[str, str]) -> None:
    made = dataport(env, "--json", "schedules", "create", "--name", "nightly", "--cron",
                    "30 2 * * *", "--timezone", "Europe/Berlin", "--type", "incremental",
                    "--full-every", "7", "--keep-last", "14")
    assert made.code == 0, made.err
    schedule = made.json()
    schedule_id = schedule["scheduleId"]
    assert schedule["schedule"] == {"expression": "cron(30 2 * * *)",
                                    "timezone": "Europe/Berlin"}
    assert schedule["retention"]["keepLast"] == 14
    assert schedule["paused"] is False
    assert schedule["nextRunAt"]

    listed = dataport(env, "--json", "schedules", "list").json()["schedules"]
    assert [s["scheduleId"] for s in listed] == [schedule_id]
    human = dataport(env, "schedules", "show", schedule_id)
    assert "cron(30 2 * * *) Europe/Berlin" in human.out

    paused = dataport(env, "--json", "schedules", "pause", schedule_id).json()
    assert (paused["paused"], paused.get("nextRunAt")) == (True, None)
    resumed = dataport(env, "--json", "schedules", "resume", schedule_id).json()
    assert resumed["paused"] is False
    assert resumed["nextRunAt"]

    gone = dataport(env, "--json", "schedules", "delete", schedule_id)
    assert (gone.code, gone.json()["status"]) == (0, "deleted")
    assert dataport(env, "schedules", "show", schedule_id).code == 4
    assert dataport(env, "--json", "schedules", "list").json()["schedules"] == []


def test_schedules_create_with_a_password_prompt_makes_an_encrypted_schedule(
        env: dict[str, str]) -> None:
    made = dataport(env, "--json", "schedules", "create", "--name", "sealed", "--rate",
                    "1 day", "--keep-days", "7", "--password-prompt",
                    stdin="sched-pass-word\nsched-pass-word\n")
    assert made.code == 0, made.err
    assert made.json()["encrypted"] is True
    assert "sched-pass-word" not in made.out + made.err
    human = dataport(env, "schedules", "show", made.json()["scheduleId"])
    assert "encrypted" in human.out
    assert "True" in human.out


def test_exit_codes_of_backups_restores_and_schedules(env: dict[str, str]) -> None:
    for args in (("backups", "show", MISSING), ("backups", "verify", MISSING),
                 ("backups", "download", MISSING), ("backups", "delete", MISSING),
                 ("backups", "restore", MISSING, "--dry-run"), ("restores", "show", MISSING),
                 ("schedules", "pause", MISSING)):
        run = dataport(env, *args)
        assert run.code == 4, (args, run.err)
    assert dataport(env, "backups", "show", "not-an-id").code == 2
    # neither --cron nor --rate, and a too-tight one (the API's 400): usage errors
    assert dataport(env, "schedules", "create", "--name", "x-y-z", "--keep-last", "1").code == 2
    tight = dataport(env, "schedules", "create", "--name", "often", "--rate", "5 minutes",
                     "--keep-last", "1")
    assert tight.code == 2
    assert "schedule" in tight.err
    # instance backups are for administrators: the demo user's is refused
    assert dataport(env, "backups", "list", "--scope", "instance").code == 3
    assert dataport(env, "backups", "create", "--name", "everyone", "--scope", "instance",
                    "--no-wait").code == 3
