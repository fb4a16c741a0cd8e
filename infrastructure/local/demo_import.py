"""The demo's second half: the exported package imported into another user's empty account.

With the CLI as a person would: `dataport import PACKAGE --strategy merge --yes` uploads it
(straight to S3 through the presigned POST), shows the validation report, executes and prints
the outcome; then the two accounts' totals, read from MongoDB, side by side.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from bson import ObjectId

from dataport.source.collections import PROJECTS, SESSIONS
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.cli import dataport
from infrastructure.local.stack import LocalStack

#: a user with no data in the seeded database
NEWCOMER_ID = "66ad9b005f2b4a0012c0bbbb"
IMPORTABLE = {"json", "jsonl", "csv"}


def round_trip(stack: LocalStack, package: Path, export_format: str, database: str) -> bool:
    if export_format not in IMPORTABLE:
        print(f"\n({export_format} packages are for reading, not importing: no round trip)")
        return True
    print(f"\nImporting {package.name} into an empty account ({NEWCOMER_ID})")
    code = dataport(stack, NEWCOMER_ID, "import", str(package), "--strategy", "merge", "--yes")
    if code != 0:
        print(f"dataport import ended with exit code {code}")
        return False
    return _compare(stack, database)


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
