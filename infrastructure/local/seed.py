"""Deterministic sample data shaped like a real ClaudeLens database (see DATA-MODEL.md).

Same seed, same database, down to every ObjectId: tests can name what they expect, and a person
trying the service sees conversations that look like Claude Code's (threads, tool calls with
their derived tool documents, thinking, sub-agent sidechains, several models, exact Decimal128
costs) in the scripts people really write in (CJK, emoji, RTL, combining marks, code fences).
Several users own data, so owner isolation is visible; the first one is always DEMO_USER_ID.

    python -m infrastructure.local.seed --uri mongodb://127.0.0.1:27017 --db claudelens --drop
"""
# ruff: noqa: RUF001 (Greek, Cyrillic and full-width punctuation in sample text are the point)

from __future__ import annotations

import argparse
import json
import os
import random
import string
import struct
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo.database import Database

from dataport.source.collections import (
    PROJECTS,
    SESSIONS,
    Layout,
    collection_name_for,
    ensure_indexes,
    message_collections,
    month_of,
)
from dataport.source.content_hash import content_hash
from dataport.source.mongo import Document, connect

#: the demo user, always the first user seeded (the owner in the DATA-MODEL examples)
DEMO_USER_ID = "66ad9b005f2b4a0012c0aaaa"

BATCH = 1000
FIRST_DAY = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
SPAN_DAYS = 150

PEOPLE = ("alex", "mira", "kenji", "sofia", "omar", "lena", "ravi", "zoë")
HOMES = ("/Users/{user}/github/{project}", "/home/{user}/src/{project}",
         "/Users/{user}/Projects/{project}", "/Users/{user}/Documents/编程/{project}")
PROJECT_NAMES = ("claudelens", "dataport", "payments-api", "docs-site", "ml-pipeline", "rust-cli",
                 "mobile-app", "infra", "数据看板", "café-menu", "blog", "terraform-modules")
VERSIONS = ("1.0.61", "1.0.67", "1.0.72", "1.0.83")
BRANCHES = ("main", "main", "develop", "feature/export-filters", "fix/ユニコード")

#: USD per million tokens: input, output, cache write, cache read
PRICES = {
    "claude-opus-4-1-20250805": ("15", "75", "18.75", "1.50"),
    "claude-sonnet-4-20250514": ("3", "15", "3.75", "0.30"),
    "claude-3-5-haiku-20241022": ("0.80", "4", "1", "0.08"),
}
MODELS = tuple(PRICES)

SUMMARIES = (
    "Audit unused docker-compose environment variables",
    "Refactor the export worker to stream pages",
    "把数据加载函数改成异步并补充单元测试",
    "CI のテストが落ちる原因を調査",
    "Исправить падение тестов в CI",
    "Fix flaky WebSocket reconnect 🔌",
    "إصلاح اتجاه النص في واجهة المستخدم",
    "Μετάφραση μηνυμάτων σφάλματος",
    "Add Decimal128 cost totals to the session view",
    "배포 스크립트 정리",
    "Normalize café vs cafe\u0301 in search (NFC/NFD)",
    "Write the README quick start",
)

PROMPTS = (
    "Can you read docker-compose.yml and tell me which environment variables are unused?",
    "请帮我把这个函数重构成异步的，并补上单元测试。",
    "このエラーの原因を教えてください:\n```\nTypeError: 'NoneType' object is not "
    "subscriptable\n```",
    "Почему тест `test_export_stream` падает только в CI? Локально всё зелёное.",
    "لماذا يظهر النص العربي معكوساً في ملف PDF؟ (RTL)",
    "שלום! תקן את הבאג בטופס ההרשמה בבקשה",
    "Μπορείς να μεταφράσεις τα μηνύματα σφάλματος στα ελληνικά;",
    "Ship it! 🚀✨ but first run the tests 👩\u200d💻 and check the 🇯🇵 locale",
    "Search treats \"café\" and \"cafe\u0301\" differently — can we normalise to NFC?",
    "Here's the failing function:\n```python\ndef total(costs):\n    return sum(float(c) for c "
    "in costs)  # loses cents!\n```\nMake it exact.",
    "Explain this regex: `^messages_(\\d{4})_(\\d{2})$` and why \\d matters",
    "Please add a CSV export; values like `a,b` and `\"quoted\"` and tabs\tmust survive.",
    "배포 스크립트에서 환경 변수를 정리해 주세요.",
    "Refactor the worker so memory stays bounded by one page of records.",
    "What does this do?\n````markdown\n```js\nconsole.log('nested fence')\n```\n````",
    "Line separators\u2028inside JSON strings break some parsers — is ours safe?",
)

