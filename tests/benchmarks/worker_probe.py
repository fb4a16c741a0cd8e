"""Run one export worker invocation in a process of its own and report its peak memory, as a
Lambda would see it: `python -m tests.benchmarks.worker_probe < cursor.json`.

The environment (endpoints, table names, MONGODB_URI...) is inherited from the benchmark, which
runs the local stack; the answer on stdout is {"cursor": ..., "baseline_rss": ..., "peak_rss": ...,
"seconds": ...}: RSS in bytes (baseline: after imports, before any work), seconds of run_shard
itself (without the process's start and imports). With WORKER_PROFILE=<file>, run_shard runs under
cProfile (its main thread) and the stats are written there (the peak then includes the profiler).
"""

from __future__ import annotations

import cProfile
import json
import os
import sys
import time

import infrastructure.local  # noqa: F401 (puts the layer on sys.path, as Lambda's /opt/python)
from dataport.heap import frozen_runtime
from dataport.models.tasks import ShardCursor
from dataport.workflows import export

#: the worker's own Lambda timeout: enough to finish a benchmark shard in one invocation
BUDGET_MS = 15 * 60 * 1000


def _rss() -> int:
    """Peak RSS of this process image. Not getrusage's ru_maxrss: Linux carries that over
    from the parent through fork and exec, so it would report the benchmark's own peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    cursor = ShardCursor.model_validate_json(sys.stdin.read())
    baseline = _rss()
    profile_to = os.environ.get("WORKER_PROFILE")
    profile = cProfile.Profile() if profile_to else None
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        with frozen_runtime():  # as the worker's Lambda handler runs it
            result = export.run_shard(cursor, lambda: BUDGET_MS)
    finally:
        if profile is not None:
            profile.disable()
    seconds = time.perf_counter() - started
    if profile is not None and profile_to:
        profile.dump_stats(profile_to)
    print(json.dumps({"cursor": result.wire(), "baseline_rss": baseline, "peak_rss": _rss(),
                      "seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
