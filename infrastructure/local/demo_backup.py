"""`make demo-backup`: backups and restores end to end, over HTTP, on the local stack.

Seeds a ClaudeLens database, takes a full backup as the demo user (POST /backups), changes the
data (sessions added, edited and deleted), takes an incremental backup on it, verifies both
(POST /backups/{id}/verify), then loses everything the account has and restores the chain
(POST /restores, mode full) and compares the account with the source as it was when the
increment was taken. Last, it changes the data again, runs a full restore over it and rolls the
restore back (POST /restores/{id}/rollback): the account must be as it was before the restore.
Prints the chain, sizes, the compression ratio, MB/s and "identical" or the differences.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from bson import ObjectId
from pymongo.database import Database

from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.content_hash import content_hash
from dataport.source.mongo import Document, connect
from dataport.source.writes import IMPORT_TAG
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack

USER = seed.DEMO_USER_ID
#: what a restore sets itself on the documents it writes; everything else must come back as is
WRITTEN = frozenset({"_id", IMPORT_TAG, "updatedAt"})
MB = 1024 * 1024


class Client:
    """The REST API as the demo user's script calls it."""

    def __init__(self, stack: LocalStack, user_id: str) -> None:
        self.url, self.headers = stack.rest_url, stack.auth_headers(user_id)

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> dict[str, Any]:
        answer = requests.request(method, f"{self.url}{path}", headers=self.headers,
                                  timeout=30, **kwargs)
        if answer.status_code != expect:
            raise SystemExit(f"{method} {path} answered {answer.status_code}: {answer.text}")
        body: dict[str, Any] = answer.json() if answer.content else {}
        return body

    def until(self, path: str, ended: set[str], timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.call("GET", path, 200)
            if job["status"] in ended:
                return job
            if time.monotonic() > deadline:
                raise SystemExit(f"{path} still {job['status']} after {timeout:.0f} s")
            time.sleep(0.1)


# ------------------------------------------------------------------------------- the account


def sessions_of(db: Database[Document], user_id: str = USER) -> dict[str, Document]:
    projects = [p["_id"] for p in db[PROJECTS].find({"user_id": ObjectId(user_id)})]
    return {s["sessionId"]: s for s in db[SESSIONS].find({"projectId": {"$in": projects}})}


def _messages(db: Database[Document], session_ids: list[str]) -> dict[str, list[Document]]:
    found: dict[str, list[Document]] = {sid: [] for sid in session_ids}
    for name in db.list_collection_names():
        if is_message_collection(name):
            for message in db[name].find({"sessionId": {"$in": session_ids}}):
                found[message["sessionId"]].append(message)
    return found


def _plain(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k not in WRITTEN}


def content(db: Database[Document]) -> dict[str, Any]:
    """The account as a restore must give it back: each session and its messages by uuid,
    without what a restore sets itself."""
    sessions = sessions_of(db)
    messages = _messages(db, list(sessions))
    return {sid: (_plain(s), {m["uuid"]: _plain(m) for m in messages[sid]})
            for sid, s in sessions.items()}


def _differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    found = [f"missing session {sid}" for sid in sorted(set(expected) - set(actual))]
    found += [f"unexpected session {sid}" for sid in sorted(set(actual) - set(expected))]
    for sid in sorted(set(expected) & set(actual)):
        (session, messages), (got, got_messages) = expected[sid], actual[sid]
        fields = sorted(k for k in set(session) | set(got) if session.get(k) != got.get(k))
        if fields:
            found.append(f"session {sid}: {', '.join(fields)} differ")
        if messages != got_messages:
            found.append(f"session {sid}: {len(set(messages) ^ set(got_messages))} messages "
                         "missing or extra, or changed")
    return found


def _compare(label: str, expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    differences = _differences(expected, actual)
    messages = sum(len(m) for _, m in actual.values())
    if not differences:
        print(f"  {label}: identical ({len(actual)} sessions, {messages} messages)")
        return True
    print(f"  {label}: {len(differences)} DIFFERENCES")
    for line in differences[:20]:
        print(f"    {line}")
    return False


def _delete(db: Database[Document], session_ids: list[str]) -> None:
    for name in db.list_collection_names():
        if is_message_collection(name):
            db[name].delete_many({"sessionId": {"$in": session_ids}})
    db[SESSIONS].delete_many({"sessionId": {"$in": session_ids}})


def _add_copy(db: Database[Document], like: str, summary: str) -> str:
    """A new session (a copy of `like` under new ids, as ClaudeLens would write one now)."""
    session = copy.deepcopy(sessions_of(db)[like])
    new_id, now = str(uuid.uuid4()), datetime.now(UTC)
    session.update({"_id": ObjectId(), "sessionId": new_id, "summary": summary,
                    "createdAt": now, "updatedAt": now})
    db[SESSIONS].insert_one(session)
    for name in db.list_collection_names():
        if is_message_collection(name):
            copies = [_message_copy(m, new_id) for m in db[name].find({"sessionId": like})]
            if copies:
                db[name].insert_many(copies)
    return new_id


def _message_copy(message: Document, session_id: str) -> Document:
    fresh = {**message, "_id": ObjectId(), "sessionId": session_id, "uuid": str(uuid.uuid4()),
             "parentUuid": None}
    if isinstance(fresh.get("content"), str) and "contentHash" in fresh:
        fresh["contentHash"] = content_hash(fresh["uuid"], fresh["type"], fresh["timestamp"],
                                            fresh["content"])
    return fresh


def change(db: Database[Document], round_name: str) -> str:
    """Sessions added, edited and deleted, as a user's activity would. Says what changed."""
    ids = sorted(sessions_of(db))
    edited, deleted, model = ids[0], ids[1], ids[2]
    db[SESSIONS].update_one({"_id": sessions_of(db)[edited]["_id"]}, {"$set": {
        "summary": f"renamed in {round_name}", "updatedAt": datetime.now(UTC)}})
    _delete(db, [deleted])
    added = [_add_copy(db, model, f"new in {round_name} #{n}") for n in (1, 2)]
    return f"edited {edited[:8]}, deleted {deleted[:8]}, added {', '.join(a[:8] for a in added)}"


# ------------------------------------------------------------------------------- backups


def backup(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    created = client.call("POST", "/backups", 202, json=body)
    made = client.until(f"/backups/{created['backupId']}",
                        {"completed", "failed", "corrupted", "expired"})
    seconds = time.monotonic() - started
    if made["status"] != "completed":
        raise SystemExit(f"backup {made['backupId']} {made['status']}: {made.get('error')}")
    sizes, counts = made["sizes"], made["counts"]
    ratio = sizes["uncompressed"] / max(sizes["stored"], 1)
    print(f"  {made['type']:<11} {made['backupId']}  parent {made.get('parentId') or '-'}")
    print(f"              {counts['sessions']} sessions, {counts['messages']} messages, "
          f"{counts.get('deletions', 0)} deletions; {sizes['uncompressed']:,} B of Extended "
          f"JSON -> {sizes['stored']:,} B stored (ratio {ratio:.1f}); "
          f"{sizes['uncompressed'] / MB / seconds:.2f} MB/s ({seconds:.1f} s)")
    return made


def verify(client: Client, backup_id: str) -> bool:
    result = client.call("POST", f"/backups/{backup_id}/verify", 200, json={})
    state = "intact" if result["ok"] else f"DAMAGED: {result.get('member')} {result.get('problem')}"
    print(f"  verify {backup_id}: {result['members']} members, {result['records']} records, "
          f"sha256 {result['sha256'][:16]}...  {state}")
    return bool(result["ok"])


def restore(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    created = client.call("POST", "/restores", 202, json=body)
    job = client.until(f"/restores/{created['jobId']}", {"succeeded", "failed", "cancelled"})
    seconds = time.monotonic() - started
    if job["status"] != "succeeded":
        raise SystemExit(f"restore {job['jobId']} {job['status']}: {job.get('error')} "
                         f"{job.get('report', {}).get('errors')}")
    sessions = job["outcome"]["sessions"]
    print(f"  restore {job['jobId']} ({body['mode']}) of chain {' -> '.join(job['chain'])}: "
          f"{sessions['inserted']} inserted, {sessions['replaced']} replaced, "
          f"{sessions.get('removed', 0)} removed, {sessions['unchanged']} unchanged in "
          f"{seconds:.1f} s")
    return job


def demo(stack: LocalStack, database: str) -> bool:
    """The scenario on a seeded database; True when every comparison is identical."""
    client = Client(stack, USER)
    db = connect(stack.mongo_uri, database)
    try:
        print(f"\nThe chain (user {USER}: {len(sessions_of(db))} sessions)")
        base = backup(client, {"name": "demo full"})
        print(f"  changes     {change(db, 'round 1')}")
        increment = backup(client, {"name": "demo increment", "type": "incremental",
                                    "parentId": base["backupId"]})
        at_increment = content(db)
        intact = all([verify(client, base["backupId"]), verify(client, increment["backupId"])])

        print("\nEverything lost, the chain restored into the empty account")
        _delete(db, list(sessions_of(db)))
        restore(client, {"backupId": increment["backupId"], "mode": "full",
                         "conflicts": "overwrite"})
        chain_ok = _compare("the account vs the source at the increment", at_increment,
                            content(db))

        print("\nA full restore over changed data, rolled back")
        print(f"  changes     {change(db, 'round 2')}")
        before = content(db)
        job = restore(client, {"backupId": base["backupId"], "mode": "full",
                               "conflicts": "overwrite"})
        client.call("POST", f"/restores/{job['jobId']}/rollback", 202)
        rolled = client.until(f"/restores/{job['jobId']}", {"rolled_back", "failed"})
        print(f"  rollback    {rolled['status']}")
        rollback_ok = rolled["status"] == "rolled_back" and _compare(
            "the account vs before the restore", before, content(db))
    finally:
        db.client.close()
    ok = intact and chain_ok and rollback_ok
    print(f"\n{'identical: every comparison matched' if ok else 'DIFFERENT (above)'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions-per-project", type=int, default=5)
    args = parser.parse_args(argv)
    print("Starting the local stack (moto, Step Functions with the real ASL, MongoDB wire "
          "server, REST and WebSocket gateways)...")
    with LocalStack() as stack:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the functions' INFO logs are noise here
        database = os.environ["MONGODB_DATABASE"]
        db = connect(stack.mongo_uri, database)
        summary = seed.seed(db, sessions_per_project=args.sessions_per_project)
        db.client.close()
        print(f"Seeded {summary.sessions} sessions and {summary.messages} messages for "
              f"{len(summary.users)} users")
        ok = demo(stack, database)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
