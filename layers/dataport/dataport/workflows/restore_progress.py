"""A restore in shards counts the records its shards restored (workflows.restore_shards):
each shard folds its own count into the restore's progress at most once a second (from its
execution's pulse), and once more, to its whole, when it ends; never per record.

A shard's count is what its staging says is done: the sessions its execution finished and
their messages (one aggregate over its staged index, a few thousand entries at most), so a
count survives a new invocation, a retry or a hand-over without any state of its own. The
restore's row keeps each shard's last fold (`folded`), so a fold adds only what is new.
"""

from __future__ import annotations

from dataport.jobs.store import JobStore
from dataport.models.jobs import Job, JobKind
from dataport.observability import logger
from dataport.progress import throttle
from dataport.progress.publisher import publish_claimed
from dataport.source.staging import DONE, INDEX, Staging

#: the progress phase of a restore while its shards run (`current` of `total` records)
RESTORING = "restoring"


def records_done(staging: Staging) -> int:
    """The sessions an execution finished, and their messages."""
    found = list(staging.collection.aggregate([
        {"$match": {"g": {"$gte": staging.key(INDEX), "$lt": f"{staging.job_id}:{INDEX};"},
                    "st": DONE}},
        {"$group": {"_id": None, "sessions": {"$sum": 1}, "messages": {"$sum": "$m"}}}]))
    if not found:
        return 0
    return int(found[0]["sessions"]) + int(found[0]["messages"])


def fold(store: JobStore, shard: Job, staging: Staging) -> None:
    """What this shard restored so far into its restore's progress (a shard of a restore in
    shards only; a dry run writes nothing to count: its shards count as they end), the event
    claimed in the same write when the throttle allows it. A courtesy: a failure here fails
    nothing."""
    if shard.kind is not JobKind.RESTORE or shard.restore_state.parent_id is None:
        return
    if shard.import_state.decision is not None and shard.import_state.decision.dry_run:
        return
    parent = shard.restore_state.parent_id
    try:
        folded = store.fold_records(parent, shard.job_id, records_done(staging), RESTORING,
                                    claim_at_ms=throttle.now_ms(),
                                    min_interval_ms=throttle.MIN_INTERVAL_MS)
    except Exception:  # progress must never fail a restore
        logger.warning("records not folded into the restore's progress",
                       extra={"job_id": shard.job_id, "parent_id": parent})
        return
    if folded is not None and folded[1]:
        publish_claimed(folded[0])