REPLIES = (
    "I'll read docker-compose.yml first.",
    "好的，我先看一下现有的实现，然后把它改成 `async def`，并添加 pytest 测试。",
    "原因は `None` を添字アクセスしていることです。ガード節を追加します。",
    "В CI используется другая временная зона — тест зависит от `datetime.now()`.",
    "المشكلة في اتجاه النص: يجب استخدام خوارزمية ثنائية الاتجاه (bidi) قبل الرسم.",
    "Here is the exact version:\n```python\nfrom decimal import Decimal\n\n\ndef total(costs):\n"
    "    return sum((Decimal(c) for c in costs), Decimal(0))\n```\nNo float anywhere.",
    "Done ✅ — 12 passed, 0 failed. 🎉",
    "Τα μηνύματα μεταφράστηκαν· δες το αρχείο `locales/el.json`.",
    "NFC turns `e\u0301` into `é`; I normalise both the index and the query with "
    "`unicodedata.normalize('NFC', s)`.",
    "The regex anchors the whole name: four digits for the year, two for the month.",
    "CSV quoting is handled by the `csv` module: fields with commas, quotes or newlines are "
    "quoted and inner quotes doubled.",
    "I changed the loop to page through a cursor with `batch_size`, so memory is bounded.",
    "| variable | used |\n|---|---|\n| `POSTGRES_URL` | no |\n| `REDIS_URL` | yes |",
    "JSON allows U+2028 in strings; `json.dumps` escapes it only with ensure_ascii.",
)

THOUGHTS = (
    "The user wants unused variables; I should grep each one across the repo before answering.",
    "Float summation loses cents. Decimal keeps it exact; check the callers too.",
    "CI runs in UTC, the laptop in Asia/Tokyo — that explains the off-by-one day.",
    "考虑并发：异步改造后需要确认连接池是否线程安全。",
)

FILES = ("docker-compose.yml", "README.md", "src/app.py", "src/数据/加载.py", "tests/test_api.py",
         "package.json", "Cargo.toml")


@dataclass(frozen=True)
class UserSummary:
    user_id: str
    name: str
    projects: int
    sessions: int
    messages: int
    total_cost: Decimal


@dataclass(frozen=True)
class SeedSummary:
    layout: Layout
    seed: int
    users: tuple[UserSummary, ...]
    collections: tuple[str, ...]
    seconds: float

    @property
    def sessions(self) -> int:
        return sum(user.sessions for user in self.users)

    @property
    def messages(self) -> int:
        return sum(user.messages for user in self.users)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))  # type: ignore[no-any-return]


