"""A scheduled run acts as its owner, who must still exist: ClaudeLens keeps no user directory
dataport can read, so an owner who owns no project any more (their data deleted: they left) is
refused, recorded `refused` with `owner_not_found`, and no backup is made; once they own data
again, the next run backs it up. The real launcher, the dispatcher's rule fired by the local
stack's clock, real MongoDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from pymongo.database import Database

from dataport.source.collections import PROJECTS
from dataport.source.mongo import Document
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, backup_ended, seeded_db
from tests.schedules.support import create, show

LEAVER = "66ad9b005f2b4a0012c0dddd"  # owns nothing in the seeded database


@pytest.fixture
def db(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database[Document]]:
    with seeded_db(monkeypatch, fresh_stack, "dataport_departed_owner") as database:
        yield database


def test_a_run_of_an_owner_who_owns_nothing_is_refused_and_makes_no_backup(
        db: Database[Document], fresh_stack: LocalStack) -> None:
    assert db[PROJECTS].find_one({"user_id": ObjectId(LEAVER)}) is None
    api = Api(fresh_stack, LEAVER)
    fresh_stack.clock.set(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    schedule_id = create(api, name="hourly", schedule={"expression": "rate(1 hour)"})[
        "scheduleId"]

    fired = fresh_stack.clock.advance(timedelta(hours=1), tick=timedelta(minutes=30))
    assert [f.error for f in fired if f.error] == []
    run = show(api, schedule_id)["lastRuns"][0]
    assert (run["outcome"], run["reason"]) == ("refused", "owner_not_found"), run
    assert not run.get("backupId")
    assert api.request("GET", "/backups").json()["backups"] == []

    db[PROJECTS].insert_one({"user_id": ObjectId(LEAVER), "name": "back",
                             "path": "/Users/leaver/back"})  # they own data again
    fired = fresh_stack.clock.advance(timedelta(hours=1), tick=timedelta(minutes=30))
    assert [f.error for f in fired if f.error] == []
    run = show(api, schedule_id)["lastRuns"][0]
    assert run["outcome"] != "refused", run
    backup = backup_ended(api, run["backupId"])
    assert backup["status"] == "completed", backup
    assert backup["counts"]["projects"] == 1
