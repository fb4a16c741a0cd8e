"""The embedded MongoDB-wire server (nx-27017) as a managed subprocess.

No MongoDB server can be installed here, so the local stack and the tests run nx-27017 (SQLite
behind the MongoDB wire protocol) and talk to it with the real pymongo driver. Each instance gets
its own port, `--data-dir` (databases are only isolated with one), pid file and log file: the
defaults live in /tmp and a second server refuses to start while the first one's pid file exists.

nx-27017 0.8.1 gets three things wrong that ClaudeLens data depends on (measured; see `_patch`):
it cannot store Decimal128 at all ("Object of type Decimal128 is not JSON serializable"), a
filter on an ObjectId-valued field other than `_id` (`projectId`, `user_id`) silently matches
nothing, and a datetime written by an update (`$set`, `$max`, findAndModify...) is stored as
text, which no date range matches. So the server runs from this file (`python mongo_server.py
serve ...`), which patches the server process and then hands over to nx-27017's own `main()`.
Nothing changes what a client sends: code tested here runs unchanged against a real MongoDB.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bson import ObjectId
from bson.decimal128 import Decimal128
from pymongo import MongoClient
from pymongo.errors import PyMongoError

HOST = "127.0.0.1"


class MongoServerError(RuntimeError):
    """The embedded server did not come up (its log tail is in the message)."""


def executable() -> list[str]:
    """The command that runs the patched server: this file under the running interpreter, the
    environment nx-27017 is installed in (its `nx-27017` script sits next to sys.executable)."""
    if importlib.util.find_spec("nx_27017") is None:
        raise MongoServerError(f"nx-27017 is not installed for {sys.executable}")
    return [sys.executable, "-P", str(Path(__file__).resolve()), "serve"]


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MongoServer:
    """One running nx-27017 process; `uri` is what MONGODB_URI should say."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    owns_workdir: bool

    @property
    def uri(self) -> str:
        return f"mongodb://{HOST}:{self.port}/?directConnection=true"

    @property
    def log_file(self) -> Path:
        return self.workdir / "nx-27017.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server exits cleanly and removes its pid file), SIGKILL if it hangs;
        then remove the working directory if this object created it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_until_ready(server: MongoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise MongoServerError(f"nx-27017 exited with {server.process.returncode}:\n"
                                   f"{server.log_tail()}")
        client: MongoClient[dict[str, Any]] = MongoClient(
            server.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250)
        try:
            client.admin.command("ping")
            return
        except PyMongoError:
            if time.monotonic() > deadline:
                raise MongoServerError(f"nx-27017 did not answer within {timeout} s:\n"
                                       f"{server.log_tail()}") from None
            time.sleep(0.05)
        finally:
            client.close()


def start(data_dir: Path | None = None, *, port: int | None = None,
          timeout: float = 15.0, password_file: Path | None = None) -> MongoServer:
    """Start nx-27017 on 127.0.0.1 and return once pymongo can ping it.

    `data_dir` keeps the databases (e.g. `.local-stack/mongo` for `make local`); without it a
    temporary directory is used and removed by `stop()`. Losing a free-port race to another
    process is retried on a fresh port. `password_file`: the server checks the password of a
    client that authenticates (user `PLAIN_USER`, mechanism PLAIN, see `plain_uri`) against the
    file's content, so tests can rotate a password; it does not refuse anonymous clients."""
    owns = data_dir is None
    workdir = Path(tempfile.mkdtemp(prefix="nx-27017-")) if data_dir is None else data_dir
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        command = [*executable(), "--host", HOST, "--port", str(chosen),
                   "--data-dir", str(workdir / "data"),
                   "--pid-file", str(workdir / "nx-27017.pid"),
                   "--log-file", str(workdir / "nx-27017.log")]
        if password_file is not None:
            command += [_PASSWORD_OPTION, str(password_file)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        last = attempt == attempts
        server = MongoServer(process=process, port=chosen, workdir=workdir,
                             owns_workdir=owns and last)
        try:
            _wait_until_ready(server, timeout)
        except MongoServerError:
            server.stop()
            if last:
                raise
            continue
        server.owns_workdir = owns
        return server
    raise MongoServerError("unreachable: the last attempt returns or raises")


#: the one user the embedded server knows when it checks passwords
PLAIN_USER = "dataport"
_PASSWORD_OPTION = "--dataport-password-file"  # noqa: S105 (an option name)


def plain_uri(port: int, password: str, host: str = HOST) -> str:
    """A URI that authenticates to a password-checking embedded server (SASL PLAIN, which
    pymongo speaks and which needs no SCRAM on the server side)."""
    return (f"mongodb://{PLAIN_USER}:{password}@{host}:{port}/"
            "?authMechanism=PLAIN&authSource=$external&directConnection=true")


@contextmanager
def running(data_dir: Path | None = None, *, port: int | None = None) -> Iterator[MongoServer]:
    """`with running() as server:` a server for the block, stopped (no leftover process) after."""
    server = start(data_dir, port=port)
    try:
        yield server
    finally:
        server.stop()


# --- inside the server process ------------------------------------------------------------------

_forced = threading.local()

#: command fields that hold a query filter (find, count, distinct, findAndModify, aggregate, and
#: the `q` of each update / delete statement)
_FILTER_KEYS = ("filter", "query", "pipeline", "q")


def _has_typed_value(value: object) -> bool:
    """Whether a filter compares a non-`_id` field with an ObjectId or a decimal: the values
    nx-27017's SQL translation gets wrong (it binds an ObjectId as its hex string and compares
    it with the stored object; a decimal would compare as text)."""
    if isinstance(value, Decimal128 | Decimal | ObjectId):
        return True
    if isinstance(value, dict):
        return any(_has_typed_value(item) for key, item in value.items() if key != "_id")
    if isinstance(value, list):
        return any(_has_typed_value(item) for item in value)
    return False


def _counts_only(stage: object) -> bool:
    """A stage the SQL tier gets right: anything but a $group, or a $group that just counts
    (`{_id: <constant>, n: {$sum: 1}}`, what count_documents sends)."""
    group = stage.get("$group") if isinstance(stage, dict) else None
    if not isinstance(group, dict):
        return True
    key = group.get("_id")
    return not isinstance(key, dict | list) and not (isinstance(key, str) and key[:1] == "$") \
        and all(isinstance(acc, dict) and list(acc) == ["$sum"]
                and isinstance(acc["$sum"], int | float)
                for name, acc in group.items() if name != "_id")


def _needs_python_tier(sections: list[tuple[str, Any]]) -> bool:
    """Aggregations that group by a field or accumulate values (the SQL tier groups by an
    ObjectId's JSON text and sums decimals to 0.0), any command whose filter compares with
    an ObjectId or a decimal, and any update that writes a date (below)."""
    for kind, doc in sections:
        if kind == "body" and "aggregate" in doc and not all(
                _counts_only(stage) for stage in doc.get("pipeline") or ()):
            return True
    return any(_has_typed_value(f) for f in _filters_of(sections)) \
        or any(_has_date(u) for u in _updates_of(sections))


def _has_date(value: object) -> bool:
    """Whether an update writes a datetime: the SQL tier binds one to SQLite as its `str()`
    ("2026-01-02 03:04:05+00:00"), so `$set`, `$max`, `$min`... stored a string where MongoDB
    stores a date; the Python tier stores it as nx-27017 stores an inserted one."""
    if isinstance(value, datetime):
        return True
    if isinstance(value, dict):
        return any(_has_date(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_date(item) for item in value)
    return False


def _updates_of(sections: list[tuple[str, Any]]) -> Iterator[object]:
    """The update documents of an `update` command's statements (`u`, in its body or its
    document sequence) and of a `findAndModify` (`update`)."""
    for _kind, doc in sections:
        statements = doc if isinstance(doc, list) else [doc]
        for statement in statements:
            if not isinstance(statement, dict):
                continue
            if "findAndModify" in statement or "findandmodify" in statement:
                yield statement.get("update")
            if "u" in statement:
                yield statement["u"]
            for item in statement.get("updates") or ():
                if isinstance(item, dict) and "u" in item:
                    yield item["u"]


def _filters_of(sections: list[tuple[str, Any]]) -> Iterator[object]:
    for _kind, doc in sections:
        statements = doc if isinstance(doc, list) else [doc]
        for statement in statements:
            if not isinstance(statement, dict):
                continue
            yield from (statement[key] for key in _FILTER_KEYS if key in statement)
            for key in ("updates", "deletes"):
                for item in statement.get(key) or ():
                    if isinstance(item, dict) and "q" in item:
                        yield item["q"]


def _decimal_to_json(encoder: Any, obj: object, fallback: Callable[[Any, object], Any]) -> Any:
    if isinstance(obj, Decimal128):
        obj = obj.to_decimal()
    if isinstance(obj, Decimal):
        return {"$numberDecimal": str(obj)}
    return fallback(encoder, obj)


def _decimals_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$numberDecimal"), str):
            return Decimal(value["$numberDecimal"])
        for key, item in value.items():
            value[key] = _decimals_from_json(item)
    elif isinstance(value, list):
        value[:] = [_decimals_from_json(item) for item in value]
    return value


def _replace_everywhere(package: str, original: object, replacement: object, name: str) -> None:
    """Swap a function in every module of `package` that imported it by name."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: S112 (optional submodules with missing extras)
            continue
        if getattr(module, name, None) is original:
            setattr(module, name, replacement)


def _patch() -> None:
    """Make nx-27017 0.8.1 (neosqlite underneath) right for Decimal128 and ObjectId filters.

    1. Storage: Decimal128 is stored as `{"$numberDecimal": "<exact>"}` and read back as Decimal,
       which nx-27017 already answers as Decimal128: values stay exact.
    2. Queries: an aggregation, or a request whose filter compares a non-`_id` field with an
       ObjectId or a decimal, runs on neosqlite's Python tier (its documented fallback, which
       compares typed values correctly) instead of the SQL translation. Per request, through a
       thread-local flag: requests run in worker threads. The Python tier scans the
       collection, so such queries cost O(collection) here; on MongoDB they use the indexes.
    3. Updates that write a datetime run on the Python tier too (the SQL tier binds it as text).
       Still wrong, and not worth patching: sorting by a decimal field (compared as text).
    """
    json_helpers = importlib.import_module("neosqlite.collection.json_helpers")
    query_utils = importlib.import_module("neosqlite.collection.query_helper.utils")
    translator = importlib.import_module("neosqlite.collection.sql_translator_unified")
    nx_utils = importlib.import_module("nx_27017.utils")
    handler = importlib.import_module("nx_27017.handler")

    encoder = json_helpers.NeoSQLiteJSONEncoder
    default = encoder.default
    encoder.default = lambda self, obj: _decimal_to_json(self, obj, default)

    loads = json_helpers.neosqlite_json_loads

    def loads_decimals(text: str | bytes, **kwargs: Any) -> Any:
        value = loads(text, **kwargs)
        if isinstance(text, str) and "$numberDecimal" not in text:
            return value  # most documents: skip the walk
        return _decimals_from_json(value)

    _replace_everywhere("neosqlite", loads, loads_decimals, "neosqlite_json_loads")

    to_neo = nx_utils.convert_bson_to_neo_objectids

    def bson_to_neo(doc: Any) -> Any:
        if isinstance(doc, Decimal128):
            return doc.to_decimal()
        if isinstance(doc, dict):
            return {key: bson_to_neo(value) for key, value in doc.items()}
        if isinstance(doc, list):
            return [bson_to_neo(item) for item in doc]
        return to_neo(doc)

    setattr(nx_utils, "convert_bson_to_neo_objectids", bson_to_neo)  # noqa: B010

    forced = query_utils.get_force_fallback
    _replace_everywhere("neosqlite", forced,
                        lambda: getattr(_forced, "on", False) or forced(), "get_force_fallback")
    translate = translator.SQLTranslator.translate_match

    def translate_match(self: Any, match_spec: Any, context: str = "direct") -> Any:
        if getattr(_forced, "on", False):
            return None, []
        return translate(self, match_spec, context)

    translator.SQLTranslator.translate_match = translate_match

    _index_in_lists()

    for method in ("handle_command", "handle_insert"):
        original = getattr(handler.NeoSQLiteHandler, method)

        def wrapped(self: Any, msg: dict[str, Any], _original: Any = original) -> Any:
            sections = msg.get("sections", [])
            _forced.on = _needs_python_tier(sections)
            # count, distinct and aggregate hand their filter to neosqlite unconverted, where a
            # BSON ObjectId never equals the stored one: convert like find does.
            msg["sections"] = [
                (kind, {key: bson_to_neo(value) if key in ("query", "pipeline") else value
                        for key, value in doc.items()} if kind == "body" else doc)
                for kind, doc in sections]
            try:
                return _original(self, msg)
            finally:
                _forced.on = False

        setattr(handler.NeoSQLiteHandler, method, wrapped)


#: the form of `dataport.source.mongo.one_of`: a list of values and the range around it
_ONE_OF = {"$in", "$gte", "$lte"}


def _index_in_lists() -> None:
    """Answer dataport's look-up of many values (`source.mongo.one_of`: `$in` with the range
    around it, on a scalar field: uuid, sessionId, staging's key) from the field's index, one
    point per value, as MongoDB does. neosqlite 1.x translates a `$in` on a field as "some
    element of the field's JSON is in the list" (json_each, which no index answers), so only
    the range used the index: with random uuids it spans the whole collection, and every look-up
    of held uuids read the whole of every message collection (1 s a look-up at 100,000 messages
    on this machine; docs/performance.md, "Session 5: restores"). Here that form becomes
    `<field> IN (...)`, which SQLite answers from the expression index. The one difference,
    a field holding an array, cannot arise: dataport uses the form for scalar fields only."""
    builder = importlib.import_module("neosqlite.collection.query_helper._sql_query_builder")
    mixin = builder.SqlQueryBuilderMixin
    original = mixin._build_operator_clause

    def build(self: Any, json_path: str, operators: dict[str, Any], *args: Any,
              **kwargs: Any) -> tuple[str | None, list[Any]]:
        values = operators.get("$in")
        if (set(operators) == _ONE_OF and json_path != "value" and isinstance(values, list)
                and values and all(isinstance(value, str) for value in values)):
            marks = ", ".join("?" for _ in values)
            field = f"{self.jsonb.json_function_prefix}_extract(data, {json_path})"
            return f"{field} IN ({marks})", list(values)
        result: tuple[str | None, list[Any]] = original(self, json_path, operators, *args,
                                                         **kwargs)
        return result

    mixin._build_operator_clause = build


def _exit_with_parent(poll_seconds: float = 0.5) -> None:
    """Stop when the process that started us is gone (a killed test run must not leave a server
    behind): the parent's death re-parents us, which changes getppid()."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _check_passwords(password_file: Path) -> None:
    """Answer `saslStart` (PLAIN) by comparing the password with the file's content; everything
    else goes to nx-27017 as before. A wrong password gets MongoDB's own refusal (code 18)."""
    handler = importlib.import_module("nx_27017.handler")
    original = handler.NeoSQLiteHandler.handle_command

    def handle_command(self: Any, msg: dict[str, Any]) -> Any:
        body = next((doc for kind, doc in msg.get("sections", []) if kind == "body"), None)
        if not (isinstance(body, dict) and "saslStart" in body):
            return original(self, msg)
        # PLAIN's message: authzid NUL user NUL password (RFC 4616)
        _authzid, _, credentials = bytes(body.get("payload", b"")).partition(b"\0")
        user, _, password = credentials.partition(b"\0")
        expected = password_file.read_text().strip().encode()
        if body.get("mechanism") == "PLAIN" and user == PLAIN_USER.encode() \
                and password == expected:
            return msg["request_id"], {"ok": 1.0, "conversationId": 1, "done": True,
                                       "payload": b""}
        return msg["request_id"], {"ok": 0.0, "errmsg": "Authentication failed.", "code": 18,
                                   "codeName": "AuthenticationFailed"}

    handler.NeoSQLiteHandler.handle_command = handle_command


def serve(argv: list[str]) -> None:
    """Run nx-27017 in this process, patched; `argv` are nx-27017's own options (and ours,
    `--dataport-password-file FILE`, taken out first)."""
    _exit_with_parent()
    _patch()
    if _PASSWORD_OPTION in argv:
        index = argv.index(_PASSWORD_OPTION)
        _check_passwords(Path(argv[index + 1]))
        argv = argv[:index] + argv[index + 2:]
    main = importlib.import_module("nx_27017.nx_27017").main
    sys.argv = ["nx-27017", *argv]
    main()


def main() -> None:
    """`python -m infrastructure.local.mongo_server [DATA_DIR]`: run a server until Ctrl-C;
    `python mongo_server.py serve OPTIONS` is the server process itself."""
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2:])
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the `finally` that stops it
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with running(data_dir) as server:
        print(f"MONGODB_URI={server.uri}", flush=True)
        with suppress(KeyboardInterrupt):
            server.process.wait()


if __name__ == "__main__":
    main()