def _ms(moment: datetime) -> datetime:
    """BSON dates keep milliseconds: generate nothing finer, so data reads back equal."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class _Rng(random.Random):
    """random.Random plus the identifiers Claude Code and MongoDB use."""

    def object_id(self, moment: datetime) -> ObjectId:
        return ObjectId(struct.pack(">I", int(moment.timestamp())) + self.randbytes(8))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.getrandbits(128), version=4))

    def token(self, prefix: str, length: int) -> str:
        alphabet = string.ascii_letters + string.digits
        return prefix + "".join(self.choices(alphabet, k=length))


@dataclass
class _Totals:
    cost: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    tools: int = 0
    documents: list[Document] = field(default_factory=list)


class _Conversation:
    """Builds one session's message documents in time order, keeping the session totals."""

    def __init__(self, rng: _Rng, session_id: str, start: datetime, cwd: str) -> None:
        self.rng = rng
        self.session_id = session_id
        self.clock = start
        self.model = rng.choice(MODELS)
        self.meta = {"userType": "external", "cwd": cwd, "version": rng.choice(VERSIONS),
                     "gitBranch": rng.choice(BRANCHES)}
        self.cwd = cwd
        self.totals = _Totals()
        self.context = rng.randint(4000, 15000)  # cached prompt tokens, grows per turn

    def _tick(self, low: float, high: float) -> datetime:
        self.clock = _ms(self.clock + timedelta(seconds=self.rng.uniform(low, high)))
        return self.clock

    def _base(self, kind: str, parent: str | None, sidechain: bool, moment: datetime,
              message_uuid: str | None = None) -> Document:
        doc: Document = {
            "_id": self.rng.object_id(moment), "uuid": message_uuid or self.rng.uuid(),
            "sessionId": self.session_id, "type": kind, "timestamp": moment,
            "parentUuid": parent, "isSidechain": sidechain, **self.meta,
            "createdAt": _ms(moment + timedelta(milliseconds=self.rng.randint(300, 3000))),
        }
        self.totals.documents.append(doc)
        return doc

    def _hashed(self, doc: Document) -> Document:
        doc["contentHash"] = content_hash(doc["uuid"], doc["type"], doc["timestamp"],
                                          doc["content"])
        return doc

    def user(self, parent: str | None, text: str, *, sidechain: bool = False) -> str:
        doc = self._base("user", parent, sidechain, self._tick(5, 240))
        doc["content"] = text
        doc["messageData"] = {"role": "user", "content": text}
        return str(self._hashed(doc)["uuid"])

    def _tool_input(self, name: str) -> dict[str, Any]:
        path = f"{self.cwd}/{self.rng.choice(FILES)}"
        match name:
            case "Read":
                return {"file_path": path}
            case "Bash":
                return {"command": self.rng.choice(("pytest -q", "git status", "npm test",
                                                    "ruff check .")),
                        "description": "Run the checks"}
            case "Edit":
                return {"file_path": path, "old_string": "float(c)", "new_string": "Decimal(c)"}
            case "Grep":
                return {"pattern": self.rng.choice(("POSTGRES_URL", "TODO", "数据")),
                        "path": self.cwd}
            case _:
                return {"description": "Investigate the failing test",
                        "prompt": "Find why test_export_stream fails in CI",
                        "subagent_type": "general-purpose"}

    def assistant(self, parent: str, *, sidechain: bool = False,
                  tools: int = 0) -> tuple[str, list[dict[str, Any]]]:
        """An assistant reply; returns its uuid and its tool_use blocks."""
        rng = self.rng
        model = self.model if rng.random() < 0.85 else rng.choice(MODELS)
        blocks: list[dict[str, Any]] = []
        thinking = rng.choice(THOUGHTS) if rng.random() < 0.3 else None
        if thinking:
            blocks.append({"type": "thinking", "thinking": thinking,
                           "signature": rng.token("Eq", 40)})
        text = rng.choice(REPLIES)
        blocks.append({"type": "text", "text": text})
        names = ("Read", "Bash", "Edit", "Grep") if sidechain else ("Read", "Bash", "Edit",
                                                                     "Grep", "Task")
        uses = [{"type": "tool_use", "id": rng.token("toolu_01", 22), "name": name,
                 "input": self._tool_input(name)}
                for name in (rng.choice(names) for _ in range(tools))]
        blocks.extend(uses)
        usage = {"input_tokens": rng.randint(3, 60),
                 "cache_creation_input_tokens": rng.choice((0, 0, rng.randint(200, 4000))),
                 "cache_read_input_tokens": self.context,
                 "output_tokens": rng.randint(20, 1500)}
        self.context += rng.randint(200, 2500)
        cost = self._cost(model, usage)
        moment = self._tick(2, 60)
        doc = self._base("assistant", parent, sidechain, moment)
        doc.update({
            "content": text,
            "messageData": {"id": rng.token("msg_01", 22), "type": "message",
                            "role": "assistant", "model": model, "content": blocks,
                            "stop_reason": "tool_use" if uses else "end_turn",
                            "stop_sequence": None, "usage": usage},
            "usage": dict(usage), "model": model, "costUsd": Decimal128(cost),
            "durationMs": rng.randint(900, 45000), "requestId": rng.token("req_011C", 20),
        })
        if thinking:
            doc["thinking"] = thinking
        self._hashed(doc)
        for index, block in enumerate(uses):
            derived = self._base("tool_use", doc["uuid"], True, moment,
                                 f"{doc['uuid']}_tool_{index}")
            arguments = json.dumps(block["input"], ensure_ascii=False)
            derived["content"] = f"{block['name']}: {arguments}"
            derived["messageData"] = block
        self.totals.cost += cost
        self.totals.input_tokens += (usage["input_tokens"] + usage["cache_read_input_tokens"]
                                     + usage["cache_creation_input_tokens"])
        self.totals.output_tokens += usage["output_tokens"]
        self.totals.tools += len(uses)
        return str(doc["uuid"]), uses

    @staticmethod
    def _cost(model: str, usage: dict[str, int]) -> Decimal:
        price_in, price_out, price_write, price_read = (Decimal(p) for p in PRICES[model])
        total = (usage["input_tokens"] * price_in + usage["output_tokens"] * price_out
                 + usage["cache_creation_input_tokens"] * price_write
                 + usage["cache_read_input_tokens"] * price_read)
        return (total / 1_000_000).quantize(Decimal("0.000001"))

    def tool_results(self, parent: str, uses: list[dict[str, Any]], *,
                     sidechain: bool = False) -> str:
        """The user message carrying tool results, plus one derived document per result."""
        results = [self._tool_output(use) for use in uses]
        blocks = [{"type": "tool_result", "tool_use_id": use["id"], "content": text,
                   "is_error": False} for use, text in zip(uses, results, strict=True)]
        doc = self._base("user", parent, sidechain, self._tick(0.2, 20))
        doc["content"] = "\n".join(results)
        doc["messageData"] = {"role": "user", "content": blocks}
        doc["toolUseResult"] = {"stdout": results[-1], "stderr": "", "interrupted": False,
                                "isImage": False}
        self._hashed(doc)
        for index, block in enumerate(blocks):
            derived = self._base("tool_result", doc["uuid"], True, doc["timestamp"],
                                 f"{doc['uuid']}_result_{index}")
            derived["content"] = block["content"]
            derived["messageData"] = block
        return str(doc["uuid"])

    def _tool_output(self, use: dict[str, Any]) -> str:
        match use["name"]:
            case "Read":
                return ("     1\tservices:\n     2\t  api:\n     3\t    environment:\n"
                        "     4\t      - POSTGRES_URL=${POSTGRES_URL}\n     5\t      # 数据库 ✓")
            case "Bash":
                return self.rng.choice(("===== 12 passed in 0.42s =====",
                                        "FAILED tests/test_api.py::test_export_stream - "
                                        "AssertionError: 'é' != 'é'"))
            case "Edit":
                return f"The file {use['input']['file_path']} has been updated."
            case "Grep":
                return "Found 2 files\nsrc/app.py\ndocker-compose.yml"
            case _:
                return "The sub-agent found the cause: CI runs in UTC, the test assumes JST."

    def sidechain(self) -> None:
        """A sub-agent (Task) thread: its own root, every message marked isSidechain."""
        parent = self.user(None, "Find why test_export_stream fails in CI", sidechain=True)
        for _ in range(self.rng.randint(1, 2)):
            reply, uses = self.assistant(parent, sidechain=True, tools=1)
            parent = self.tool_results(reply, uses, sidechain=True)
        self.assistant(parent, sidechain=True)

    def run(self, main_messages: int) -> _Totals:
        """About `main_messages` user/assistant messages (tool and sidechain documents come on
        top), with an occasional edited prompt that branches the thread."""
        rng = self.rng
        parent: str | None = None
        previous_prompt_parent: str | None = None
        written = 0
        while written < main_messages:
            branch = previous_prompt_parent is not None and rng.random() < 0.08
            prompt_parent = previous_prompt_parent if branch else parent
            previous_prompt_parent = prompt_parent
            parent = self.user(prompt_parent, rng.choice(PROMPTS))
            written += 1
            while written < main_messages:
                tools = rng.choice((0, 0, 1, 1, 2)) if main_messages - written > 2 else 0
                parent, uses = self.assistant(parent, tools=tools)
                written += 1
                if not uses:
                    break
                if any(use["name"] == "Task" for use in uses):
                    self.sidechain()
                parent = self.tool_results(parent, uses)
                written += 1
        return self.totals


