"""`make demo [FORMAT=...]`: the main job end to end, over HTTP, on the local stack.

Seeds a realistic ClaudeLens database, asks the REST API for an export as the demo user, follows
its progress live over the WebSocket API (a progress bar fed by job.progress events), downloads
the package through the presigned link into out/, verifies every file against the manifest's
SHA-256 and prints what arrived. Then it imports the package into another user's empty account
(demo_import): upload, validation report, merge, and both accounts' totals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

from dataport.packaging.verify import verify_package
from dataport.progress.events import EventProgress, JobEvent
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.demo_import import round_trip
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


def _bar(event: JobEvent, width: int = 30) -> str:
    progress: EventProgress = event.progress
    filled = int(width * progress.percentage / 100)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {progress.percentage:5.1f}% "
            f"{progress.phase:<10} {progress.current}/{progress.total} sessions  "
            f"{event.type} #{event.seq}")


def _watch(socket: ProgressSocket, job_id: str, timeout: float) -> None:
    """Draw the bar from the job's events until its end (the protocol: docs/progress.md)."""
    socket.subscribe(job_id)
    try:
        for event in socket.follow(job_id, timeout):
            print(f"\r  {_bar(event):<100}", end="", flush=True)
    except TimeoutError:
        raise SystemExit(f"\nexport {job_id} did not finish within {timeout:.0f} s") from None
    finally:
        print()


def _download(api: str, headers: dict[str, str], job_id: str, out: Path) -> Path:
    answer = requests.get(f"{api}/exports/{job_id}/download", headers=headers,
                          allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise SystemExit(f"download answered {answer.status_code}: {answer.text}")
    # The Location is a presigned URL (a credential): used, never printed.
    with requests.get(answer.headers["Location"], stream=True, timeout=60) as package:
        package.raise_for_status()
        disposition = package.headers.get("Content-Disposition", "")
        name = disposition.split("filename=")[-1].strip('"') or f"{job_id}.zip"
        out.mkdir(parents=True, exist_ok=True)
        target = out / name
        with target.open("wb") as file:
            for chunk in package.iter_content(1024 * 1024):
                file.write(chunk)
    return target


def run(export_format: str, out: Path, sessions_per_project: int) -> int:
    print("Starting the local stack (moto, Step Functions with the real ASL, MongoDB wire "
          "server, REST and WebSocket gateways)...")
    with LocalStack() as stack:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the functions' INFO logs are noise here
        db = connect(stack.mongo_uri, os.environ["MONGODB_DATABASE"])
        summary = seed.seed(db, sessions_per_project=sessions_per_project)
        db.client.close()
        print(f"Seeded {summary.sessions} sessions and {summary.messages} messages for "
              f"{len(summary.users)} users")
        api, headers = stack.rest_url, stack.auth_headers(seed.DEMO_USER_ID)

        started = time.monotonic()
        with ProgressSocket(stack.ws_url, stack.token_for(seed.DEMO_USER_ID)) as socket:
            answer = requests.post(f"{api}/exports", headers=headers, timeout=10,
                                   json={"format": export_format})
            if answer.status_code != 202:
                print(f"POST /exports answered {answer.status_code}: {answer.text}",
                      file=sys.stderr)
                return 1
            job_id = answer.json()["jobId"]
            print(f"POST /exports -> 202, job {job_id} ({export_format}); live progress from "
                  f"{stack.ws_url}")
            _watch(socket, job_id, timeout=300)
        job: dict[str, Any] = requests.get(f"{api}/exports/{job_id}", headers=headers,
                                           timeout=10).json()
        if job["status"] != "succeeded":
            print(f"export {job['status']}: {job.get('error')}", file=sys.stderr)
            return 1
        path = _download(api, headers, job_id, out)
        elapsed = time.monotonic() - started
        verified = _show_package(path, elapsed)
        imported = verified and round_trip(stack, path, export_format,
                                           os.environ["MONGODB_DATABASE"])
    return 0 if imported else 1


def _show_package(path: Path, elapsed: float) -> bool:
    result = verify_package(path)
    manifest = result.manifest
    print(f"\nDownloaded {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
          f"({path.stat().st_size:,} bytes) in {elapsed:.1f} s")
    print(f"  format    {manifest.format}")
    print(f"  counts    {manifest.counts.projects} projects, {manifest.counts.sessions} sessions, "
          f"{manifest.counts.messages} messages")
    print(f"  files     {len(manifest.files)} (+ manifest.json), "
          f"{manifest.compression.uncompressed_bytes:,} bytes uncompressed, "
          f"ratio {manifest.compression.ratio}")
    for entry in manifest.files[:8]:
        print(f"            {entry.path}  {entry.bytes:,} B  {entry.records} records  "
              f"sha256 {entry.sha256[:12]}...")
    if len(manifest.files) > 8:
        print(f"            ... and {len(manifest.files) - 8} more")
    print(f"  verified  {'every file matches its SHA-256' if result.ok else result.problems}")
    return result.ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--format", default="json",
                        choices=["json", "jsonl", "csv", "markdown", "pdf"])
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--sessions-per-project", type=int, default=5)
    args = parser.parse_args(argv)
    return run(args.format, args.out, args.sessions_per_project)


if __name__ == "__main__":
    raise SystemExit(main())
