"""A restore in shards counts the records its shards restored (workflows.restore_shards):
each shard folds its own count into the restore's progress at most once a second (from its
execution's pulse), and once more, to its whole, when it ends; never per record.

A shard's count is what its staging says is done: the sessions its execution finished and
their messages. An invocation reads that once, before it writes (its staged index entries
marked done: one indexed range query, a few thousand entries at most), and adds what its own
writes thread marks done after that (`Executor.records_marked`), so a count survives a new
invocation, a retry or a hand-over without any state of its own, and a fold costs the database
nothing. (It was an aggregate each second: nx-27017, the local server, runs a `$group` in
Python over the whole staging collection, every shard's; with five shards at once that was two
thirds of its time, docs/performance.md "Session 5: restores".) Each shard's row keeps its
last fold (`parent_folded`, written before the restore's count), so a fold
adds only what is new and the restore's row does not grow with its shards.
"""

from __future__ import annotations

from collections.abc import Callable

from dataport.jobs.store import JobStore
from dataport.models.jobs import Job, JobKind
from dataport.observability import logger
from dataport.progress import throttle
from dataport.progress.publisher import publish_claimed
from dataport.source.staging import DONE, INDEX, Staging

#: the progress phase of a restore while its shards run (`current` of `total` records)
RESTORING = "restoring"


def records_done(staging: Staging) -> int:
    """The sessions an execution finished, and their messages: the index entries marked done,
    read by their key range (what the local server answers from the index; an aggregate's
    `$match` it answers by reading the whole collection)."""
    entries = staging.collection.find(
        {"g": {"$gte": staging.key(INDEX), "$lt": f"{staging.job_id}:{INDEX};"}, "st": DONE},
        {"_id": 0, "m": 1}, batch_size=5000)
    return sum(1 + int(entry.get("m", 0)) for entry in entries)


def shard_count(shard: Job, staging: Staging, marked: Callable[[], int]
                ) -> Callable[[], int] | None:
    """What `fold` folds for a shard of a restore in shards (None for any other job, and for a
    dry run, which writes nothing to count: its shards count as they end): what its staging
    says is done when the invocation starts (read here, before it writes anything), plus what
    its execution marks done after that (`marked`, read at each fold)."""
    if shard.kind is not JobKind.RESTORE or shard.restore_state.parent_id is None:
        return None
    if shard.import_state.decision is not None and shard.import_state.decision.dry_run:
        return None
    try:
        before = records_done(staging)
    except Exception:  # progress must never fail a restore: this invocation's count, then
        logger.warning("records done not read", extra={"job_id": shard.job_id})
        before = 0
    return lambda: before + marked()


def fold(store: JobStore, shard: Job, done: Callable[[], int]) -> None:
    """What this shard restored so far (`done()`, its `shard_count`) into its restore's
    progress, the event claimed in the same write when the throttle allows it. A courtesy: a
    failure here fails nothing."""
    parent = shard.restore_state.parent_id
    if parent is None:
        return
    try:
        folded = store.fold_records(parent, shard.job_id, done(), RESTORING,
                                    claim_at_ms=throttle.now_ms(),
                                    min_interval_ms=throttle.MIN_INTERVAL_MS)
    except Exception:  # progress must never fail a restore
        logger.warning("records not folded into the restore's progress",
                       extra={"job_id": shard.job_id, "parent_id": parent})
        return
    if folded is not None and folded[1]:
        publish_claimed(folded[0])
