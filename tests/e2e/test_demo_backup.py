"""`make demo-backup` cannot rot: its scenario runs on the local stack (a small seed) and must
report every comparison identical."""

from __future__ import annotations

import pytest

from infrastructure.local.demo_backup import demo
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import seeded_db


def test_the_backup_demo_restores_the_chain_and_rolls_back_identically(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with seeded_db(monkeypatch, fresh_stack, "dataport_demo_backup",
                   sessions_per_project=2) as db:
        assert demo(fresh_stack, db.name)
    printed = capsys.readouterr().out
    assert "the account vs the source at the increment: identical" in printed
    assert "the account vs before the restore: identical" in printed
    assert "DIFFERENCES" not in printed
    assert "incremental" in printed
    assert "1 deletions" in printed