class _Writer:
    """Buffers documents per collection and writes them with insert_many in batches."""

    def __init__(self, db: Database[Document]) -> None:
        self.db = db
        self.pending: dict[str, list[Document]] = defaultdict(list)
        self.names: set[str] = set()

    def add(self, collection: str, doc: Document) -> None:
        batch = self.pending[collection]
        batch.append(doc)
        if len(batch) >= BATCH:
            self.flush(collection)

    def flush(self, collection: str | None = None) -> None:
        for name in [collection] if collection else list(self.pending):
            if self.pending[name]:
                self.db[name].insert_many(self.pending[name])
                self.names.add(name)
                self.pending[name] = []


def _check_layout(db: Database[Document], layout: Layout) -> None:
    existing = message_collections(db)
    monthly = any(month_of(name) for name in existing)
    if existing and monthly != (layout is Layout.MONTHLY):
        raise ValueError(f"database {db.name} already uses the other message layout; "
                         "seed a fresh database (or pass --drop)")


def _users(rng: _Rng, count: int) -> Iterator[tuple[ObjectId, str]]:
    for index in range(count):
        name = PEOPLE[index] if index < len(PEOPLE) else f"user{index}"
        yield (ObjectId(DEMO_USER_ID) if index == 0 else rng.object_id(FIRST_DAY)), name


