"""Dispatcher benchmark: thousands of schedules due at the same minute, one tick, on the local
stack (moto DynamoDB: far slower per call than DynamoDB, so read the ratio, not the seconds).

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.schedule_bench [--schedules N]

Reported: the time to create them, the tick (query the due index, claim each run, record it),
runs started, and a second tick at the same time (a retried event): it must claim nothing.
The launcher starts nothing (tests/schedules/support.RecordingLauncher): this measures the
dispatcher's own work, not the backups it starts.
"""

from __future__ import annotations

import argparse
import secrets
import time
from datetime import UTC, datetime, timedelta

from dataport.models.schedules import ScheduleRecord
from dataport.schedule_store import ScheduleStore
from dataport.schedules.dispatch import tick
from dataport.scheduling.launcher import AdminKeys
from infrastructure.local.stack import LocalStack
from tests.schedules.support import RecordingLauncher

OWNER = "66ad9b005f2b4a0012c0aaaa"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=2000)
    args = parser.parse_args()
    with LocalStack():
        store = ScheduleStore()
        now = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
        started = time.perf_counter()
        for n in range(args.schedules):
            store.create(ScheduleRecord(
                schedule_id=secrets.token_hex(16), owner_id=OWNER, name=f"schedule {n}",
                expression="cron(0 * * * *)", timezone="Europe/Berlin", type="full",
                scope="user", keep_last=3, created_at=now - timedelta(days=1),
                updated_at=now - timedelta(days=1), anchor=now - timedelta(days=1),
                next_run_at=now))
        created = time.perf_counter() - started
        launcher = RecordingLauncher()
        started = time.perf_counter()
        first = tick(now + timedelta(seconds=3), store, launcher, AdminKeys())
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = tick(now + timedelta(seconds=3), store, launcher, AdminKeys())
        again_s = time.perf_counter() - started
    print(f"schedules: {args.schedules} (created in {created:.1f} s, {store.shards} shards)")
    print(f"tick: due {first.due}, claimed {first.claimed}, outcomes {first.outcomes}, "
          f"{first_s:.1f} s = {first.claimed / first_s:.0f} runs/s")
    print(f"same tick again: due {again.due}, claimed {again.claimed} ({again_s:.2f} s)")
    print(f"backups asked for: {len(launcher.started)}")


if __name__ == "__main__":
    main()
