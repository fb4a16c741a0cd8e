"""Issue 10's benchmark (`make bench`): dataport against the raw pipelines, same data, same run.

    .venv/bin/python -m tests.benchmarks.ratios [--sessions 600] [--import-mb 3] [--repeat 3]
                                                [--profile] [--json out.json]

One local stack (moto server for S3/DynamoDB/Step Functions, the embedded nx-27017 MongoDB,
the REST and WebSocket gateways, Lambda handlers in-process) and one seeded data set (one user,
10 projects, `--sessions` sessions) serve every measurement:

export ratios   raw = pymongo find -> orjson -> zipfile deflate 6 -> smart-open multipart upload
                to the same moto S3; dataport = POST /exports over HTTP until the terminal
                WebSocket event, for json, jsonl, csv and markdown. Ratio = raw s / dataport s
                (1.0: as fast as the raw pipeline). Goals: json >= 0.8, the others >= 0.6.
import ratio    raw = parse the same upload file (bson.json_util) -> insert_many into a fresh
                database of the same kind (same server, same indexes); dataport = the real flow
                over HTTP (POST /imports, presigned POST upload, validate, execute merge), timed
                from POST validate to awaiting_decision plus POST execute to succeeded (the upload
                and the human decision are not counted; the job is read when one of its tasks
                ends, `--import-poll 0.05` reads it every 50 ms as before 2026-12-05 23:00).
                Each pair prints its phases: wall, tasks, and nx-27017's CPU. Goal >= 0.7.
orchestration   inside the workflow's task invocations, the time spent in control-plane calls
overhead        (DynamoDB job row / progress / file records / connections, Step Functions,
                @connections posts), measured with botocore before-call/after-call hooks on the
                clients dataport.aws hands out, plus the time outside every task (POST, Step
                Functions transitions, the wait for the first task), over the wall time of the
                export. Goal <= 10 %.
first progress  POST /exports sent -> first `job.progress` frame (or a snapshot already running)
                on a WebSocket subscribed right after the POST answered. Goal <= 1 s.
worker memory   peak RSS of one export worker invocation, run in a process of its own
                (worker_probe.py), at two sizes (one project, all ten): flat within 10 %, < 256 MiB.
shards          the export with EXPORT_CONCURRENCY cut for 1, 2 and 4 shards, each shard worker a
                separate process (worker_probe.py) started concurrently by the Map state:
                messages/s end to end and over the workers' phase.
--profile       after the measurements, one more export per format and one import with the
                workers under cProfile (their own threads only); prints each profile's top
                entries by own time and writes the .prof files under tests/output/bench/.

Every export and import is paired with a raw run just before it, and each ratio is the median
of its pairs (`--repeat N` pairs): on a shared machine the load drifts within minutes. A warm-up
export per format and a small import first load the task modules (warm Lambdas). The load
average is printed with the results: compare ratios, not seconds. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import requests
import smart_open
from bson import ObjectId, json_util
from bson.decimal128 import Decimal128
from pymongo.database import Database

import infrastructure.local  # noqa: F401 (puts the layer on sys.path, as Lambda's /opt/python)
from dataport import aws
from dataport.heap import freezes_runtime
from dataport.models.jobs import JobStatus
from dataport.models.tasks import ShardCursor
from dataport.observability import logger
from dataport.progress.events import ProgressEvent, SnapshotEvent
from dataport.settings import get_settings
from dataport.source import mongo
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
from dataport.workflows import export as export_tasks
from dataport.workflows import imports as import_tasks
from infrastructure.local import lambda_runtime, seed
from infrastructure.local.lambda_runtime import Invocation
from infrastructure.local.progress_client import ProgressSocket, is_end
from infrastructure.local.stack import LocalStack
from tests.benchmarks.import_bench import NEWCOMER, write_input

MB = 1_000_000
MIB = 2**20
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "tests" / "output" / "bench"
PROJECTS_SEEDED = 10
EXPORT_FORMATS = ("json", "jsonl", "csv", "markdown")
EXPORT_GOALS = {"json": 0.8, "jsonl": 0.6, "csv": 0.6, "markdown": 0.6}
IMPORT_GOAL = 0.7
OVERHEAD_GOAL = 0.10
FIRST_PROGRESS_GOAL_S = 1.0
MEMORY_GROWTH_GOAL = 0.10
MEMORY_CEILING = 256 * MIB
SHARD_COUNTS = (1, 2, 4)
RAW_PART_SIZE = 8 * MIB  # dataport's upload_part_size_mb default
RAW_PAGE = 100  # sessions per page, dataport's page_size default
RAW_BATCH = 1000  # documents per insert_many, dataport's import_batch_ops default
#: services whose calls are orchestration, not data (S3 is the data plane)
CONTROL_PLANE = {"dynamodb": "DynamoDB", "stepfunctions": "Step Functions",
                 "apigatewaymanagementapi": "@connections", "kms": "KMS"}
#: the workflows' task functions (everything else is the API, the authorizer or WebSocket)
TASK_PREFIXES = ("Export", "Import", "JobFailed")


# ---------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class ApiCall:
    logical_id: str | None  # the function whose invocation made it (None: the harness)
    service: str
    operation: str
    started: float
    seconds: float


@dataclass(frozen=True)
class Span:
    logical_id: str
    started: float
    ended: float


@dataclass
class Overhead:
    wall: float
    in_tasks: float  # the union of task invocation intervals
    control_plane: float  # seconds of control-plane calls inside task invocations
    data_plane: float  # seconds of S3 calls inside task invocations
    calls: dict[str, int]  # per service, control plane and S3, inside task invocations
    by_service: dict[str, float]

    @property
    def outside_tasks(self) -> float:
        return max(0.0, self.wall - self.in_tasks)

    @property
    def share(self) -> float:
        return (self.control_plane + self.outside_tasks) / self.wall

    def line(self) -> str:
        services = ", ".join(f"{CONTROL_PLANE.get(s, s)} {self.calls[s]} calls "
                             f"{self.by_service[s]:.2f} s" for s in sorted(self.calls))
        return (f"overhead {self.share:6.1%} = control plane {self.control_plane:.2f} s + outside "
                f"tasks {self.outside_tasks:.2f} s of {self.wall:.2f} s  [{services}]")


class Meter:
    """Times every task invocation (LambdaRuntime.run) and every botocore call dataport's clients
    make (before-call / after-call events registered on the clients `dataport.aws` caches),
    attributing each call to the invocation running on its thread."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.calls: list[ApiCall] = []
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        self._span_ended = threading.Condition(self._lock)
        self._patch: Any = None

    def __enter__(self) -> Meter:
        runtime = self.stack.runtime
        original = runtime.run

        def timed_run(logical_id: str, event: Any) -> Invocation:
            started = time.perf_counter()
            try:
                return original(logical_id, event)
            finally:
                with self._lock:
                    self.spans.append(Span(logical_id, started, time.perf_counter()))
                    self._span_ended.notify_all()

        self._patch = mock.patch.object(runtime, "run", timed_run)
        self._patch.start()
        for client in self._clients():
            client.meta.events.register("before-call", self._before)
            client.meta.events.register("after-call", self._after)
        return self

    def __exit__(self, *_: object) -> None:
        for client in self._clients():
            client.meta.events.unregister("before-call", self._before)
            client.meta.events.unregister("after-call", self._after)
        if self._patch is not None:
            self._patch.stop()

    @staticmethod
    def _clients() -> list[Any]:
        """The clients dataport's code uses (cached per process by dataport.aws, as in a warm
        Lambda): making them here first means the hooks sit on the very objects it calls."""
        return [aws.s3(), aws.dynamodb(), aws.stepfunctions(), aws.kms(), aws.connections_api(),
                aws.client("secretsmanager"), aws.client("ssm")]

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        started = context.get("bench_started")
        if started is None:
            return
        current = lambda_runtime._current_function.get()
        call = ApiCall(current[1] if current else None, model.service_model.service_name,
                       model.name, started, time.perf_counter() - started)
        with self._lock:
            self.calls.append(call)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.spans.clear()

    def wait_task_end(self, since: float, timeout: float) -> None:
        """Until a task invocation ends after `since` (or `timeout` seconds pass): a job's
        status changes inside a task, so a client need look only then."""
        with self._span_ended:
            self._span_ended.wait_for(lambda: any(
                s.ended > since for s in self.spans if s.logical_id.startswith(TASK_PREFIXES)),
                timeout)

    def task_spans(self, since: float, until: float) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.logical_id.startswith(TASK_PREFIXES)
                    and s.ended > since and s.started < until]

    def overhead(self, since: float, until: float) -> Overhead:
        spans = self.task_spans(since, until)
        in_tasks = _union([(max(s.started, since), min(s.ended, until)) for s in spans])
        calls: dict[str, int] = defaultdict(int)
        by_service: dict[str, float] = defaultdict(float)
        with self._lock:
            mine = [c for c in self.calls if c.logical_id and c.logical_id.startswith(
                TASK_PREFIXES) and since <= c.started <= until]
        for call in mine:
            calls[call.service] += 1
            by_service[call.service] += call.seconds
        control = sum(t for s, t in by_service.items() if s in CONTROL_PLANE)
        data = sum(t for s, t in by_service.items() if s not in CONTROL_PLANE)
        return Overhead(until - since, in_tasks, control, data, dict(calls), dict(by_service))

    def unhooked_calls(self, since: float) -> int:
        """Task calls the runtime recorded but no hook saw (a client made elsewhere): 0 means
        the overhead counts every call."""
        recorded = [d for d in self.stack.call_details
                    if d.call.logical_id.startswith(TASK_PREFIXES)]
        with self._lock:
            seen = [c for c in self.calls if c.logical_id and c.logical_id.startswith(
                TASK_PREFIXES) and c.started >= since]
        return max(0, len(recorded) - len(seen))


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


