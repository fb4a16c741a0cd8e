"""A backup chain read for its sessions only (the preview of an increment, backups.md): the
projects and sessions a restore takes, in sessionId order, and no `messages/` member read."""

from __future__ import annotations

import pytest

from dataport.imports.limits import BadInput
from dataport.models.imports import IssueCode
from dataport.models.records import RecordKind
from tests.restores.backups import flip_byte
from tests.restores.test_backup_reader import as_set, chain, session, source


@pytest.mark.parametrize("in_order", [True, False])
def test_a_chain_read_for_its_sessions_gives_the_restores_sessions_and_no_message(
        in_order: bool) -> None:
    links = chain()
    whole = [r for r in source(*links, in_order=True).records()
             if r.kind is not RecordKind.MESSAGE]
    sessions_only = list(source(*links, in_order=in_order, sessions_only=True).records())
    assert as_set(sessions_only) == as_set(whole)
    if in_order:
        assert [r.doc["sessionId"] for r in sessions_only if r.kind is RecordKind.SESSION] == [
            session(n)["sessionId"] for n in (1, 2, 3, 4, 6, 8, 9)]


def test_a_read_for_sessions_checks_the_sessions_and_leaves_the_messages_unread() -> None:
    third, first, second = chain()
    unread = flip_byte(first, "messages/00001-00001.jsonl.zst")
    assert list(source(third, unread, second, in_order=True, sessions_only=True).records())
    damaged = flip_byte(first, "sessions/00001-00000.jsonl.zst")
    with pytest.raises(BadInput) as refused:
        list(source(third, damaged, second, in_order=True, sessions_only=True).records())
    assert refused.value.issue.code == IssueCode.CHECKSUM_MISMATCH
