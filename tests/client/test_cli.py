"""The `dataport` CLI against the local stack over real HTTP and WebSocket: exports to a
verified file, imports with a dry run, execution and rollback, watch, keys, and every
documented exit code."""

from __future__ import annotations

import re
import stat
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from dataport.jobs import rate_limit
from dataport.models.jobs import JobKind
from dataport.packaging.verify import verify_package
from dataport.settings import get_settings
from dataport.source.collections import SESSIONS
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.client.cli_runner import cli_env, dataport
from tests.client.conftest import DB_NAME
from tests.fixtures.faults import EXPORT_WORKER, export_worker

#: a user with no data in the seeded database
NEWCOMER = "66ad9b005f2b4a0012c0bbbb"


@pytest.mark.parametrize("export_format", ["json", "csv"])
def test_export_waits_downloads_and_verifies_the_package(
        env: dict[str, str], tmp_path: Path, dataset: seed.SeedSummary,
        export_format: str) -> None:
    target = tmp_path / "exports"
    run = dataport(env, "--json", "export", "--format", export_format, "--wait",
                   "-o", f"{target}/")
    assert run.code == 0, run.err
    answer = run.json()  # --json: one document, no bars
    assert answer["status"] == "succeeded"
    package = answer["package"]
    path = Path(package["path"])
    assert path.parent == target
    assert path.name.startswith(f"dataport-{export_format}-")
    assert package["ok"] is True
    assert package["problems"] == []
    assert package["bytes"] == path.stat().st_size
    # the service's own verifier agrees with the client's
    assert verify_package(path).ok
    # the estimate came first, from counts: the same selection the package holds
    estimate = answer["estimate"]
    assert estimate["format"] == export_format
    assert estimate["counts"]["sessions"] == package["counts"]["sessions"]
    assert estimate["counts"]["messages"] == package["counts"]["messages"]
    assert estimate["packageBytes"] == estimate["packageBytesByFormat"][export_format] > 0
    assert estimate["durationSeconds"] >= 1
    assert not list(target.glob("*.part"))


def test_export_without_wait_prints_the_job_and_watch_follows_it(
        env: dict[str, str], stack: LocalStack) -> None:
    started = dataport(env, "--json", "export", "--format", "jsonl", "--no-wait")
    assert started.code == 0, started.err
    job_id = started.json()["jobId"]
    watched = dataport(env, "watch", job_id, "--json")
    assert watched.code == 0, watched.err
    assert watched.json()["status"] == "succeeded"
    shown = dataport(env, "exports", "show", job_id, "--json")
    assert shown.json()["package"]["bytes"] > 0
    listed = dataport(env, "--json", "exports", "list")
    assert [job["jobId"] for job in listed.json()["exports"]] == [job_id]
    human = dataport(env, "exports", "list")
    assert job_id in human.out
    assert "succeeded" in human.out
    cancelled = dataport(env, "--json", "exports", "cancel", job_id)  # finished: deleted
    assert cancelled.json()["status"] == "deleted"


def test_import_dry_run_then_execute_then_rollback(
        env: dict[str, str], stack: LocalStack, tmp_path: Path) -> None:
    exported = dataport(env, "--json", "export", "--format", "json", "--wait", "-o",
                        f"{tmp_path}/")
    assert exported.code == 0, exported.err
    package = exported.json()["package"]["path"]
    sessions = exported.json()["package"]["counts"]["sessions"]
    newcomer = cli_env(stack, stack.token_for(NEWCOMER), tmp_path)

    dry = dataport(newcomer, "--json", "import", package, "--strategy", "merge", "--dry-run")
    assert dry.code == 0, dry.err
    planned = dry.json()
    job_id = planned["jobId"]
    assert planned["status"] == "awaiting_decision"
    assert planned["report"]["errorsTotal"] == 0
    assert planned["report"]["counts"]["sessions"] == sessions
    assert planned["dryRun"]["sessions"]["inserted"] == sessions
    assert _stored_sessions(stack) == 0  # a dry run writes nothing

    refused = dataport(newcomer, "--json", "imports", "execute", job_id, "--strategy", "merge")
    assert refused.code == 2  # no --yes and no terminal to ask on: nothing done

    done = dataport(newcomer, "imports", "execute", job_id, "--strategy", "merge", "--yes",
                    "--json")
    assert done.code == 0, done.err
    assert done.json()["status"] == "succeeded"
    assert done.json()["outcome"]["sessions"]["inserted"] == sessions
    assert _stored_sessions(stack) == sessions

    undone = dataport(newcomer, "--json", "imports", "rollback", job_id)
    assert undone.code == 0, undone.err
    assert undone.json()["status"] == "rolled_back"
    assert _stored_sessions(stack) == 0
    watched = dataport(newcomer, "--json", "watch", job_id)
    assert (watched.code, watched.json()["status"]) == (0, "rolled_back")


