"""Export shards sized by work (issue 10, item 4).

A session weighs `messages_per_session` messages of work plus its own messages (its
`messageCount`): a shard aims at `target` sessions' worth (250 sessions, or 25,000 messages, at
the defaults), so every worker gets a useful share. There are never more shards than the
Distributed Map runs at once (`concurrency`), unless a shard would then exceed `limit` sessions'
worth: that keeps each shard's child execution far below Step Functions' 25,000 history events
at any size (tests/workflows/test_limits.py), the extra shards queueing behind the running ones.
Never more shards than sessions, never an empty shard (one empty shard when there is nothing
to export, so the package is still built), boundaries by sessionId keyset: `(after, upto]`,
the last shard open-ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import ceil


@dataclass(frozen=True)
class ShardSizing:
    target: int = 250  # sessions' worth of work a shard aims at
    limit: int = 20_000  # sessions' worth of work no shard exceeds (one session may)
    messages_per_session: int = 100  # a session weighs as much as this many messages
    concurrency: int = 8  # the Distributed Map's MaxConcurrency

    def weight(self, messages: int) -> int:
        """One session's work, in messages."""
        return self.messages_per_session + max(0, messages)

    def count(self, sessions: int, messages: int) -> int:
        """How many shards for this much work."""
        if sessions <= 0:
            return 1
        work = sessions * self.messages_per_session + max(0, messages)
        wanted = min(ceil(work / (self.target * self.messages_per_session)), self.concurrency)
        needed = ceil(work / (self.limit * self.messages_per_session))
        return max(1, min(sessions, max(wanted, needed)))


@dataclass(frozen=True)
class Bounds:
    after: str | None
    upto: str | None  # None: to the end


def cut(sessions: Iterable[tuple[str, int]], *, count: int, work: int,
        sizing: ShardSizing) -> Iterator[Bounds]:
    """Keyset bounds of `count` shards of about `work / count` each, from (sessionId,
    messageCount) in sessionId order. A cut is only made once a later session is seen, so no
    shard is ever empty; should fewer sessions come than counted, fewer shards are cut."""
    share = work / max(1, count)
    done = 0.0
    lower: str | None = None
    pending: str | None = None  # the key after which the next cut would go
    cuts = 0
    for key, messages in sessions:
        if pending is not None:
            yield Bounds(lower, pending)
            lower, pending = pending, None
            cuts += 1
        done += sizing.weight(messages)
        if cuts < count - 1 and done >= share * (cuts + 1):
            pending = key
    yield Bounds(lower, None)