class Profiles:
    """cProfile around a task function, in the thread that runs it (Python 3.11's profiler is
    per thread: the moto and MongoDB servers' threads stay out)."""

    def __init__(self) -> None:
        self.runs: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def profiled(*args: Any, **kwargs: Any) -> Any:
            profile = cProfile.Profile()
            profile.enable()
            try:
                return function(*args, **kwargs)
            finally:
                profile.disable()
                with self._lock:
                    self.runs.append(profile)

        return profiled

    def top(self, count: int, path: Path) -> list[str]:
        if not self.runs:
            return ["(no profile)"]
        stats = pstats.Stats(self.runs[0])
        for run in self.runs[1:]:
            stats.add(run)
        path.parent.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(path)
        return stats_top(stats, count)


def stats_top(stats: pstats.Stats, count: int) -> list[str]:
    """The top `count` entries by own time, then dataport's own functions by cumulative time."""
    stats.sort_stats("tottime")
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    lines = [_entry(table, function, total)
             for function in stats.fcn_list[:count]]  # type: ignore[attr-defined]
    ours = sorted((f for f in table if "/dataport/dataport/" in f[0]),
                  key=lambda f: table[f][3], reverse=True)
    lines.append("dataport's own functions by cumulative time:")
    lines.extend(_entry(table, function, total) for function in ours[:count])
    return lines