def test_import_shows_the_report_and_conflicts_as_tables(
        env: dict[str, str], tmp_path: Path) -> None:
    exported = dataport(env, "--json", "export", "--format", "json", "--wait", "-o",
                        f"{tmp_path}/")
    package = exported.json()["package"]["path"]
    # back into the same account: every session is one it already has
    run = dataport(env, "import", package, "--strategy", "skip", "--yes")
    assert run.code == 0, run.err
    assert "Validation report" in run.out
    assert "Conflicts: sessions you already have" in run.out
    assert re.search(r"identical\s+│", run.out)
    assert "Imported (skip)" in run.out


def test_keys_create_list_revoke_and_a_key_works_as_the_credential(
        env: dict[str, str], stack: LocalStack, tmp_path: Path) -> None:
    created = dataport(env, "--json", "keys", "create", "--name", "cron", "--expires-in-days",
                       "30")
    assert created.code == 0, created.err
    key, key_id = created.json()["key"], created.json()["keyId"]
    with_key = cli_env(stack, key, tmp_path)
    assert dataport(with_key, "--json", "exports", "list").code == 0
    assert dataport(with_key, "keys", "create", "--name", "more").code == 3  # keys need a JWT
    listed = dataport(env, "--json", "keys", "list").json()["apiKeys"]
    assert [(k["keyId"], k["revoked"]) for k in listed] == [(key_id, False)]
    assert dataport(env, "keys", "revoke", key_id).code == 0
    listed = dataport(env, "--json", "keys", "list").json()["apiKeys"]
    assert [(k["keyId"], k["revoked"]) for k in listed] == [(key_id, True)]


# --------------------------------------------------------------------------- exit codes