def seed(db: Database[Document], *, users: int = 3, projects_per_user: int = 3,
         sessions_per_project: int = 5, messages_per_session: tuple[int, int] = (4, 30),
         layout: Layout | str = Layout.MONTHLY, seed: int = 7) -> SeedSummary:
    """Write sample users' projects, sessions and messages into `db` (which should be empty)
    and say what was written. The message layout is monthly unless `layout="single"`."""
    started = time.monotonic()
    layout = Layout(layout)
    _check_layout(db, layout)
    rng = _Rng(seed)
    writer = _Writer(db)
    summaries: list[UserSummary] = []
    for user_id, person in _users(rng, users):
        names = rng.sample(PROJECT_NAMES, k=min(projects_per_user, len(PROJECT_NAMES)))
        names += [f"project-{i}" for i in range(len(names), projects_per_user)]
        home = rng.choice(HOMES)
        user_cost, user_sessions, user_messages = Decimal(0), 0, 0
        for project_name in names:
            path = home.format(user=person, project=project_name)
            created = _ms(FIRST_DAY + timedelta(days=rng.uniform(0, 10)))
            project_id = rng.object_id(created)
            project_messages = 0
            for _ in range(sessions_per_project):
                start = _ms(created + timedelta(days=rng.uniform(0, SPAN_DAYS)))
                cwd = path if rng.random() < 0.8 else f"{path}/src"
                session_id = rng.uuid()
                totals = _Conversation(rng, session_id, start, cwd).run(
                    rng.randint(*messages_per_session))
                documents = totals.documents
                for doc in documents:
                    writer.add(collection_name_for(layout, doc["timestamp"]), doc)
                times = [doc["timestamp"] for doc in documents]
                writer.add(SESSIONS, {
                    "_id": rng.object_id(min(times)), "sessionId": session_id,
                    "projectId": project_id, "startedAt": min(times), "endedAt": max(times),
                    "messageCount": len(documents), "totalCost": Decimal128(totals.cost),
                    "inputTokens": totals.input_tokens, "outputTokens": totals.output_tokens,
                    "totalTokens": totals.input_tokens + totals.output_tokens,
                    "toolsUsed": totals.tools, "summary": rng.choice(SUMMARIES),
                    "createdAt": _ms(min(times) + timedelta(seconds=2)),
                    "updatedAt": _ms(max(times) + timedelta(seconds=30)),
                })
                project_messages += len(documents)
                user_cost += totals.cost
            writer.add(PROJECTS, {
                "_id": project_id, "user_id": user_id, "name": project_name, "path": path,
                "description": f"{project_name} — sample project of {person}",
                "createdAt": created, "updatedAt": created,
                "stats": {"message_count": project_messages,
                          "session_count": sessions_per_project},
            })
            user_sessions += sessions_per_project
            user_messages += project_messages
        summaries.append(UserSummary(str(user_id), person, len(names), user_sessions,
                                     user_messages, user_cost))
    writer.flush()
    ensure_indexes(db)
    return SeedSummary(layout, seed, tuple(summaries), tuple(sorted(writer.names)),
                       round(time.monotonic() - started, 3))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infrastructure.local.seed",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uri", default=os.environ.get("MONGODB_URI"),
                        help="MongoDB URI (default: $MONGODB_URI)")
    parser.add_argument("--db", default=os.environ.get("MONGODB_DATABASE", "claudelens"))
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--projects-per-user", type=int, default=3)
    parser.add_argument("--sessions-per-project", type=int, default=5)
    parser.add_argument("--messages-per-session", type=int, nargs=2, default=(4, 30),
                        metavar=("MIN", "MAX"))
    parser.add_argument("--layout", choices=[layout.value for layout in Layout],
                        default=Layout.MONTHLY.value)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drop", action="store_true", help="drop the database first")
    args = parser.parse_args(argv)
    if not args.uri:
        parser.error("--uri or MONGODB_URI is required")
    db = connect(args.uri, args.db)
    try:
        if args.drop:
            db.client.drop_database(args.db)
        summary = seed(db, users=args.users, projects_per_user=args.projects_per_user,
                       sessions_per_project=args.sessions_per_project,
                       messages_per_session=(args.messages_per_session[0],
                                             args.messages_per_session[1]),
                       layout=args.layout, seed=args.seed)
    finally:
        db.client.close()
    json.dump(summary.as_dict(), sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
