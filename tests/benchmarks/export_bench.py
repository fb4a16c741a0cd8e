"""Export benchmark (`make bench`): the real export through the local stack at two data sizes.

    .venv/bin/python -m tests.benchmarks.export_bench [--sizes 2000 20000] [--format json]

For each size it seeds one user's sessions into a fresh database, starts an export over HTTP,
waits for it, and reports messages/s, package MB/s (uncompressed bytes written per second of
export) and the peak memory of one export worker invocation. The worker's peak is measured with
running each `run_shard` invocation in a process of its own (worker_probe.py) and reading its
peak RSS, as Lambda reports it; one shard, so invocations never overlap.

The target: the worker's peak does not grow with the data set (within 10 %) and stays < 256 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from dataport.models.tasks import ShardCursor
from dataport.settings import get_settings
from dataport.source.mongo import connect, reset
from dataport.workflows import export as export_tasks
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack

MB = 1_000_000
ROOT = Path(__file__).resolve().parents[2]
PROJECTS = 10


@dataclass
class Result:
    sessions: int
    messages: int
    seconds: float
    uncompressed_bytes: int
    package_bytes: int
    worker_peak_bytes: int
    invocations: int

    def line(self) -> str:
        return (f"{self.sessions:>7,} sessions {self.messages:>9,} messages  "
                f"{self.seconds:7.1f} s  {self.messages / self.seconds:8,.0f} msg/s  "
                f"{self.uncompressed_bytes / MB / self.seconds:6.1f} MB/s  "
                f"package {self.package_bytes / MB:7.1f} MB  "
                f"worker peak RSS {self.worker_peak_bytes / 2**20:6.1f} MiB "
                f"over {self.invocations} invocations")


class WorkerMemory:
    """Runs each export worker invocation in a process of its own (tests/benchmarks/
    worker_probe.py) and keeps the heaviest one's peak RSS, as Lambda would report it."""

    def __init__(self) -> None:
        self.peak = 0
        self.baseline = 0
        self.invocations = 0
        self._original = export_tasks.run_shard

    def __enter__(self) -> WorkerMemory:
        def in_own_process(cursor: ShardCursor, _: Callable[[], int]) -> ShardCursor:
            answer = subprocess.run(
                [sys.executable, "-m", "tests.benchmarks.worker_probe"], check=True,
                input=cursor.model_dump_json(by_alias=True), capture_output=True, text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
            probe = json.loads(answer.stdout.strip().splitlines()[-1])
            self.peak = max(self.peak, probe["peak_rss"])
            self.baseline = max(self.baseline, probe["baseline_rss"])
            self.invocations += 1
            return ShardCursor.model_validate(probe["cursor"])

        export_tasks.run_shard = in_own_process  # type: ignore[assignment]
        return self

    def __exit__(self, *_: object) -> None:
        export_tasks.run_shard = self._original


def run_size(stack: LocalStack, sessions: int, export_format: str) -> Result:
    name = f"dataport_bench_{sessions}"
    db = connect(stack.mongo_uri, name)
    db.client.drop_database(name)
    started = time.monotonic()
    summary = seed.seed(db, users=1, projects_per_user=PROJECTS,
                        sessions_per_project=sessions // PROJECTS, messages_per_session=(4, 12))
    print(f"  seeded {summary.sessions:,} sessions / {summary.messages:,} messages in "
          f"{time.monotonic() - started:.0f} s")
    os.environ["MONGODB_DATABASE"] = name
    get_settings.cache_clear()
    reset()
    api, headers = stack.rest_url, stack.auth_headers(seed.DEMO_USER_ID)
    try:
        with WorkerMemory() as memory:
            started = time.monotonic()
            job_id = requests.post(f"{api}/exports", headers=headers, timeout=30,
                                   json={"format": export_format}).json()["jobId"]
            while (job := requests.get(f"{api}/exports/{job_id}", headers=headers,
                                       timeout=30).json())["status"] not in {
                    "succeeded", "failed", "cancelled"}:
                time.sleep(0.5)
            seconds = time.monotonic() - started
        if job["status"] != "succeeded":
            raise SystemExit(f"export {job['status']}: {job.get('error')}")
        manifest_bytes = job["progress"]["bytes"]
        return Result(sessions=job["counts"]["sessions"], messages=job["counts"]["messages"],
                      seconds=seconds, uncompressed_bytes=_uncompressed(stack, job_id) or
                      manifest_bytes, package_bytes=job["package"]["bytes"],
                      worker_peak_bytes=memory.peak, invocations=memory.invocations)
    finally:
        db.client.drop_database(name)
        db.client.close()


def _uncompressed(stack: LocalStack, job_id: str) -> int:
    """Sum of the data files' sizes, from the package's own manifest (read from S3)."""
    s3 = stack.client("s3")
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket,
                                                    Prefix=f"packages/{job_id}/")["Contents"])
    body = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    return int(manifest["compression"]["uncompressedBytes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--format", default="json")
    args = parser.parse_args(argv)
    os.environ["EXPORT_CONCURRENCY"] = "1"  # one shard: invocations never overlap
    os.environ["SHARD_MAX_SESSIONS"] = str(10**9)
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    results = []
    with LocalStack() as stack:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        for size in args.sizes:
            print(f"exporting {size:,} sessions as {args.format}...")
            results.append(run_size(stack, size, args.format))
            print("  " + results[-1].line())
    peaks = [r.worker_peak_bytes for r in results]
    growth = max(peaks) / min(peaks) - 1
    print(f"\nworker peak RSS grows {growth:+.1%} from the smallest to the largest size "
          f"(target within 10 %), max {max(peaks) / 2**20:.1f} MiB (target < 256 MiB)")
    return 0 if growth <= 0.10 and max(peaks) < 256 * 2**20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
