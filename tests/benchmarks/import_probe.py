"""Run one import workflow task in a process of its own and report its peak memory, as a Lambda
would see it: `python -m tests.benchmarks.import_probe <task> < step.json`, where <task> is
validate, stage, execute or finalize.

The environment (endpoints, table names, MONGODB_URI...) is inherited from the benchmark, which
runs the local stack; stdout ends with {"step": ..., "baseline_rss": ..., "peak_rss": ...,
"cpu_seconds": ...}: RSS in bytes (baseline: after imports, before any work), and the CPU time
(user + system) of the task itself (imports excluded): on a loaded machine, where wall seconds
say little, what the task cost. With IMPORT_PROFILE=<directory>, the task
runs under cProfile and its stats are written to <directory>/<task>.prof (added to, when the task
runs more than once: one file holds every invocation of a task). With MONGO_COMMANDS=<directory>,
its MongoDB commands are counted (mongo_commands.py) into <directory>/<task>-<pid>.json.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

import infrastructure.local  # noqa: F401 (puts the layer on sys.path, as Lambda's /opt/python)
from dataport.heap import frozen_runtime
from dataport.models.tasks import ImportStep
from dataport.workflows import imports
from tests.benchmarks.mongo_commands import CommandTally
from tests.benchmarks.worker_probe import BUDGET_MS, _rss


def main() -> int:
    task = sys.argv[1]
    step = ImportStep.model_validate_json(sys.stdin.read())
    commands_to = os.environ.get("MONGO_COMMANDS")
    tally = CommandTally().start() if commands_to else None
    baseline = _rss()
    cpu_started = time.process_time()
    profile_to = os.environ.get("IMPORT_PROFILE")
    profile = cProfile.Profile() if profile_to else None
    if profile is not None:
        profile.enable()
    try:
        with frozen_runtime():  # as the task's Lambda handler runs it
            result = _run(task, step)
    finally:
        if profile is not None:
            profile.disable()
    if profile is not None and profile_to:
        _dump(profile, Path(profile_to) / f"{task}.prof")
    cpu = time.process_time() - cpu_started
    if tally is not None and commands_to:
        tally.write(Path(commands_to) / f"{task}-{os.getpid()}.json")
    print(json.dumps({"step": result.wire(), "baseline_rss": baseline, "peak_rss": _rss(),
                      "cpu_seconds": cpu}))
    return 0


def _run(task: str, step: ImportStep) -> ImportStep:
    if task == "validate":
        return imports.validate(step)
    if task == "stage":
        return imports.stage(step)
    if task == "execute":
        return imports.execute(step, lambda: BUDGET_MS)
    return imports.finalize(step)


def _dump(profile: cProfile.Profile, path: Path) -> None:
    """The task's stats, added to those of its earlier invocations in this run."""
    stats = pstats.Stats(profile)
    if path.exists():
        stats.add(str(path))
    stats.dump_stats(str(path))


if __name__ == "__main__":
    raise SystemExit(main())
