"""Package options through the real export ASL on the local stack, driven over HTTP:
`options.encryption` (7-Zip opens the package with the password and only with it; the password
is nowhere else), `options.compression` (the manifest's ratio) and `splitSizeMb` (every format).

The dataset has a few very large messages, so that files split at 1 MiB and one message is
larger than that on its own."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pyzipper
from bson import ObjectId

from dataport.observability import logger as function_logger
from dataport.packaging.manifest import MANIFEST_NAME, Manifest
from dataport.packaging.verify import PasswordRequired, verify_package
from dataport.settings import get_settings
from dataport.source.collections import message_collections
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, bucket_leftovers, job_row, seeded_database, table_text
from tests.fixtures.faults import EXPORT_WORKER, export_worker, slow_writer

DB_NAME = "dataport_package_options_tests"
PASSWORD = "Tr0ub4dor&3-horse-staple"
MiB = 1024 * 1024
#: forms the password could leak in besides itself
LEAK_FORMS = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(), PASSWORD.encode().hex())


@pytest.fixture(scope="module")
def dataset(local_stack: LocalStack) -> Iterator[seed.SeedSummary]:
    with pytest.MonkeyPatch.context() as patch, seeded_database(
            patch, local_stack, DB_NAME, sessions_per_project=2) as summary:
        _inflate_messages(local_stack, seed.DEMO_USER_ID)
        yield summary


def _inflate_messages(stack: LocalStack, user_id: str) -> None:
    """One user message of 1.5 MiB (larger than a 1 MiB split on its own) and six of 300 KiB,
    as text that compresses about as well as real conversations (a ratio well below 1)."""
    db = connect(stack.mongo_uri, DB_NAME)
    try:
        projects = [p["_id"] for p in db.projects.find({"user_id": ObjectId(user_id)})]
        sessions = [s["sessionId"] for s in db.sessions.find({"projectId": {"$in": projects}})]
        sizes = iter([3 * MiB // 2] + [300 * 1024] * 6)
        for name in message_collections(db):
            for message in db[name].find({"sessionId": {"$in": sessions}, "type": "user"}):
                size = next(sizes, None)
                if size is None:
                    return
                text = ("The export must survive a very long paste. " * (size // 44 + 1))[:size]
                db[name].update_one({"_id": message["_id"]}, {"$set": {
                    "content": text, "messageData.content": text}})
        raise AssertionError("the seeded user has too few user messages to inflate")
    finally:
        db.client.close()



def _7z(*args: str) -> subprocess.CompletedProcess[str]:
    """7-Zip with no terminal: asked for a password it has none (stdin is empty)."""
    return subprocess.run(["7z", *args], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=60)


def _manifest(package: Path, password: str | None = None) -> Manifest:
    with pyzipper.AESZipFile(package) as archive:
        if password:
            archive.setpassword(password.encode())
        return Manifest.model_validate_json(archive.read(MANIFEST_NAME))


def _execution_arn(stack: LocalStack, job_id: str) -> str:
    machine = stack.state_machines["ExportStateMachine"]
    return machine.replace(":stateMachine:", ":execution:") + f":{job_id}"


def _leaks(text: str) -> list[str]:
    return [form for form in LEAK_FORMS if form in text]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{self.format(record)} {record.__dict__}")


@contextmanager
def _every_log_line() -> Iterator[list[str]]:
    """What the functions log (Powertools' logger does not propagate: its own formatter, so the
    `extra` keys are in the lines, and at DEBUG) and what any other logger says at INFO."""
    functions, others = _Lines(), _Lines()
    functions.setFormatter(function_logger.registered_formatter)
    others.setLevel(logging.INFO)
    level = function_logger.log_level
    underlying = logging.getLogger(function_logger.name)  # what Powertools' Logger wraps
    root = logging.getLogger()
    root_level = root.level
    underlying.addHandler(functions)
    function_logger.setLevel(logging.DEBUG)
    root.addHandler(others)
    root.setLevel(logging.INFO)
    try:
        yield functions.lines
    finally:
        root.removeHandler(others)
        root.setLevel(root_level)
        function_logger.setLevel(level)
        underlying.removeHandler(functions)
        functions.lines.extend(others.lines)


def test_an_encrypted_package_opens_with_its_password_only_and_the_password_is_nowhere(
        api: Api, tmp_path: Path) -> None:
    with _every_log_line() as logs:
        answer = api.request("POST", "/exports", headers={"Idempotency-Key": "enc-1"}, json={
            "format": "json",
            "options": {"splitSizeMb": 1, "encryption": {"password": PASSWORD}}})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["jobId"]
        job = api.wait(job_id)
        assert job["status"] == "succeeded", job
        package = api.download(job_id, tmp_path / "package.zip")

    # 7-Zip: every member, the manifest too, is AES-256 and opens with the password only.
    assert _7z("t", f"-p{PASSWORD}", str(package)).returncode == 0
    assert _7z("t", "-pnot-the-password", str(package)).returncode != 0
    assert _7z("t", str(package)).returncode != 0
    listing = _7z("l", "-slt", f"-p{PASSWORD}", str(package)).stdout
    members = [block for block in listing.split("\n\n") if "\nPath = " in f"\n{block}"
               and "Encrypted = " in block]
    manifest = _manifest(package, PASSWORD)
    assert len(members) == len(manifest.files) + 1
    assert all("Encrypted = +" in m and "Method = AES-256" in m for m in members), listing
    assert any("Path = manifest.json" in m for m in members)

    # The manifest tells what is inside, and every member matches it (HMAC and SHA-256).
    assert manifest.encryption == "winzip-aes-256"
    assert len([f for f in manifest.files if f.path.startswith("conversations-")]) > 1
    assert verify_package(package, PASSWORD).ok
    with pytest.raises(PasswordRequired):
        verify_package(package)
    with pytest.raises(PasswordRequired):
        verify_package(package, "not-the-password")

    # The password: not in the API's answers, the job row (ended: not even sealed), the
    # idempotency record, the workflow's state, the logs, the package or its manifest.
    view = api.request("GET", f"/exports/{job_id}")
    assert view.json()["encrypted"] is True
    assert "encryption" not in view.json()["request"]["options"]
    row = job_row(api.stack, job_id)
    assert "sealed_password" not in row
    assert row["encrypted"] == {"BOOL": True}
    history = list(api.stack.execution_history(_execution_arn(api.stack, job_id)))
    assert history
    places = {
        "POST answer": answer.text, "GET answer": view.text,
        "GET list": api.request("GET", "/exports").text,
        "jobs table": table_text(api.stack, "JobsTable"),
        "idempotency table": table_text(api.stack, "IdempotencyTable"),
        "execution history": json.dumps(history, default=str),
        "logs": "\n".join(logs),
        "package": package.read_bytes().decode("latin-1"),
        "manifest": manifest.to_json().decode(),
    }
    assert job_id in places["logs"]  # the capture did see the functions' logs
    leaked = {place: _leaks(text) for place, text in places.items() if _leaks(text)}
    assert not leaked


def test_the_same_idempotency_key_replays_an_encrypted_export(api: Api) -> None:
    body = {"options": {"encryption": {"password": PASSWORD}}}
    first = api.request("POST", "/exports", json=body, headers={"Idempotency-Key": "enc-2"})
    again = api.request("POST", "/exports", json=body, headers={"Idempotency-Key": "enc-2"})
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"]
    plain = api.request("POST", "/exports", json={}, headers={"Idempotency-Key": "enc-2"})
    assert plain.status_code == 422  # same key, but this one asks for no encryption
    api.wait(first.json()["jobId"])


@pytest.mark.parametrize("password", ["", "seven77", "é" * 7])
def test_a_password_shorter_than_8_characters_is_refused(api: Api, password: str) -> None:
    answer = api.request("POST", "/exports",
                         json={"options": {"encryption": {"password": password}}})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["field"] for d in error["details"]] == ["options.encryption.password"]
    assert "8" in error["details"][0]["message"]
    if password:
        assert password not in answer.text
    assert api.request("GET", "/exports").json()["exports"] == []  # nothing was started


def test_a_failed_encrypted_export_forgets_its_sealed_password(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(explode))
    job = api.wait(api.start_export({"options": {"encryption": {"password": PASSWORD}}}))
    assert job["status"] == "failed"
    row = job_row(api.stack, job["jobId"])
    assert row["encrypted"] == {"BOOL": True}
    assert "sealed_password" not in row
    assert bucket_leftovers(api.stack, job["jobId"]) == {"objects": [], "uploads": []}


def test_a_cancelled_encrypted_export_forgets_its_sealed_password(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    slow, writing = slow_writer(0.1)

    monkeypatch.setenv("PAGE_SIZE", "1")
    get_settings.cache_clear()
    monkeypatch.setitem(api.stack.handler_overrides, EXPORT_WORKER, export_worker(slow))
    try:
        job_id = api.start_export({"options": {"encryption": {"password": PASSWORD}}})
        assert writing.wait(20)
        assert "sealed_password" in job_row(api.stack, job_id)
        cancelled = api.request("DELETE", f"/exports/{job_id}")
        assert cancelled.json()["status"] == "cancelled", cancelled.text
        assert "sealed_password" not in job_row(api.stack, job_id)
        api.stack.wait_for_execution(_execution_arn(api.stack, job_id))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "sealed_password" not in job_row(api.stack, job_id)


def test_compression_levels_0_and_9_make_valid_packages_with_the_ratio_they_achieved(
        api: Api, tmp_path: Path) -> None:
    manifests = {}
    for level in (0, 9):
        package = api.export(tmp_path, {"options": {"compression": {"level": level}}})
        assert subprocess.run(["unzip", "-tq", str(package)], capture_output=True,
                              check=False).returncode == 0
        assert _7z("t", str(package)).returncode == 0
        assert verify_package(package).ok
        manifests[level] = _manifest(package)
    stored, deflated = manifests[0].compression, manifests[9].compression
    assert (stored.method, stored.level, deflated.method, deflated.level) == (
        "stored", 0, "deflate", 9)
    assert stored.uncompressed_bytes == deflated.uncompressed_bytes > 3 * MiB
    assert stored.compressed_bytes == stored.uncompressed_bytes
    assert stored.ratio == 1
    assert deflated.ratio is not None
    assert deflated.ratio < stored.ratio / 4  # the long pastes compress very well
    assert deflated.compressed_bytes == sum(f.compressed_bytes for f in manifests[9].files)


def test_an_encrypted_stored_package_counts_the_aes_overhead(api: Api, tmp_path: Path) -> None:
    package = api.export(tmp_path, {"options": {"compression": {"level": 0},
                                                "encryption": {"password": PASSWORD}}})
    assert _7z("t", f"-p{PASSWORD}", str(package)).returncode == 0
    compression = _manifest(package, PASSWORD).compression
    files = len(_manifest(package, PASSWORD).files)
    assert compression.compressed_bytes == compression.uncompressed_bytes + 28 * files
    assert compression.ratio is not None
    assert compression.ratio >= 1


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "markdown"])
def test_split_size_holds_for_every_file_but_a_record_larger_than_it(
        api: Api, tmp_path: Path, fmt: str) -> None:
    package = api.export(tmp_path, {"format": fmt, "options": {"splitSizeMb": 1}})
    assert verify_package(package).ok
    files = _manifest(package).files
    oversized = [f for f in files if f.bytes > MiB]
    assert oversized, "the 1.5 MiB message must be in a file of its own, over the limit"
    assert all(f.notes for f in oversized), [f.path for f in oversized]
    assert sum(f.bytes for f in files) > 3 * MiB
    assert len(files) > len(oversized) + 1
