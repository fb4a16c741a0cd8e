"""The demo's second half: the exported package imported into another user's empty account.

Over HTTP as a client would: POST /imports, the file straight to S3 through the presigned POST,
POST /validate, the report, POST /execute (merge), the outcome; then the two accounts' totals,
read from MongoDB, side by side.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from bson import ObjectId

from dataport.source.collections import PROJECTS, SESSIONS
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack

#: a user with no data in the seeded database
NEWCOMER_ID = "66ad9b005f2b4a0012c0bbbb"
IMPORTABLE = {"json", "jsonl", "csv"}


def round_trip(stack: LocalStack, package: Path, export_format: str, database: str) -> bool:
    if export_format not in IMPORTABLE:
        print(f"\n({export_format} packages are for reading, not importing: no round trip)")
        return True
    api, headers = stack.rest_url, stack.auth_headers(NEWCOMER_ID)
    print(f"\nImporting {package.name} into an empty account ({NEWCOMER_ID})")
    answer = requests.post(f"{api}/imports", headers=headers, timeout=10, json={
        "filename": package.name, "size": package.stat().st_size})
    if answer.status_code != 201:
        print(f"POST /imports answered {answer.status_code}: {answer.text}")
        return False
    created = answer.json()
    job_id, form = created["jobId"], created["upload"]
    started = time.monotonic()
    with package.open("rb") as file:  # to S3 directly: never through API Gateway
        requests.post(form["url"], data=form["fields"], files={"file": (package.name, file)},
                      timeout=120).raise_for_status()
    requests.post(f"{api}/imports/{job_id}/validate", headers=headers,
                  timeout=10).raise_for_status()
    print(f"POST /imports -> 201, job {job_id}; uploaded to S3, validating")
    job = _wait(api, headers, job_id, {"awaiting_decision", "failed"})
    _show_report(job["report"])
    if job["status"] != "awaiting_decision":
        print(f"import {job['status']}: {job.get('error')}")
        return False
    requests.post(f"{api}/imports/{job_id}/execute", headers=headers, timeout=10,
                  json={"strategy": "merge"}).raise_for_status()
    job = _wait(api, headers, job_id, {"succeeded", "failed"})
    elapsed = time.monotonic() - started
    if job["status"] != "succeeded":
        print(f"import {job['status']}: {job.get('error')}")
        return False
    outcome = job["outcome"]
    sessions, messages = outcome["sessions"], outcome["messages"]
    print(f"POST /execute (merge) -> {job['status']} in {elapsed:.1f} s")
    print(f"  sessions  {sessions['inserted']} inserted, {sessions['merged']} merged, "
          f"{sessions['replaced']} replaced, {sessions['skipped']} skipped, "
          f"{sessions['unchanged']} unchanged ({sessions['copies']} as copies: the ids are "
          "another account's)")
    print(f"  messages  {messages['inserted']} inserted, {messages['updated']} updated, "
          f"{messages['unchanged']} unchanged; {outcome['projectsCreated']} projects created")
    return _compare(stack, database)


def _wait(api: str, headers: dict[str, str], job_id: str, until: set[str],
          timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = requests.get(f"{api}/imports/{job_id}", headers=headers,
                                           timeout=10).json()
        progress = job["progress"]
        line = f"{job['status']:<18} {progress['phase']:<18} {progress['current']}/" \
               f"{progress['total']}"
        print(f"\r  {line:<60}", end="", flush=True)
        if job["status"] in until:
            print()
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"\nimport {job_id} did not get to {until} within {timeout:.0f} s")
        time.sleep(0.2)


def _show_report(report: dict[str, Any]) -> None:
    counts, dates, conflicts = report["counts"], report["dateRange"], report.get("conflicts")
    print(f"  report    {report['format']} v{report['version']}: {counts['projects']} projects, "
          f"{counts['sessions']} sessions, {counts['messages']} messages, "
          f"{dates.get('start', '?')[:10]} .. {dates.get('end', '?')[:10]}")
    print(f"            {report['errorsTotal']} errors, {report['warningsTotal']} warnings")
    for issue in report["errors"][:5]:
        print(f"            ! {issue['code']}: {issue['message']}")
    if conflicts:
        print(f"  conflicts {conflicts['newSessions']} new, {conflicts['changedSessions']} "
              f"changed, {conflicts['identicalSessions']} identical sessions")


def _compare(stack: LocalStack, database: str) -> bool:
    """The two accounts' statistics, from what is stored: the same, recomputed on import."""
    db = connect(stack.mongo_uri, database)
    try:
        rows = {who: _totals(db, user) for who, user in
                (("exporter", seed.DEMO_USER_ID), ("importer", NEWCOMER_ID))}
    finally:
        db.client.close()
    print("  totals    " + "   ".join(
        f"{who}: {sessions} sessions, {messages} messages, ${cost}"
        for who, (sessions, messages, cost) in rows.items()))
    same = rows["exporter"] == rows["importer"]
    print(f"            {'identical' if same else 'DIFFERENT'}")
    return same


def _totals(db: Any, user_id: str) -> tuple[int, int, Decimal]:
    projects = [p["_id"] for p in db[PROJECTS].find({"user_id": ObjectId(user_id)})]
    sessions = list(db[SESSIONS].find({"projectId": {"$in": projects}},
                                      {"messageCount": 1, "totalCost": 1}))
    return (len(sessions), sum(s["messageCount"] for s in sessions),
            sum((s["totalCost"].to_decimal() for s in sessions), Decimal(0)))
