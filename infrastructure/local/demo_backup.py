"""`make demo-backup`: backups and restores end to end, over HTTP, on the local stack.

Seeds a ClaudeLens database (three users), and, as an administrator: takes a full backup of the
instance (POST /backups, scope instance), changes every user's data (sessions added, edited and
deleted), takes an incremental instance backup on it, verifies both (POST
/backups/{id}/verify), then restores the chain (POST /restores, target instance, mode full) into
an **empty instance**: a second MongoDB database on the same server, holding nothing, that the
functions are pointed at for that step, as a migration to a fresh ClaudeLens would. Every
user's projects, sessions and messages there are compared with the source as it was when the
increment was taken, and its messages must be in the source's message collections (the layout
the backup records); the restore is rolled back and the new instance is empty again. Last, on
the source, it changes the data again, runs a full restore of the base over it and rolls it
back (POST /restores/{id}/rollback): everything must be as it was before that restore.
Prints the chain, sizes, the compression ratio, MB/s (backups and restores) and "identical" or
the differences.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import requests
from bson import ObjectId, json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo.database import Database

from dataport.observability import SERVICE
from dataport.settings import get_settings
from dataport.source import mongo
from dataport.source.collections import PROJECTS, SESSIONS, is_message_collection
from dataport.source.content_hash import content_hash
from dataport.source.mongo import Document, connect
from dataport.source.writes import IMPORT_TAG
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack

ADMIN = seed.DEMO_USER_ID
#: what a restore sets itself on the documents it writes (`_id`s are new: the data model's
#: identity is the sessionId, the message uuid, the project's owner and path); everything else
#: must come back as is
WRITTEN = frozenset({"_id", IMPORT_TAG, "updatedAt"})
MB = 1024 * 1024

#: an instance's content: user id -> {"projects": {path: project}, "sessions": {sessionId:
#: (session, {uuid: message as canonical Extended JSON})}}
Instance = dict[str, dict[str, Any]]


class Client:
    """The REST API as an administrator's script calls it."""

    def __init__(self, stack: LocalStack, user_id: str) -> None:
        self.url, self.headers = stack.rest_url, stack.auth_headers(user_id, admin=True)

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> dict[str, Any]:
        answer = requests.request(method, f"{self.url}{path}", headers=self.headers,
                                  timeout=30, **kwargs)
        if answer.status_code != expect:
            raise SystemExit(f"{method} {path} answered {answer.status_code}: {answer.text}")
        body: dict[str, Any] = answer.json() if answer.content else {}
        return body

    def until(self, path: str, ended: set[str], timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.call("GET", path, 200)
            if job["status"] in ended:
                return self.call("GET", path, 200)  # again: the last fields land after status
            if time.monotonic() > deadline:
                raise SystemExit(f"{path} still {job['status']} after {timeout:.0f} s")
            time.sleep(0.1)


@contextmanager
def functions_on(database: str) -> Iterator[None]:
    """The stack's functions pointed at `database` (as a deployment configured for it, cold
    started), then back at the one they used."""
    before = os.environ["MONGODB_DATABASE"]
    _use(database)
    try:
        yield
    finally:
        _use(before)


def _use(database: str) -> None:
    os.environ["MONGODB_DATABASE"] = database
    get_settings.cache_clear()
    mongo.reset()


# ------------------------------------------------------------------------------- the instance


def _message_collections(db: Database[Document]) -> list[str]:
    return sorted(name for name in db.list_collection_names() if is_message_collection(name))


def users_of(db: Database[Document]) -> list[str]:
    return sorted(str(user) for user in db[PROJECTS].distinct("user_id"))


def sessions_of(db: Database[Document], user_id: str) -> dict[str, Document]:
    projects = [p["_id"] for p in db[PROJECTS].find({"user_id": ObjectId(user_id)})]
    return {s["sessionId"]: s for s in db[SESSIONS].find({"projectId": {"$in": projects}})}


def _plain(doc: Document) -> Document:
    return {k: v for k, v in doc.items() if k not in WRITTEN}


def _canonical(doc: Document) -> str:
    """A message as bytes to compare: canonical Extended JSON, its fields in stored order."""
    return json_util.dumps(_plain(doc), json_options=CANONICAL_JSON_OPTIONS)


def instance_content(db: Database[Document]) -> Instance:
    """Every user's data as a restore into any instance must give it back: projects by path
    (owner, name, description, dates, stats), sessions by sessionId (their project by path),
    messages by uuid byte for byte; without what a restore sets itself (`WRITTEN`)."""
    messages: dict[str, dict[str, str]] = {}
    for name in _message_collections(db):
        for message in db[name].find():
            messages.setdefault(message["sessionId"], {})[message["uuid"]] = _canonical(message)
    found: Instance = {}
    for user in users_of(db):
        projects = {p["_id"]: p for p in db[PROJECTS].find({"user_id": ObjectId(user)})}
        sessions = {}
        for session in db[SESSIONS].find({"projectId": {"$in": list(projects)}}):
            plain = {**_plain(session), "projectId": projects[session["projectId"]]["path"]}
            sessions[session["sessionId"]] = (plain, messages.get(session["sessionId"], {}))
        found[user] = {"projects": {p["path"]: _plain(p) for p in projects.values()},
                       "sessions": sessions}
    return found


def _holding_messages(db: Database[Document]) -> list[str]:
    """The message collections that hold a message (a month whose sessions were all deleted
    leaves its collection behind, empty)."""
    return [name for name in _message_collections(db)
            if db[name].count_documents({}, limit=1)]


def _layout(db: Database[Document]) -> str:
    names = _holding_messages(db)
    if len(names) < 2:
        return names[0] if names else "none"
    return f"{len(names)} collections, {names[0]} to {names[-1]}"


def documents_in(db: Database[Document]) -> int:
    """Every ClaudeLens document the database holds."""
    names = [PROJECTS, SESSIONS, *_message_collections(db)]
    return sum(db[name].count_documents({}) for name in names)


def _fields(expected: Document, actual: Document) -> str:
    return ", ".join(sorted(k for k in set(expected) | set(actual)
                            if expected.get(k) != actual.get(k)))


def _missing_and_unexpected(what: str, expected: dict[str, Any],
                            actual: dict[str, Any]) -> list[str]:
    return ([f"missing {what} {key}" for key in sorted(set(expected) - set(actual))]
            + [f"unexpected {what} {key}" for key in sorted(set(actual) - set(expected))])


def _user_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    projects, got_projects = expected["projects"], actual["projects"]
    found = _missing_and_unexpected("project", projects, got_projects)
    found += [f"project {p}: {_fields(projects[p], got_projects[p])} differ"
              for p in sorted(set(projects) & set(got_projects)) if projects[p] != got_projects[p]]
    sessions, got_sessions = expected["sessions"], actual["sessions"]
    found += _missing_and_unexpected("session", sessions, got_sessions)
    for sid in sorted(set(sessions) & set(got_sessions)):
        (session, messages), (got, got_messages) = sessions[sid], got_sessions[sid]
        if session != got:
            found.append(f"session {sid}: {_fields(session, got)} differ")
        lost, extra = set(messages) - set(got_messages), set(got_messages) - set(messages)
        changed = [u for u in set(messages) & set(got_messages) if messages[u] != got_messages[u]]
        if lost or extra or changed:
            found.append(f"session {sid}: {len(lost)} messages missing, {len(extra)} "
                         f"unexpected, {len(changed)} changed "
                         f"({', '.join(sorted([*lost, *extra, *changed])[:3])})")
    return found


def differences(expected: Instance, actual: Instance) -> list[str]:
    """What `actual` lacks, has more of or has otherwise than `expected`, one line each."""
    found = _missing_and_unexpected("user", expected, actual)
    for user in sorted(set(expected) & set(actual)):
        found += [f"user {user}: {line}"
                  for line in _user_differences(expected[user], actual[user])]
    return found


def _counts(content: Instance) -> str:
    sessions = [s for user in content.values() for s in user["sessions"].values()]
    projects = sum(len(user["projects"]) for user in content.values())
    return (f"{len(content)} users, {projects} projects, {len(sessions)} sessions, "
            f"{sum(len(messages) for _, messages in sessions)} messages")


def compare(label: str, expected: Instance, actual: Instance) -> bool:
    found = differences(expected, actual)
    if not found:
        print(f"  {label}: identical ({_counts(actual)})")
        return True
    print(f"  {label}: {len(found)} DIFFERENCES")
    for line in found[:20]:
        print(f"    {line}")
    return False


# ------------------------------------------------------------------------------- changes


def _delete(db: Database[Document], session: Document) -> None:
    for name in _message_collections(db):
        db[name].delete_many({"sessionId": session["sessionId"]})
    db[SESSIONS].delete_one({"_id": session["_id"]})
    _count_in_project(db, session, -1)


def _count_in_project(db: Database[Document], session: Document, sign: int) -> None:
    # ClaudeLens keeps its projects' stats with its sessions; so does the demo's user
    count = session.get("messageCount")
    db[PROJECTS].update_one({"_id": session["projectId"]}, {"$inc": {
        "stats.session_count": sign, "stats.message_count": sign * (count or 0)}})


def _add_copy(db: Database[Document], like: Document, summary: str) -> str:
    """A new session (a copy of `like` under new ids, as ClaudeLens would write one now)."""
    session = copy.deepcopy(like)
    new_id, now = str(uuid.uuid4()), datetime.now(UTC)
    session.update({"_id": ObjectId(), "sessionId": new_id, "summary": summary,
                    "createdAt": now, "updatedAt": now})
    db[SESSIONS].insert_one(session)
    for name in _message_collections(db):
        copies = [_message_copy(m, new_id) for m in db[name].find({"sessionId": like["sessionId"]})]
        if copies:
            db[name].insert_many(copies)
    _count_in_project(db, session, +1)
    return new_id


def _message_copy(message: Document, session_id: str) -> Document:
    fresh = {**message, "_id": ObjectId(), "sessionId": session_id, "uuid": str(uuid.uuid4()),
             "parentUuid": None}
    if isinstance(fresh.get("content"), str) and "contentHash" in fresh:
        fresh["contentHash"] = content_hash(fresh["uuid"], fresh["type"], fresh["timestamp"],
                                            fresh["content"])
    return fresh


def change(db: Database[Document], round_name: str) -> str:
    """Every user's sessions added, edited and deleted, as their activity would. Says what."""
    done: list[str] = []
    for user in users_of(db):
        sessions = sessions_of(db, user)
        edited, deleted, model = (sessions[sid] for sid in sorted(sessions)[:3])
        db[SESSIONS].update_one({"_id": edited["_id"]}, {"$set": {
            "summary": f"renamed in {round_name}", "updatedAt": datetime.now(UTC)}})
        _delete(db, deleted)
        added = _add_copy(db, model, f"new in {round_name}")
        done.append(f"user {user[-4:]}: edited {edited['sessionId'][:8]}, deleted "
                    f"{deleted['sessionId'][:8]}, added {added[:8]}")
    return "\n              ".join(done)


# ------------------------------------------------------------------------------- backups


def backup(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    created = client.call("POST", "/backups", 202, json={"scope": "instance", **body})
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


def restore(client: Client, body: dict[str, Any], read: int) -> dict[str, Any]:
    """An instance restore of `body`, `read` bytes of Extended JSON (its chain's), timed."""
    started = time.monotonic()
    created = client.call("POST", "/restores", 202, json={"target": "instance", **body})
    job = client.until(f"/restores/{created['jobId']}", {"succeeded", "failed", "cancelled"})
    seconds = time.monotonic() - started
    if job["status"] != "succeeded":
        raise SystemExit(f"restore {job['jobId']} {job['status']}: {job.get('error')} "
                         f"{job.get('report', {}).get('errors')}")
    sessions = job["outcome"]["sessions"]
    print(f"  restore {job['jobId']} ({body['mode']}, {len(job.get('shards') or [])} shards) of "
          f"chain {' -> '.join(job['chain'])}:")
    print(f"              {sessions['inserted']} inserted, {sessions['replaced']} replaced, "
          f"{sessions.get('removed', 0)} removed, {sessions['unchanged']} unchanged; "
          f"{read:,} B of Extended JSON in {seconds:.1f} s: {read / MB / seconds:.2f} MB/s")
    return job


def rollback(client: Client, job_id: str) -> bool:
    client.call("POST", f"/restores/{job_id}/rollback", 202)
    rolled = client.until(f"/restores/{job_id}", {"rolled_back", "failed"})
    print(f"  rollback    {rolled['status']}")
    return bool(rolled["status"] == "rolled_back")


def demo(stack: LocalStack, database: str) -> bool:
    """The scenario on a seeded database (and an empty one beside it, dropped afterwards);
    True when every comparison is identical."""
    client = Client(stack, ADMIN)
    db = connect(stack.mongo_uri, database)
    fresh = db.client[f"{database}_empty_instance"]
    db.client.drop_database(fresh.name)
    try:
        print(f"\nThe chain (instance backups by administrator {ADMIN}: "
              f"{_counts(instance_content(db))})")
        base = backup(client, {"name": "demo full"})
        # nx-27017, the local MongoDB, compares an instance backup's dates to the second: the
        # changes go in a second after the base's watermark, so the increment's window (after
        # it) holds them, as it would to the millisecond on MongoDB
        time.sleep(1.1)
        print(f"  changes     {change(db, 'round 1')}")
        increment = backup(client, {"name": "demo increment", "type": "incremental",
                                    "parentId": base["backupId"]})
        at_increment = instance_content(db)
        intact = all([verify(client, base["backupId"]), verify(client, increment["backupId"])])

        print(f"\nThe chain restored into an empty instance (database {fresh.name}: "
              f"{documents_in(fresh)} documents)")
        chain_bytes = base["sizes"]["uncompressed"] + increment["sizes"]["uncompressed"]
        with functions_on(fresh.name):
            job = restore(client, {"backupId": increment["backupId"], "mode": "full",
                                   "conflicts": "overwrite"}, chain_bytes)
            chain_ok = compare("the new instance vs the source at the increment",
                               at_increment, instance_content(fresh))
            # an empty database has no message layout yet: the restore writes the one the
            # backup records (its source's), so the new instance finds them where it writes
            placed = _holding_messages(fresh) == _holding_messages(db)
            where = ("the same collections as the source" if placed
                     else f"the source: {_layout(db)}")
            print(f"  messages in: {_layout(fresh)} ({where})")
            emptied = rollback(client, job["jobId"]) and documents_in(fresh) == 0
            print(f"  the new instance after the rollback: {documents_in(fresh)} documents")

        print("\nA full restore over changed data, rolled back")
        print(f"  changes     {change(db, 'round 2')}")
        before = instance_content(db)
        job = restore(client, {"backupId": base["backupId"], "mode": "full",
                               "conflicts": "overwrite"}, base["sizes"]["uncompressed"])
        rollback_ok = rollback(client, job["jobId"]) and compare(
            "the instance vs before the restore", before, instance_content(db))
    finally:
        db.client.drop_database(fresh.name)
        db.client.close()
    ok = intact and chain_ok and placed and emptied and rollback_ok
    print(f"\n{'identical: every comparison matched' if ok else 'DIFFERENT (above)'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions-per-project", type=int, default=5)
    args = parser.parse_args(argv)
    print("Starting the local stack (moto, Step Functions with the real ASL, MongoDB wire "
          "server, REST and WebSocket gateways)...")
    with LocalStack() as stack:
        # the functions' INFO logs and metrics are noise here (their logger exists already)
        os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
        logging.getLogger(SERVICE).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", "No application metrics to publish")
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
