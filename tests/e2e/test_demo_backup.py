"""`make demo-backup` cannot rot: its scenario runs on the local stack (a small seed) and must
report every comparison identical, the chain restored into an empty instance included."""

from __future__ import annotations

import re

import pytest

from infrastructure.local.demo_backup import demo
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import seeded_db


def test_the_backup_demo_restores_the_chain_into_an_empty_instance_and_rolls_back_identically(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with seeded_db(monkeypatch, fresh_stack, "dataport_demo_backup",
                   sessions_per_project=2) as db:
        assert demo(fresh_stack, db.name)
        assert f"{db.name}_empty_instance" not in db.client.list_database_names()  # dropped
    printed = capsys.readouterr().out
    assert "empty instance (database dataport_demo_backup_" in printed
    assert "instance: 0 documents)" in printed  # it was empty before the restore
    assert ("the new instance vs the source at the increment: identical (3 users, 9 projects"
            in printed)
    # the seed is monthly: the empty instance gets the layout the backup records, its source's
    assert re.search(r"messages in: \d+ collections, messages_2025_\d\d to messages_2025_\d\d "
                     r"\(the same collections as the source\)", printed), printed
    assert "the new instance after the rollback: 0 documents" in printed
    assert "the instance vs before the restore: identical (3 users" in printed
    assert "DIFFERENCES" not in printed
    assert "incremental" in printed
    assert "3 deletions" in printed  # one a user
    assert printed.count(" MB/s") == 4  # two backups, two restores
