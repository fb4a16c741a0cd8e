"""Backups and restores against the raw pipelines, same data, same run (`make bench-backup`).

    .venv/bin/python -m tests.benchmarks.backup_bench [--mb 100] [--mb 25 ...] [--json out.json]
        [--only backup|restore|backup,restore] [--repeat N] [--profile [--profile-top N]]

For each `--mb` size (megabytes of canonical Extended JSON; the issue's size is 1 GB, too long
for the shared 2-core machine, so the default is 100 MB), one user's data set is generated into
the local stack's MongoDB (seed-like sessions: threads, tool calls, sidechains, exact costs) and:

backup    raw = pymongo find (projects, sessions by sessionId, their messages a page of sessions
          at a time) -> canonical Extended JSON (dataport.formats.extjson, orjson's fast path)
          -> zstd level 3 -> smart-open multipart upload to the same moto S3;
          dataport = POST /backups over HTTP until GET /backups/{id} says completed (plan, the
          worker, UploadPartCopy assembly, the whole object's SHA-256, the catalog).
          Ratio = raw s / dataport s. Goal >= 0.8.
restore   raw = the raw backup's object from S3 -> zstd -> bson.json_util -> insert_many (1,000
          per batch) into an empty database indexed like ClaudeLens; dataport = POST /restores
          (the backup by id, mode full) into an empty database until succeeded (every member
          checked, validation, staging, journal, execution). Ratio = raw s / dataport s.
          Goal >= 0.7.
memory    every export worker invocation (worker_probe.py) and every import task of the restore
          (import_probe.py) runs in a process of its own; its peak RSS (VmHWM) is reported per
          size: it must stay flat between sizes (a page of records and one upload part).

Both dataport runs use one shard (as ratios.py does: the raw pipelines are one stream each): the
restore runs as one import execution at any size unless `--shard-messages N` makes a backup of
more than N messages restore in shards (RESTORE_SHARD_MESSAGES). `--commands` counts the
restore's MongoDB commands per task (mongo_commands.py); the nx-27017 process's CPU during each
restore is printed, and with BENCH_PY_SPY=<py-spy binary> the server is sampled. The
load average is printed: on a shared machine compare ratios, not seconds. `--repeat N` takes N
backup pairs (raw, then dataport a moment later) per size and reports the median pair (the
restore, when asked for, runs once, from the last pair's backups); `--only backup` skips the
restores; `--profile` runs one more dataport backup per size with its worker under cProfile
(worker_probe.py's WORKER_PROFILE; the stats go to tests/output/bench/) and, when the restore is
measured, one more dataport restore with its tasks under cProfile (import_probe.py's
IMPORT_PROFILE: one file per task), and prints the top entries of each.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import pstats
import signal
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import smart_open
import zstandard
from bson import ObjectId, json_util
from bson.decimal128 import Decimal128
from pymongo.database import Database

import infrastructure.local  # noqa: F401 (puts the layer on sys.path, as Lambda's /opt/python)
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.formats.extjson import canonical_json_bytes
from dataport.heap import freezes_runtime
from dataport.observability import logger
from dataport.source.collections import (
    PROJECTS,
    SESSIONS,
    Layout,
    collection_name_for,
    ensure_indexes,
    ensure_message_indexes,
    message_collections,
)
from dataport.source.mongo import Document, connect
from infrastructure.local import seed
from infrastructure.local.stack import LocalStack
from tests.benchmarks import mongo_commands
from tests.benchmarks.import_bench import TaskMemory
from tests.benchmarks.ratios import (
    MIB,
    OUTPUT,
    RAW_BATCH,
    RAW_PAGE,
    RAW_PART_SIZE,
    Meter,
    _load,
    _set_shards,
    _use_database,
    parts_of,
    stats_top,
    workers_in_processes,
)

MB = 1_000_000
USER = seed.DEMO_USER_ID
PROJECT_COUNT = 10
ZSTD_LEVEL = 3  # dataport's BackupZstdLevel default
BACKUP_GOAL, RESTORE_GOAL = 0.8, 0.7
INSERT_BATCH = 2000
PARTS = ("backup", "restore")
PROFILES = OUTPUT
#: RESTORE_SHARD_MESSAGES without --shard-messages: every size restores as one execution
SHARDLESS = 10**9
#: set by --commands: the restore's MongoDB commands counted per task (mongo_commands.py)
COUNT_COMMANDS = "BENCH_COUNT_COMMANDS"


# ---------------------------------------------------------------------------- the data set


def generate(db: Database[Document], target_bytes: int, seed_value: int = 23) -> dict[str, int]:
    """One user's projects, sessions and messages (monthly layout) until their canonical
    Extended JSON passes `target_bytes`; what was written."""
    ensure_indexes(db)
    rng = seed._Rng(seed_value)
    start = datetime(2025, 6, 2, 8, tzinfo=UTC)
    owner = ObjectId(USER)
    projects = [{"_id": rng.object_id(start), "user_id": owner, "name": f"project-{i}",
                 "path": f"/Users/bench/src/project-{i}", "createdAt": start,
                 "updatedAt": start} for i in range(PROJECT_COUNT)]
    db[PROJECTS].insert_many(projects)
    size = sum(len(canonical_json_bytes(p)) + 1 for p in projects)
    sessions = messages = 0
    pending: dict[str, list[Document]] = defaultdict(list)
    while size < target_bytes:
        project = projects[sessions % PROJECT_COUNT]
        session_id = rng.uuid()
        totals = seed._Conversation(rng, session_id, start + timedelta(minutes=17 * sessions),
                                    str(project["path"])).run(rng.randint(20, 80))
        times = [doc["timestamp"] for doc in totals.documents]
        session: Document = {
            "_id": rng.object_id(min(times)), "sessionId": session_id,
            "projectId": project["_id"], "startedAt": min(times), "endedAt": max(times),
            "messageCount": len(totals.documents), "totalCost": Decimal128(totals.cost),
            "inputTokens": totals.input_tokens, "outputTokens": totals.output_tokens,
            "totalTokens": totals.input_tokens + totals.output_tokens,
            "toolsUsed": totals.tools, "summary": rng.choice(seed.SUMMARIES),
            "createdAt": min(times), "updatedAt": max(times)}
        for doc in (session, *totals.documents):
            size += len(canonical_json_bytes(doc)) + 1
        pending[SESSIONS].append(session)
        for doc in totals.documents:
            pending[collection_name_for(Layout.MONTHLY, doc["timestamp"])].append(doc)
        sessions += 1
        messages += len(totals.documents)
        if sum(len(batch) for batch in pending.values()) >= INSERT_BATCH:
            _flush(db, pending)
    _flush(db, pending)
    return {"sessions": sessions, "messages": messages, "bytes": size}


def _flush(db: Database[Document], pending: dict[str, list[Document]]) -> None:
    for name, batch in pending.items():
        if batch:
            db[name].insert_many(batch, ordered=False)
    pending.clear()


# ---------------------------------------------------------------------------- raw pipelines


def _lines(db: Database[Document]) -> Iterator[bytes]:
    """Projects, then pages of sessions (by sessionId) each followed by their messages."""
    names = message_collections(db)
    projects = list(db[PROJECTS].find({"user_id": ObjectId(USER)}))
    for project in projects:
        yield canonical_json_bytes(project) + b"\n"
    page: list[Document] = []

    def flush() -> Iterator[bytes]:
        ids = [s["sessionId"] for s in page]
        # bounds next to the $in: nx-27017 scans a bare $in (ratios.py says why)
        query = {"sessionId": {"$in": ids, "$gte": min(ids), "$lte": max(ids)}}
        chunk = bytearray()
        for session in page:
            chunk += canonical_json_bytes(session) + b"\n"
        for name in names:
            for message in db[name].find(query, batch_size=500):
                chunk += canonical_json_bytes(message) + b"\n"
        page.clear()
        yield bytes(chunk)

    for session in db[SESSIONS].find({"projectId": {"$in": [p["_id"] for p in projects]}},
                                     sort=[("sessionId", 1)], batch_size=RAW_PAGE):
        page.append(session)
        if len(page) == RAW_PAGE:
            yield from flush()
    if page:
        yield from flush()


@freezes_runtime  # as dataport's tasks: the stack's objects are neither side's cost
def raw_backup(stack: LocalStack, db: Database[Document], key: str) -> tuple[float, int, int]:
    """find -> Extended JSON -> zstd -> S3 multipart. (seconds, JSON bytes, stored bytes)."""
    written = 0
    started = time.perf_counter()
    with smart_open.open(f"s3://{stack.bucket}/{key}", "wb", compression="disable",
                         transport_params={"client": stack.client("s3"),
                                           "min_part_size": RAW_PART_SIZE}) as out, \
            zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).stream_writer(
                out, closefd=False) as compressed:
        for chunk in _lines(db):
            compressed.write(chunk)
            written += len(chunk)
    seconds = time.perf_counter() - started
    stored = stack.client("s3").head_object(Bucket=stack.bucket, Key=key)["ContentLength"]
    return seconds, written, int(stored)


@freezes_runtime  # as dataport's tasks: the stack's objects are neither side's cost
def raw_restore(stack: LocalStack, key: str, db: Database[Document]) -> tuple[float, int]:
    """S3 -> zstd -> bson.json_util -> insert_many into `db` (empty, indexed like ClaudeLens: a
    message collection gets its indexes when first written, as the restore's do, the same rule
    as ratios.raw_import). (seconds, messages)."""
    ensure_indexes(db)
    pending: dict[str, list[Document]] = defaultdict(list)
    messages = 0
    started = time.perf_counter()
    with smart_open.open(f"s3://{stack.bucket}/{key}", "rb", compression="disable",
                         transport_params={"client": stack.client("s3")}) as source, \
            io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(source)) as lines:
        for line in lines:
            doc = json_util.loads(line, json_options=EXTENDED_JSON_READ_OPTIONS)
            if "uuid" in doc:
                collection = collection_name_for(Layout.MONTHLY, doc["timestamp"])
                messages += 1
                if collection not in pending:
                    ensure_message_indexes(db[collection])
            else:
                collection = SESSIONS if "sessionId" in doc else PROJECTS
            batch = pending[collection]
            batch.append(doc)
            if len(batch) >= RAW_BATCH:
                db[collection].insert_many(batch, ordered=False)
                batch.clear()
    _flush(db, pending)
    return time.perf_counter() - started, messages


# ---------------------------------------------------------------------------- dataport


def _until(stack: LocalStack, path: str, ended: set[str], timeout: float = 7200) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(f"{stack.rest_url}{path}", headers=stack.auth_headers(USER),
                            timeout=30).json()
        if body["status"] in ended:
            return body
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} still {body['status']} after {timeout:.0f} s")
        time.sleep(0.1)


def dataport_backup(stack: LocalStack, name: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = requests.post(f"{stack.rest_url}/backups", headers=stack.auth_headers(USER),
                           json={"name": name}, timeout=30)
    answer.raise_for_status()
    made = _until(stack, f"/backups/{answer.json()['backupId']}",
                  {"completed", "failed", "corrupted", "expired"})
    seconds = time.perf_counter() - started
    if made["status"] != "completed":
        raise SystemExit(f"backup {made['status']}: {made.get('error')}")
    return seconds, made


def dataport_restore(stack: LocalStack, backup_id: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = requests.post(f"{stack.rest_url}/restores", headers=stack.auth_headers(USER),
                           json={"backupId": backup_id, "mode": "full",
                                 "conflicts": "overwrite"}, timeout=30)
    answer.raise_for_status()
    job = _until(stack, f"/restores/{answer.json()['jobId']}",
                 {"succeeded", "failed", "cancelled"})
    seconds = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise SystemExit(f"restore {job['status']}: {job.get('error')} "
                         f"{job.get('report', {}).get('errors')}")
    return seconds, job


# ---------------------------------------------------------------------------- one size


@dataclass
class SizeResult:
    mb: float
    sessions: int
    messages: int
    json_bytes: int
    raw_backup_s: float  # of the median pair
    backup_s: float
    raw_stored: int
    stored: int
    backup_worker_peak_mib: float
    backup_worker_s: float  # run_shard's own seconds (the worker process's start excluded)
    backup_ratios: list[float] = field(default_factory=list)  # every pair's
    raw_restore_s: float = 0.0  # restore figures: 0 when the restore was not measured
    restore_s: float = 0.0
    restored_messages: int = 0
    restore_task_peaks_mib: dict[str, float] = field(default_factory=dict)
    restore_task_seconds: dict[str, float] = field(default_factory=dict)
    restore_task_cpu_seconds: dict[str, float] = field(default_factory=dict)
    raw_restore_server_cpu_s: float = 0.0  # the nx-27017 process's CPU during each restore
    restore_server_cpu_s: float = 0.0
    restore_shards: int = 0  # 0: one import execution
    restore_commands: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)
    restore_profiles: dict[str, list[str]] = field(default_factory=dict)

    @property
    def backup_ratio(self) -> float:
        return self.raw_backup_s / self.backup_s

    @property
    def restore_ratio(self) -> float:
        return self.raw_restore_s / self.restore_s if self.restore_s else 0.0


def _count_messages(db: Database[Document]) -> int:
    return sum(db[name].count_documents({}) for name in message_collections(db))


@dataclass
class _Pair:
    raw_s: float
    raw_json: int
    raw_stored: int
    key: str
    backup_s: float
    made: dict[str, Any]
    peak: int
    worker_s: float

    @property
    def ratio(self) -> float:
        return self.raw_s / self.backup_s


def _backup_pair(stack: LocalStack, db: Database[Document], source: str,
                 megabytes: float) -> _Pair:
    """A raw backup, then a dataport backup a moment later (the same load, as far as it goes)."""
    key = f"bench/raw-{uuid.uuid4().hex}.jsonl.zst"
    raw_s, raw_json, raw_stored = raw_backup(stack, db, key)
    print(f"  raw backup      {raw_s:7.1f} s  {raw_json / MB / raw_s:6.2f} MB/s  "
          f"ratio {raw_json / raw_stored:.1f}; load {_load()}")
    _use_database(source)
    with Meter(stack) as meter, workers_in_processes() as probe:
        started = time.perf_counter()
        backup_s, made = dataport_backup(stack, f"bench {megabytes:g} MB")
        tasks: dict[str, float] = defaultdict(float)
        for span in meter.task_spans(started, time.perf_counter()):
            tasks[span.logical_id.removesuffix("Function")] += span.ended - span.started
    sizes = made["sizes"]
    print(f"  dataport backup {backup_s:7.1f} s  {sizes['uncompressed'] / MB / backup_s:6.2f}"
          f" MB/s  ratio {sizes['uncompressed'] / sizes['stored']:.1f}  worker peak "
          f"{max(probe.peaks) / MIB:.0f} MiB, run_shard {sum(probe.seconds):.1f} s  -> "
          f"{raw_s / backup_s:.2f} of raw")
    print("    tasks (the worker's in a process of its own, start included): " + ", ".join(
        f"{name} {seconds:.1f} s" for name, seconds in tasks.items())
          + f"; outside tasks {backup_s - sum(tasks.values()):.1f} s")
    return _Pair(raw_s, raw_json, raw_stored, key, backup_s, made, max(probe.peaks),
                 sum(probe.seconds))


def _profile_backup(stack: LocalStack, source: str, megabytes: float, top: int) -> list[str]:
    """One more dataport backup with its worker under cProfile (worker_probe WORKER_PROFILE)."""
    path = PROFILES / f"backup-worker-{megabytes:g}mb.prof"
    path.parent.mkdir(parents=True, exist_ok=True)
    _use_database(source)
    os.environ["WORKER_PROFILE"] = str(path)
    try:
        with workers_in_processes():
            dataport_backup(stack, f"bench {megabytes:g} MB profiled")
    finally:
        del os.environ["WORKER_PROFILE"]
    return stats_top(pstats.Stats(str(path)), top)


def measure(stack: LocalStack, megabytes: float, *, parts: tuple[str, ...] = PARTS,
            repeat: int = 1, profile_top: int = 0) -> SizeResult:
    source, raw_target, target = (f"bench_backup_{kind}" for kind in ("source", "raw", "restore"))
    db = connect(stack.mongo_uri, source)
    try:
        for name in (source, raw_target, target):
            db.client.drop_database(name)
        started = time.monotonic()
        data = generate(db, int(megabytes * MB))
        print(f"\n{megabytes:g} MB: {data['sessions']:,} sessions, {data['messages']:,} "
              f"messages, {data['bytes'] / MB:.1f} MB of Extended JSON (generated in "
              f"{time.monotonic() - started:.0f} s); load {_load()}")
        pairs: list[_Pair] = []
        for _ in range(repeat if "backup" in parts else 1):
            pairs.append(_backup_pair(stack, db, source, megabytes))
            if len(pairs) < repeat:
                stack.client("s3").delete_object(Bucket=stack.bucket, Key=pairs[-1].key)
        median = sorted(pairs, key=lambda pair: pair.ratio)[len(pairs) // 2]
        made, sizes = median.made, median.made["sizes"]
        result = SizeResult(
            mb=megabytes, sessions=data["sessions"], messages=data["messages"],
            json_bytes=int(sizes["uncompressed"]), raw_backup_s=median.raw_s,
            backup_s=median.backup_s, raw_stored=median.raw_stored, stored=int(sizes["stored"]),
            backup_worker_peak_mib=round(max(pair.peak for pair in pairs) / MIB, 1),
            backup_worker_s=round(median.worker_s, 2),
            backup_ratios=[round(pair.ratio, 3) for pair in pairs])
        if profile_top and "backup" in parts:
            result.profile = _profile_backup(stack, source, megabytes, profile_top)
        key = pairs[-1].key
        if "restore" in parts:
            _restore(stack, db, result, key, made["backupId"], raw_target, target)
            if profile_top:
                result.restore_profiles = _profile_restore(stack, made["backupId"], target,
                                                           megabytes, profile_top)
        stack.client("s3").delete_object(Bucket=stack.bucket, Key=key)
        return result
    finally:
        for name in (source, raw_target, target):
            db.client.drop_database(name)
        db.client.close()
        _use_database(os.environ.get("BENCH_DEFAULT_DATABASE", "dataport"))


def _server_cpu(stack: LocalStack) -> float:
    """The CPU seconds (user + system) the local nx-27017 process has used so far; 0 when the
    stack runs against an outside server."""
    server = stack._mongo
    if server is None:
        return 0.0
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _ServerProfile:
    """With BENCH_PY_SPY=<py-spy binary>, the nx-27017 process sampled by py-spy while the
    dataport restore runs (its top functions printed, the raw file kept under PROFILES)."""

    def __init__(self, stack: LocalStack, name: str) -> None:
        self.binary = os.environ.get("BENCH_PY_SPY")
        self.server = stack._mongo
        self.path = PROFILES / f"{name}.txt"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _ServerProfile:
        if self.binary and self.server is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.process = subprocess.Popen(
                [self.binary, "record", "--pid", str(self.server.process.pid), "--rate", "50",
                 "--format", "raw", "--output", str(self.path), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=120)
            print(f"  nx-27017 samples (py-spy, collapsed stacks): {self.path}")


def _restore(stack: LocalStack, db: Database[Document], result: SizeResult, key: str,
             backup_id: str, raw_target: str, target: str) -> None:
    """The raw restore of the raw backup's object, then dataport's restore of its backup."""
    raw_db = connect(stack.mongo_uri, raw_target)
    server_before = _server_cpu(stack)
    raw_restore_s, raw_messages = raw_restore(stack, key, raw_db)
    result.raw_restore_server_cpu_s = round(_server_cpu(stack) - server_before, 2)
    assert _count_messages(raw_db) == raw_messages == result.messages, "raw restore lost"
    raw_db.client.drop_database(raw_target)
    mb = result.json_bytes / MB
    print(f"  raw restore     {raw_restore_s:7.1f} s  {mb / raw_restore_s:6.2f} MB/s  "
          f"(nx-27017 CPU {result.raw_restore_server_cpu_s:.1f} s); load {_load()}")
    _use_database(target)
    tally = mongo_commands.CommandTally().start() if os.environ.get(COUNT_COMMANDS) else None
    with tempfile.TemporaryDirectory() as commands, TaskMemory() as memory, \
            _ServerProfile(stack, f"nx-27017-restore-{result.mb:g}mb"):
        if tally is not None:
            os.environ["MONGO_COMMANDS"] = commands
        server_before = _server_cpu(stack)
        try:
            restore_s, job = dataport_restore(stack, backup_id)
        finally:
            os.environ.pop("MONGO_COMMANDS", None)
        result.restore_server_cpu_s = round(_server_cpu(stack) - server_before, 2)
        if tally is not None:
            tasks = mongo_commands.summed(Path(commands))
            tasks["in the benchmark's process (plan, shard tasks, polling)"] = {
                name: {"count": float(f["count"]), "seconds": float(f["seconds"])}
                for name, f in tally.as_dict().items()}
            result.restore_commands = tasks
    shards = job.get("shards")
    result.restore_shards = len(shards) if isinstance(shards, list) else 0
    restored = _count_messages(db.client[target])
    if restored != result.messages:
        raise SystemExit(f"the restore wrote {restored} of {result.messages} messages")
    peaks = {task: round(peak / MIB, 1) for task, peak in memory.peaks.items()}
    print(f"  dataport restore {restore_s:6.1f} s  {mb / restore_s:6.2f} MB/s  "
          f"({result.restore_shards or 'no'} shards; nx-27017 CPU "
          f"{result.restore_server_cpu_s:.1f} s)  task peaks "
          f"{', '.join(f'{t} {p:.0f} MiB' for t, p in peaks.items())}  -> "
          f"{raw_restore_s / restore_s:.2f} of raw")
    print("  restore tasks (each in its own process, start included): " + ", ".join(
        f"{t} {s:.1f} s" for t, s in memory.seconds.items()) + "; their own CPU time: " + ", ".join(
        f"{t} {s:.1f} s" for t, s in memory.cpu_seconds.items()))
    result.raw_restore_s, result.restore_s, result.restored_messages = (
        raw_restore_s, restore_s, restored)
    result.restore_task_peaks_mib = peaks
    result.restore_task_seconds = {t: round(s, 1) for t, s in memory.seconds.items()}
    result.restore_task_cpu_seconds = {t: round(s, 2) for t, s in memory.cpu_seconds.items()}
    if result.restore_commands:
        print("  MongoDB commands of the restore (count, summed round trips):")
        print("\n".join(mongo_commands.render(result.restore_commands)))


def _profile_restore(stack: LocalStack, backup_id: str, target: str, megabytes: float,
                     top: int) -> dict[str, list[str]]:
    """One more dataport restore (into the emptied target) with each task under cProfile
    (import_probe IMPORT_PROFILE): the top entries per task."""
    folder = PROFILES / f"restore-{megabytes:g}mb"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.prof"):
        old.unlink()
    client = connect(stack.mongo_uri, target).client
    client.drop_database(target)
    _use_database(target)
    os.environ["IMPORT_PROFILE"] = str(folder)
    try:
        with TaskMemory():
            dataport_restore(stack, backup_id)
    finally:
        del os.environ["IMPORT_PROFILE"]
        client.close()
    return {path.stem: stats_top(pstats.Stats(str(path)), top)
            for path in sorted(folder.glob("*.prof"))}


def render(results: list[SizeResult]) -> str:
    lines = ["", "| size | backup MB/s (raw) | backup / raw (pairs) | zstd ratio (raw) | backup "
             "worker (run_shard) | restore MB/s (raw) | restore / raw | backup worker peak | "
             "restore task peaks |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mb = r.json_bytes / MB
        restore = (f"| {mb / r.restore_s:.2f} ({mb / r.raw_restore_s:.2f}) "
                   f"| {r.restore_ratio:.2f} "
                   f"{'PASS' if r.restore_ratio >= RESTORE_GOAL else 'MISS'} "
                   if r.restore_s else "| not measured | ")
        lines.append(
            f"| {mb:.0f} MB, {r.sessions:,} sessions, {r.messages:,} messages "
            f"| {mb / r.backup_s:.2f} ({r.json_bytes / MB / r.raw_backup_s:.2f}) "
            f"| {r.backup_ratio:.2f} {'PASS' if r.backup_ratio >= BACKUP_GOAL else 'MISS'} "
            f"({', '.join(f'{x:.2f}' for x in r.backup_ratios)}) "
            f"| {r.json_bytes / r.stored:.1f} ({r.json_bytes / r.raw_stored:.1f}) "
            f"| {r.backup_worker_s:.1f} s, {mb / r.backup_worker_s:.2f} MB/s "
            f"{restore}"
            f"| {r.backup_worker_peak_mib:.0f} MiB "
            f"| {', '.join(f'{t} {p:.0f}' for t, p in r.restore_task_peaks_mib.items()) or '-'}"
            f" MiB |")
    if len(results) > 1:
        small, large = results[0], results[-1]
        growth = large.backup_worker_peak_mib / small.backup_worker_peak_mib - 1
        task_growth = {t: large.restore_task_peaks_mib.get(t, 0) / p - 1
                       for t, p in small.restore_task_peaks_mib.items() if p}
        lines.append(f"\nmemory from {small.json_bytes / MB:.0f} to {large.json_bytes / MB:.0f} "
                     f"MB: backup worker {growth:+.1%}; restore tasks " + (", ".join(
                         f"{t} {g:+.1%}" for t, g in task_growth.items()) or "not measured"))
    for r in results:
        if r.profile:
            lines.append(f"\nprofile, backup worker ({r.json_bytes / MB:.0f} MB), top entries by "
                         "own time:")
            lines.extend(f"  {line}" for line in r.profile)
        for task, entries in r.restore_profiles.items():
            lines.append(f"\nprofile, restore task {task} ({r.json_bytes / MB:.0f} MB), top "
                         "entries by own time:")
            lines.extend(f"  {line}" for line in entries)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, action="append",
                        help="data set size in MB of Extended JSON (repeatable; default 100)")
    parser.add_argument("--only", type=parts_of(PARTS), default=PARTS,
                        help="comma-separated parts to run, of backup,restore (default both; "
                             "the restore needs a backup, so it always runs one)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="backup pairs (raw, dataport) per size; the median is reported")
    parser.add_argument("--profile", action="store_true",
                        help="then one more backup per size with its worker under cProfile, and "
                        "one more restore with its tasks under cProfile")
    parser.add_argument("--profile-top", type=int, default=5)
    parser.add_argument("--commands", action="store_true",
                        help="count the restore's MongoDB commands per task (a CommandListener "
                        "in every task's process)")
    parser.add_argument("--shard-messages", type=int,
                        help="RESTORE_SHARD_MESSAGES for the restore: a backup with more "
                        "messages restores in shards (default: none, one import execution)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.commands:
        os.environ[COUNT_COMMANDS] = "1"
    sizes = sorted(args.mb or [100.0])
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    # every backup and restore of the run is the same user's: lift the hourly limits
    os.environ["BACKUP_RATE_LIMIT"] = os.environ["RESTORE_RATE_LIMIT"] = str(10**6)
    results: list[SizeResult] = []
    print(f"load average at the start: {_load()}")
    with LocalStack() as stack:
        logger.setLevel(logging.WARNING)  # the handlers' INFO lines, one per request, go
        os.environ["BENCH_DEFAULT_DATABASE"] = os.environ["MONGODB_DATABASE"]
        _set_shards(1)
        # one import execution unless asked (after the stack's start, which sets the template's
        # default): the raw restore is one stream, and on the one local server shards only
        # queue behind each other (docs/performance.md, "Session 5: restores")
        os.environ["RESTORE_SHARD_MESSAGES"] = str(args.shard_messages or SHARDLESS)
        for megabytes in sizes:
            results.append(measure(stack, megabytes, parts=args.only, repeat=max(1, args.repeat),
                                   profile_top=args.profile_top if args.profile else 0))
    table = render(results)
    print(f"{table}\nload average after the run: {_load()}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