def test_a_failed_job_exits_1_with_its_reason(
        env: dict[str, str], stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(stack.handler_overrides, EXPORT_WORKER, export_worker(broken))
    run = dataport(env, "--json", "export", "--format", "json", "--wait")
    assert run.code == 1
    answer = run.json()
    assert answer["status"] == "failed"
    assert answer["error"]["code"] == "internal_error"
    assert "failed" in run.err
    assert answer["jobId"] in run.err
    assert "disk on fire" not in run.out + run.err


@pytest.mark.parametrize("token", ["not-a-jwt", "dpk_unknownkeyunknownkey"])
def test_a_bad_credential_exits_3(stack: LocalStack, tmp_path: Path, token: str) -> None:
    env = cli_env(stack, token, tmp_path)
    run = dataport(env, "exports", "list")
    assert run.code == 3
    assert "401" in run.err
    assert dataport(env, "export", "--format", "json", "--wait").code == 3


def test_no_credential_at_all_exits_3(env: dict[str, str]) -> None:
    run = dataport({**env, "DATAPORT_TOKEN": ""}, "exports", "list")
    assert run.code == 3
    assert "DATAPORT_TOKEN" in run.err


@pytest.mark.parametrize("command", [
    ["exports", "show"], ["exports", "download"], ["exports", "cancel"], ["watch"],
    ["imports", "show"], ["imports", "rollback"],
])
def test_a_missing_job_exits_4(env: dict[str, str], command: list[str]) -> None:
    run = dataport(env, *command, uuid.uuid4().hex)
    assert run.code == 4, run.err
    assert "not found" in run.err.lower() or "no job" in run.err.lower()


def test_a_rate_limited_export_exits_5_with_the_retry_time_on_stderr(
        env: dict[str, str]) -> None:
    limit = get_settings().export_rate_limit
    for _ in range(limit):  # the hour's allowance, used up by earlier exports
        rate_limit.consume(seed.DEMO_USER_ID, JobKind.EXPORT, limit)
    run = dataport(env, "--json", "export", "--format", "json", "--no-wait")
    assert run.code == 5
    found = re.search(r"retry in (\d+) s \(after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", run.err)
    assert found, run.err
    assert 0 < int(found.group(1)) <= 3600
    assert run.out == ""  # nothing was started


@pytest.mark.parametrize("args", [
    ["export", "--format", "xlsx"], ["exports", "show", "not-a-job-id"], ["nonsense"],
    ["export", "--split-mb", "0"],
])
def test_usage_errors_exit_2(env: dict[str, str], args: list[str]) -> None:
    assert dataport(env, *args).code == 2


def test_a_request_the_api_refuses_exits_2_with_the_fields(env: dict[str, str]) -> None:
    run = dataport(env, "export", "--project", "nope", "--no-wait")
    assert run.code == 2
    assert "projectIds" in run.err


# --------------------------------------------------------------------------- verify, login


def test_verify_finds_a_tampered_package(env: dict[str, str], tmp_path: Path) -> None:
    exported = dataport(env, "--json", "export", "--format", "json", "--wait", "-o",
                        f"{tmp_path}/")
    path = Path(exported.json()["package"]["path"])
    good = dataport(env, "--json", "verify", str(path))
    assert (good.code, good.json()["ok"]) == (0, True)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            copy.writestr(item, data + b" " if item.filename != "manifest.json" else data)
    bad = dataport(env, "verify", str(tampered))
    assert bad.code == 1
    assert "SHA-256 does not match" in bad.err


def test_an_encrypted_export_is_verified_with_its_password(
        env: dict[str, str], tmp_path: Path) -> None:
    password = "correct horse battery"
    # --password-prompt asks twice (confirmation) on stderr; the answers come on stdin
    run = dataport(env, "--json", "export", "--format", "json", "--password-prompt", "--wait",
                   "-o", f"{tmp_path}/", stdin=f"{password}\n{password}\n")
    assert run.code == 0, run.err
    path = run.json()["package"]["path"]
    assert password not in run.out + run.err
    assert dataport(env, "verify", path).code == 1  # no password: cannot be opened
    opened = dataport(env, "--json", "verify", path, "--password-prompt",
                      stdin=f"{password}\n")
    assert (opened.code, opened.json()["ok"]) == (0, True)


def test_login_stores_the_credential_0600_and_never_prints_it(
        stack: LocalStack, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    token = stack.token_for(seed.DEMO_USER_ID)
    env = {**cli_env(stack, token, tmp_path), "DATAPORT_API_URL": "", "DATAPORT_WS_URL": "",
           "DATAPORT_TOKEN": ""}
    refused = dataport(env, "login", "--api-url", stack.rest_url, "--token-stdin",
                       stdin="forged-token\n")
    assert refused.code == 3
    config = tmp_path / "config.json"
    assert not config.exists()  # a refused credential is not stored

    run = dataport(env, "login", "--api-url", stack.rest_url, "--ws-url", stack.ws_url,
                   "--token-stdin", stdin=f"{token}\n")
    assert run.code == 0, run.err
    assert token not in run.out + run.err
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # later commands use it: no URL or credential in the environment
    listed = dataport(env, "--json", "exports", "list")
    assert listed.code == 0, listed.err
    started = dataport(env, "--json", "export", "--format", "markdown", "--wait",
                       "-o", f"{tmp_path}/")
    assert started.code == 0, started.err
    for output in (listed.out, listed.err, started.out, started.err):
        assert token not in output
    # nor did the service log it while serving these commands (its functions run in this
    # process here, so their logs are this process's output)
    logged = capfd.readouterr()
    assert token not in logged.out + logged.err


def _stored_sessions(stack: LocalStack) -> int:
    db = connect(stack.mongo_uri, DB_NAME)
    try:
        projects = [p["_id"] for p in db["projects"].find({"user_id": ObjectId(NEWCOMER)})]
        return db[SESSIONS].count_documents({"projectId": {"$in": projects}})
    finally:
        db.client.close()





def test_without_a_websocket_url_progress_comes_from_the_rest_api(
        env: dict[str, str], tmp_path: Path) -> None:
    run = dataport({**env, "DATAPORT_WS_URL": ""}, "export", "--format", "jsonl", "--wait",
                   "-o", f"{tmp_path}/")
    assert run.code == 0, run.err
    assert re.search(r"export\s+done\s+━+\s+100%", run.out), run.out  # the bar's last state
    assert "Verified" in run.out