def _entry(table: dict[Any, Any], function: tuple[str, int, str], total: float) -> str:
    _, calls, own, cumulative, _ = table[function]
    filename, line, name = function
    where = f"{_short(filename)}:{line}({name})" if line else name
    return (f"{own:7.2f} s own ({own / total:5.1%})  {cumulative:7.2f} s cum  "
            f"{calls:>9,} calls  {where}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "layers/dataport/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# ---------------------------------------------------------------------------- raw pipelines


def _bson_default(value: Any) -> Any:
    if isinstance(value, ObjectId | Decimal128):
        return str(value)
    raise TypeError(type(value).__name__)


@freezes_runtime  # as dataport's tasks: the stack's objects are neither side's cost
def raw_export(stack: LocalStack, db: Database[Document], user_id: str) -> tuple[float, int]:
    """pymongo find -> orjson -> zipfile deflate 6 -> smart-open multipart upload (one member of
    JSON lines: projects, then pages of sessions each followed by their messages, unsorted).
    Returns (seconds, messages)."""
    key = f"bench/raw-{uuid.uuid4().hex}.zip"
    names = message_collections(db)
    messages = 0
    started = time.perf_counter()
    with smart_open.open(f"s3://{stack.bucket}/{key}", "wb", compression="disable",
                         transport_params={"client": stack.client("s3"),
                                           "min_part_size": RAW_PART_SIZE}) as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf, \
            zf.open("conversations.jsonl", "w", force_zip64=True) as member:
        projects = list(db[PROJECTS].find({"user_id": ObjectId(user_id)}))
        member.write(b"".join(orjson.dumps(p, default=_bson_default) + b"\n" for p in projects))
        page: list[Document] = []

        def flush() -> int:
            buffer = bytearray()
            ids = [s["sessionId"] for s in page]
            # the page's bounds next to its $in: nx-27017 scans the whole collection for a bare
            # $in (a range uses the index), which made raw slower than dataport at 2,000
            # sessions for the emulator's sake; dataport's reader adds the same bounds
            query = {"sessionId": {"$in": ids, "$gte": min(ids), "$lte": max(ids)}}
            for session in page:
                buffer += orjson.dumps(session, default=_bson_default) + b"\n"
            count = 0
            for name in names:
                for message in db[name].find(query, batch_size=500):
                    buffer += orjson.dumps(message, default=_bson_default) + b"\n"
                    count += 1
            member.write(buffer)
            page.clear()
            return count

        for session in db[SESSIONS].find({"projectId": {"$in": [p["_id"] for p in projects]}},
                                         sort=[("sessionId", 1)], batch_size=RAW_PAGE):
            page.append(session)
            if len(page) == RAW_PAGE:
                messages += flush()
        if page:
            messages += flush()
    seconds = time.perf_counter() - started
    stack.client("s3").delete_object(Bucket=stack.bucket, Key=key)
    return seconds, messages


@freezes_runtime  # as dataport's tasks: the stack's objects are neither side's cost
def raw_import(upload: Path, db: Database[Document]) -> tuple[float, int]:
    """Parse the upload (bson.json_util: typed values, as the insert needs) -> insert_many in
    batches into `db` (fresh, indexed like ClaudeLens: a message collection gets its indexes
    when first written, as the import's do; without them nx-27017 spends ~10 % less on the
    inserts). Returns (seconds, messages)."""
    ensure_indexes(db)
    started = time.perf_counter()
    document = json_util.loads(upload.read_bytes())
    pending: dict[str, list[Document]] = defaultdict(list)
    projects: dict[Any, Document] = {}
    messages = 0

    def add(collection: str, doc: Document) -> None:
        if collection not in pending and collection not in (SESSIONS, PROJECTS):
            ensure_message_indexes(db[collection])
        batch = pending[collection]
        batch.append(doc)
        if len(batch) >= RAW_BATCH:
            db[collection].insert_many(batch, ordered=False)
            batch.clear()

    for entry in document["sessions"]:
        project = entry.pop("project")
        projects.setdefault(project["_id"], project)
        for message in entry.pop("messages"):
            add(collection_name_for(Layout.MONTHLY, message["timestamp"]), message)
            messages += 1
        add(SESSIONS, entry)
    for project in projects.values():
        add(PROJECTS, project)
    for collection, batch in pending.items():
        if batch:
            db[collection].insert_many(batch, ordered=False)
    return time.perf_counter() - started, messages


# ---------------------------------------------------------------------------- dataport paths


@dataclass
class ExportRun:
    format: str
    seconds: float
    first_progress: float
    messages: int
    sessions: int
    overhead: Overhead | None = None
    worker_seconds: float = 0.0  # the workers' phase: first worker start to last worker end


def _use_database(name: str) -> None:
    os.environ["MONGODB_DATABASE"] = name
    get_settings.cache_clear()
    mongo.reset()


def _set_shards(count: int) -> None:
    """Exactly `count` shards (when there are that many sessions): the plan cuts as many as the
    concurrency allows once every session is a shard's worth of work."""
    os.environ["EXPORT_CONCURRENCY"] = str(count)
    os.environ["SHARD_TARGET_SESSIONS"] = "1"
    get_settings.cache_clear()


def export_once(stack: LocalStack, meter: Meter, user_id: str, export_format: str,
                filters: dict[str, Any] | None = None, timeout: float = 1800) -> ExportRun:
    """POST /exports over HTTP, follow it on a WebSocket subscribed right after the answer."""
    api, headers = stack.rest_url, stack.auth_headers(user_id)
    body: dict[str, Any] = {"format": export_format}
    if filters:
        body["filters"] = filters
    with ProgressSocket(stack.ws_url, stack.token_for(user_id)) as socket:
        started = time.perf_counter()
        answer = requests.post(f"{api}/exports", headers=headers, json=body, timeout=30)
        answer.raise_for_status()
        job_id = answer.json()["jobId"]
        socket.subscribe(job_id)
        first = math.nan
        for event in socket.follow(job_id, timeout=timeout):
            if math.isnan(first) and (isinstance(event, ProgressEvent) or (
                    isinstance(event, SnapshotEvent) and event.status is not JobStatus.QUEUED)):
                first = time.perf_counter() - started
            if is_end(event):
                break
        ended = time.perf_counter()
    job = requests.get(f"{api}/exports/{job_id}", headers=headers, timeout=30).json()
    if job["status"] != "succeeded":
        raise SystemExit(f"export {export_format} {job['status']}: {job.get('error')}")
    workers = [s for s in meter.task_spans(started, ended)
               if s.logical_id == "ExportWorkerFunction"]
    worker_seconds = (max(s.ended for s in workers) - min(s.started for s in workers)
                      if workers else 0.0)
    return ExportRun(export_format, ended - started, first, int(job["counts"]["messages"]),
                     int(job["counts"]["sessions"]), meter.overhead(started, ended),
                     worker_seconds=worker_seconds)


@dataclass
class ProbeResults:
    peaks: list[int] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    shards: set[int] = field(default_factory=set)
    seconds: list[float] = field(default_factory=list)


@contextlib.contextmanager
def workers_in_processes() -> Iterator[ProbeResults]:
    """Each export worker invocation runs in a process of its own (worker_probe.py), as a Lambda
    would; concurrent shards are concurrent processes."""
    results = ProbeResults()
    lock = threading.Lock()
    original = export_tasks.run_shard

    def in_own_process(cursor: ShardCursor, _: Callable[[], int]) -> ShardCursor:
        answer = subprocess.run(
            [sys.executable, "-m", "tests.benchmarks.worker_probe"], check=False,
            input=cursor.model_dump_json(by_alias=True), capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layers' / 'dataport'}"})
        if answer.returncode:
            print(f"worker failed:\n{answer.stderr[-3000:]}", file=sys.stderr)
            answer.check_returncode()
        probe = json.loads(answer.stdout.strip().splitlines()[-1])
        with lock:
            results.peaks.append(int(probe["peak_rss"]))
            results.baselines.append(int(probe["baseline_rss"]))
            results.shards.add(cursor.shard)
            results.seconds.append(float(probe.get("seconds", math.nan)))
        return ShardCursor.model_validate(probe["cursor"])

    export_tasks.run_shard = in_own_process  # type: ignore[assignment]
    try:
        yield results
    finally:
        export_tasks.run_shard = original


@dataclass
class ImportRun:
    seconds: float
    messages: int
    overhead: Overhead
    #: per phase (validate, execute): its wall seconds, its task invocations' and the local
    #: MongoDB server's CPU seconds
    phases: list[str] = field(default_factory=list)


def import_once(stack: LocalStack, meter: Meter, upload: Path, poll: float = 0.0) -> ImportRun:
    """The real import over HTTP as an account with no data: create, upload through the
    presigned POST, validate, execute (merge). Timed: validate and execute, not the upload nor
    the wait for the decision.

    The job is read (GET /imports/{id}) each time one of its tasks ends (the status changes
    only inside a task; once a second at least), not every 50 ms: a GET costs ~12 ms of this
    process's CPU (gateway, handler, moto's DynamoDB), in the GIL the in-process Lambdas
    share, which no client's polling takes from the workers on AWS (~1.5 s of CPU per 30 MB
    import at 50 ms). `poll` > 0: every `poll` seconds instead, as before 2026-12-05 23:00."""
    api, headers = stack.rest_url, stack.auth_headers(NEWCOMER)
    created = requests.post(f"{api}/imports", headers=headers, timeout=30, json={
        "filename": upload.name, "size": upload.stat().st_size})
    created.raise_for_status()
    job_id, form = created.json()["jobId"], created.json()["upload"]
    with upload.open("rb") as file:
        requests.post(form["url"], data=form["fields"], files={"file": (upload.name, file)},
                      timeout=600).raise_for_status()
    overheads = []
    phases: list[str] = []
    job: dict[str, Any] = {}
    for path, body, until in (("validate", None, {"awaiting_decision", "failed"}),
                              ("execute", {"strategy": "merge"}, {"succeeded", "failed"})):
        started, server_cpu = time.perf_counter(), _server_cpu(stack)
        requests.post(f"{api}/imports/{job_id}/{path}", headers=headers, timeout=30,
                      json=body).raise_for_status()
        looked = time.perf_counter()
        while (job := requests.get(f"{api}/imports/{job_id}", headers=headers,
                                   timeout=30).json())["status"] not in until:
            if poll > 0:
                time.sleep(poll)
            else:
                meter.wait_task_end(looked, timeout=1.0)
            looked = time.perf_counter()
        ended = time.perf_counter()
        overheads.append(meter.overhead(started, ended))
        phases.append(f"{path} {ended - started:.2f} s (" + ", ".join(
            f"{span.logical_id} {span.ended - span.started:.2f}"
            for span in meter.task_spans(started, ended))
            + f"; nx-27017 CPU {_server_cpu(stack) - server_cpu:.2f} s)")
        if job["status"] == "failed":
            raise SystemExit(f"import {path} failed: {job.get('error') or job.get('report')}")
    calls: dict[str, int] = defaultdict(int)
    by_service: dict[str, float] = defaultdict(float)
    for part in overheads:
        for service, count in part.calls.items():
            calls[service] += count
            by_service[service] += part.by_service[service]
    total = Overhead(sum(o.wall for o in overheads), sum(o.in_tasks for o in overheads),
                     sum(o.control_plane for o in overheads),
                     sum(o.data_plane for o in overheads), dict(calls), dict(by_service))
    return ImportRun(total.wall, int(job["outcome"]["messages"]["inserted"]), total, phases)


def _server_cpu(stack: LocalStack) -> float:
    """CPU seconds (user + system) the stack's local MongoDB server has used so far (0 when
    the stack uses another server): what the server's share of a phase cost, whatever the
    load."""
    server = stack._mongo  # the process the stack started
    if server is None:
        return 0.0
    try:
        stat = Path(f"/proc/{server.process.pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # utime and stime: fields 14 and 15 of stat
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- the run


@dataclass
class Row:
    name: str
    value: float
    goal: str
    passed: bool
    shown: str
    detail: str = ""

    def line(self) -> str:
        verdict = "PASS" if self.passed else "MISS"
        return f"{self.name:<34} {self.shown:>12}  {self.goal:<16} {verdict}  {self.detail}"


@dataclass
class Report:
    date: str
    load: str
    sessions: int
    messages: int
    import_mb: float
    import_messages: int
    rows: list[Row] = field(default_factory=list)
    shards: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _seconds(values: Iterator[float]) -> str:
    """Seconds of one run, or the median and range of several."""
    listed = sorted(values)
    if len(listed) == 1:
        return f"{listed[0]:.2f} s"
    return f"{statistics.median(listed):.2f} s ({listed[0]:.2f}-{listed[-1]:.2f})"


def run(args: argparse.Namespace) -> Report:
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    user = seed.DEMO_USER_ID
    report = Report(date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), load=_load(),
                    sessions=0, messages=0, import_mb=args.import_mb, import_messages=0)
    with tempfile.TemporaryDirectory() as scratch, LocalStack() as stack:
        logger.setLevel(logging.WARNING)  # the handlers' INFO lines, one per task, go
        # Every export and import of the run is the same user's: lift the hourly limits.
        os.environ["EXPORT_RATE_LIMIT"] = os.environ["IMPORT_RATE_LIMIT"] = str(10**6)
        name, import_db, raw_db = "dataport_bench", "dataport_bench_import", "dataport_bench_raw"
        db = connect(stack.mongo_uri, name)
        for dropped in (name, import_db, raw_db):
            db.client.drop_database(dropped)
        started = time.monotonic()
        summary = seed.seed(db, users=1, projects_per_user=PROJECTS_SEEDED,
                            sessions_per_project=max(1, args.sessions // PROJECTS_SEEDED),
                            messages_per_session=(4, 12))
        report.sessions, report.messages = summary.sessions, summary.messages
        print(f"seeded {summary.sessions:,} sessions / {summary.messages:,} messages in "
              f"{time.monotonic() - started:.0f} s; load average {report.load}")
        _use_database(name)
        _set_shards(1)  # one shard unless said otherwise
        try:
            with Meter(stack) as meter:
                if "exports" in args.only:
                    _exports(stack, meter, db, user, args, report)
                if "workers" in args.only:
                    _memory_and_shards(stack, meter, db, user, summary.sessions, report)
                if "import" in args.only:
                    _imports(stack, meter, Path(scratch), import_db, raw_db, args, report)
                if args.profile:
                    _profiles(stack, meter, Path(scratch), import_db, args, report)
        finally:
            for dropped in (name, import_db, raw_db):
                db.client.drop_database(dropped)
            db.client.close()
    report.notes.append(f"load average after the run: {_load()}")
    return report


def _exports(stack: LocalStack, meter: Meter, db: Database[Document], user: str,
             args: argparse.Namespace, report: Report) -> None:
    # Warm up: load every export task's module (a warm Lambda) with a one-session export per
    # format, so that no format pays the cold start the first measured one would.
    session = db[SESSIONS].find_one({}, sort=[("sessionId", 1)])
    assert session is not None
    for export_format in EXPORT_FORMATS:
        export_once(stack, meter, user, export_format, {"sessionIds": [session["sessionId"]]})
    stack.runtime.reset()
    # Each export is paired with a raw export run just before it, and the ratio taken per pair:
    # on a shared machine the load drifts within minutes, and a pair sees the same load.
    runs: dict[str, list[tuple[float, ExportRun]]] = defaultdict(list)
    for attempt in range(args.repeat):
        for export_format in EXPORT_FORMATS:
            raw, messages = raw_export(stack, db, user)
            if messages != report.messages:
                report.notes.append(f"raw export read {messages:,} messages, seeded "
                                    f"{report.messages:,}")
            since = time.perf_counter()
            result = export_once(stack, meter, user, export_format)
            runs[export_format].append((raw, result))
            missed = meter.unhooked_calls(since) if attempt == 0 else 0
            rate = result.messages / result.seconds
            print(f"raw export {raw:6.2f} s ({messages / raw:6,.0f} msg/s); export "
                  f"{export_format:<8} {result.seconds:6.2f} s ({rate:6,.0f} msg/s): "
                  f"ratio {raw / result.seconds:.2f}; first progress "
                  f"{result.first_progress:.2f} s; workers {result.worker_seconds:.2f} s")
            if result.overhead:
                print(f"    {result.overhead.line()}")
            if missed:
                report.notes.append(f"{missed} task calls were not seen by the botocore hooks")
            stack.runtime.reset()
    for export_format in EXPORT_FORMATS:
        pairs = runs[export_format]
        ratio = statistics.median(raw / run.seconds for raw, run in pairs)
        goal = EXPORT_GOALS[export_format]
        report.rows.append(Row(
            f"export {export_format} / raw", ratio, f">= {goal:.1f}", ratio >= goal,
            f"{ratio:.2f}", f"raw {_seconds(raw for raw, _ in pairs)}, dataport "
            f"{_seconds(run.seconds for _, run in pairs)}"))
    overheads = {f: [run.overhead for _, run in runs[f] if run.overhead] for f in EXPORT_FORMATS}
    share = statistics.median(o.share for o in overheads["json"])
    typical = min(overheads["json"], key=lambda o: abs(o.share - share))
    report.rows.append(Row("orchestration overhead (json)", share, "<= 10 %",
                           share <= OVERHEAD_GOAL, f"{share:.1%}",
                           f"control plane {typical.control_plane:.2f} s + outside tasks "
                           f"{typical.outside_tasks:.2f} s of {typical.wall:.2f} s"))
    for export_format in EXPORT_FORMATS:
        for overhead in overheads[export_format]:
            report.notes.append(f"orchestration, {export_format}: {overhead.line()}")
    firsts = [run.first_progress for pairs in runs.values() for _, run in pairs]
    worst = max(firsts)
    report.rows.append(Row("POST -> first progress (worst)", worst, "<= 1 s",
                           worst <= FIRST_PROGRESS_GOAL_S, f"{worst:.2f} s",
                           f"median {statistics.median(firsts):.2f} s over {len(firsts)} exports"))


def _memory_and_shards(stack: LocalStack, meter: Meter, db: Database[Document], user: str,
                       sessions: int, report: Report) -> None:
    one_project = str(db[PROJECTS].find_one({"user_id": ObjectId(user)}, sort=[("_id", 1)])[
        "_id"])  # type: ignore[index]
    peaks: dict[str, int] = {}
    with workers_in_processes() as probe:
        small = export_once(stack, meter, user, "json", {"projectIds": [one_project]})
    peaks[f"{small.sessions:,} sessions"] = max(probe.peaks)
    print(f"worker memory, {small.sessions:,} sessions: peak {max(probe.peaks) / MIB:.0f} MiB "
          f"(baseline {max(probe.baselines) / MIB:.0f} MiB)")
    for count in SHARD_COUNTS:
        _set_shards(count)
        with workers_in_processes() as probe:
            result = export_once(stack, meter, user, "json")
        messages = result.messages
        report.shards.append({
            "shards": len(probe.shards), "seconds": round(result.seconds, 2),
            "msg_per_s": round(messages / result.seconds),
            "worker_phase_s": round(result.worker_seconds, 2),
            "worker_msg_per_s": round(messages / result.worker_seconds)
            if result.worker_seconds else 0,
            "in_worker_s": round(max(probe.seconds), 2),
            "peak_mib": round(max(probe.peaks) / MIB)})
        print(f"{len(probe.shards)} shard(s) in processes: {result.seconds:6.2f} s "
              f"{messages / result.seconds:8,.0f} msg/s end to end; workers' phase "
              f"{result.worker_seconds:.2f} s; slowest worker's run_shard "
              f"{max(probe.seconds):.2f} s; peak {max(probe.peaks) / MIB:.0f} MiB")
        if count == 1:
            peaks[f"{result.sessions:,} sessions"] = max(probe.peaks)
    _set_shards(1)
    growth = max(peaks.values()) / min(peaks.values()) - 1
    top = max(peaks.values())
    detail = ", ".join(f"{size} {peak / MIB:.0f} MiB" for size, peak in peaks.items())
    report.rows.append(Row("worker peak RSS, growth", growth, "<= +10 %",
                           growth <= MEMORY_GROWTH_GOAL, f"{growth:+.1%}", detail))
    report.rows.append(Row("worker peak RSS, max", top, "< 256 MiB", top < MEMORY_CEILING,
                           f"{top / MIB:.0f} MiB", detail))


def _imports(stack: LocalStack, meter: Meter, scratch: Path, import_db: str, raw_db: str,
             args: argparse.Namespace, report: Report) -> None:
    upload = scratch / "conversations-0001.json"
    sessions, messages = write_input(upload, int(args.import_mb * MB))
    report.import_messages = messages
    print(f"import input: {upload.stat().st_size / MB:.1f} MB, {sessions:,} sessions, "
          f"{messages:,} messages")
    # Warm up: the import tasks' modules loaded (a warm Lambda) by a 50 kB import.
    warm_up = scratch / "warm-up" / upload.name
    warm_up.parent.mkdir()
    write_input(warm_up, 50_000)
    client = connect(stack.mongo_uri, import_db).client
    client.drop_database(import_db)
    _use_database(import_db)
    import_once(stack, meter, warm_up)
    stack.runtime.reset()
    raws, reals = [], []
    for _ in range(args.repeat):
        db = connect(stack.mongo_uri, raw_db)
        db.client.drop_database(raw_db)
        server_cpu = _server_cpu(stack)
        seconds, parsed = raw_import(upload, db)
        raws.append(seconds)
        print(f"raw import           {seconds:6.2f} s  {parsed / seconds:8,.0f} msg/s  "
              f"(nx-27017 CPU {_server_cpu(stack) - server_cpu:.2f} s)")
        db.client.drop_database(import_db)
        ensure_indexes(db.client[import_db])
        _use_database(import_db)
        result = import_once(stack, meter, upload, args.import_poll)
        reals.append(result)
        print(f"import (validate + execute) {result.seconds:6.2f} s  "
              f"{result.messages / result.seconds:8,.0f} msg/s")
        print(f"    {result.overhead.line()}")
        print(f"    {'; '.join(result.phases)}")
        stack.runtime.reset()
    _use_database("dataport_bench")
    ratio = statistics.median(raw / real.seconds for raw, real in zip(raws, reals, strict=True))
    report.rows.append(Row("import / raw parse + insert_many", ratio, ">= 0.7",
                           ratio >= IMPORT_GOAL, f"{ratio:.2f}",
                           f"raw {_seconds(iter(raws))}, dataport "
                           f"{_seconds(r.seconds for r in reals)}"))
    for real in reals:
        report.notes.append(f"orchestration, import: {real.overhead.line()}")


def _profiles(stack: LocalStack, meter: Meter, scratch: Path, import_db: str,
              args: argparse.Namespace, report: Report) -> None:
    for export_format in EXPORT_FORMATS:
        profiles = Profiles()
        with mock.patch.object(export_tasks, "run_shard", profiles.wrap(export_tasks.run_shard)):
            export_once(stack, meter, seed.DEMO_USER_ID, export_format)
        report.profiles[f"export worker ({export_format})"] = profiles.top(
            args.profile_top, OUTPUT / f"export-{export_format}.prof")
    if "import" not in args.only:
        return
    profiles = Profiles()
    upload = scratch / "conversations-0001.json"
    with contextlib.ExitStack() as patches:
        for task in ("validate", "stage", "execute"):
            patches.enter_context(mock.patch.object(import_tasks, task, profiles.wrap(
                getattr(import_tasks, task))))
        client = connect(stack.mongo_uri, import_db).client
        client.drop_database(import_db)
        ensure_indexes(client[import_db])
        _use_database(import_db)
        import_once(stack, meter, upload)
        _use_database("dataport_bench")
    report.profiles["import tasks (validate, stage, execute)"] = profiles.top(
        args.profile_top, OUTPUT / "import.prof")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def render(report: Report) -> str:
    out = io.StringIO()
    out.write(f"\ndataport vs raw, {report.date}: {report.sessions:,} sessions / "
              f"{report.messages:,} messages exported; import {report.import_mb:g} MB "
              f"({report.import_messages:,} messages); load average at start {report.load}\n\n")
    out.write(f"{'measure':<34} {'value':>12}  {'goal':<16} verdict\n")
    for row in report.rows:
        out.write(row.line() + "\n")
    out.write("\nthroughput, export json, shard workers in separate processes:\n")
    for shard in report.shards:
        out.write(f"  {shard['shards']} shard(s): {shard['seconds']:6.2f} s, "
                  f"{shard['msg_per_s']:>7,} msg/s end to end; workers' phase "
                  f"{shard['worker_phase_s']:.2f} s ({shard['worker_msg_per_s']:,} msg/s); "
                  f"slowest run_shard {shard['in_worker_s']:.2f} s; peak {shard['peak_mib']} MiB\n")
    for note in report.notes:
        out.write(f"- {note}\n")
    for name, lines in report.profiles.items():
        out.write(f"\nprofile, {name}, top entries by own time:\n")
        for line in lines:
            out.write(f"  {line}\n")
    return out.getvalue()


PARTS = ("exports", "workers", "import")


def parts_of(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An `--only` argument's type: comma-separated names, each one of `choices`."""
    def parse(value: str) -> tuple[str, ...]:
        parts = tuple(part.strip() for part in value.split(",") if part.strip())
        if not parts or set(parts) - set(choices):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return parts
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=2000,
                        help="sessions seeded for the one user (10 projects); 2,000 is the "
                        "issue's user, 600 the size of the runs before 2026-12-05 14:30 UTC")
    parser.add_argument("--import-mb", type=float, default=3.0, help="size of the import upload")
    parser.add_argument("--import-poll", type=float, default=0.0,
                        help="read the import job every this many seconds (0: when one of its "
                        "tasks ends; 0.05 was the bench's way before 2026-12-05 23:00)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="pairs (raw, dataport) per ratio; the median is reported")
    parser.add_argument("--profile", action="store_true",
                        help="then profile the workers (one more export per format, one import)")
    parser.add_argument("--profile-top", type=int, default=5)
    parser.add_argument("--only", type=parts_of(PARTS), default=PARTS,
                        help="comma-separated parts to run, of " + ",".join(PARTS)
                        + " (default: all; --profile profiles the exports, and the import "
                        "when it is one of them)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    report = run(args)
    print(render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))
    return 1 if args.strict and not all(row.passed for row in report.rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
