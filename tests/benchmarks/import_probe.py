"""Run one import workflow task in a process of its own and report its peak memory, as a Lambda
would see it: `python -m tests.benchmarks.import_probe <task> < step.json`, where <task> is
validate, stage, execute or finalize.

The environment (endpoints, table names, MONGODB_URI...) is inherited from the benchmark, which
runs the local stack; stdout ends with {"step": ..., "baseline_rss": ..., "peak_rss": ...}
in bytes (baseline: after imports, before any work).
"""

from __future__ import annotations

import json
import sys

import infrastructure.local  # noqa: F401 (puts the layer on sys.path, as Lambda's /opt/python)
from dataport.models.tasks import ImportStep
from dataport.workflows import imports
from tests.benchmarks.worker_probe import BUDGET_MS, _rss


def main() -> int:
    task = sys.argv[1]
    step = ImportStep.model_validate_json(sys.stdin.read())
    baseline = _rss()
    if task == "validate":
        result = imports.validate(step)
    elif task == "stage":
        result = imports.stage(step)
    elif task == "execute":
        result = imports.execute(step, lambda: BUDGET_MS)
    else:
        result = imports.finalize(step)
    print(json.dumps({"step": result.wire(), "baseline_rss": baseline, "peak_rss": _rss()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
