"""`make demo [FORMAT=...]`: the main job end to end, over HTTP, on the local stack, driven by the
`dataport` command-line client (client/) as a person would drive it.

Seeds a realistic ClaudeLens database, then runs `dataport export --format FORMAT --wait` as the
demo user: the estimate, the live progress bar fed by the WebSocket API, the download bar, the
manifest check. Then it lists what arrived, and imports the package into another user's empty
account with `dataport import` (demo_import): upload bar, validation report, merge, and both
accounts' totals.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dataport.packaging.verify import verify_package
from dataport.source.mongo import connect
from infrastructure.local import seed
from infrastructure.local.cli import dataport
from infrastructure.local.demo_import import round_trip
from infrastructure.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


def run(export_format: str, out: Path, sessions_per_project: int) -> int:
    print("Starting the local stack (moto, Step Functions with the real ASL, MongoDB wire "
          "server, REST and WebSocket gateways)...")
    with LocalStack() as stack:
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the functions' INFO logs are noise here
        db = connect(stack.mongo_uri, os.environ["MONGODB_DATABASE"])
        summary = seed.seed(db, sessions_per_project=sessions_per_project)
        db.client.close()
        print(f"Seeded {summary.sessions} sessions and {summary.messages} messages for "
              f"{len(summary.users)} users\n")
        out.mkdir(parents=True, exist_ok=True)
        before = set(out.glob("*.zip"))
        started = time.monotonic()
        code = dataport(stack, seed.DEMO_USER_ID, "export", "--format", export_format,
                        "--wait", "-o", f"{out}/")
        if code != 0:
            print(f"dataport export ended with exit code {code}", file=sys.stderr)
            return 1
        arrived = sorted(set(out.glob("*.zip")) - before, key=lambda p: p.stat().st_mtime)
        if not arrived:
            print("dataport export left no package in out/", file=sys.stderr)
            return 1
        path = arrived[-1]
        verified = _show_package(path, time.monotonic() - started)
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
