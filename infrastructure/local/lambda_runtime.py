"""In-process Lambda: the template's functions run as Python calls, no container.

What Lambda would do and this does: load the handler module once per function (a warm
container), put the function's layers on sys.path, pass a context whose
`get_remaining_time_in_millis` counts down from the function's Timeout, JSON-serialise event and
result (so a handler gets and returns only what would cross the wire), and answer errors as
`{"errorType", "errorMessage", "stackTrace"}` so Step Functions' Retry/Catch match error names as
on AWS. A run that overran its Timeout is reported as `Sandbox.Timedout` afterwards (a thread
cannot be killed, but the overrun must not pass unnoticed).

It also records every boto3 call a function makes, as (logical id, service, operation), so a
test can check each one against the function's IAM policy in the template.

All handlers share one process: they must not rely on per-function environment (the stack puts
the union of their environments into os.environ) and their handler modules are loaded under
unique names, because several functions have a `handler.py`.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import decimal
import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple
from unittest import mock

from botocore.client import BaseClient
from moto.awslambda.models import LambdaFunction

from infrastructure.local.template import Function

__all__ = [
    "Call",
    "CallDetail",
    "FunctionError",
    "Invocation",
    "LambdaContext",
    "LambdaRuntime",
]

LOG = logging.getLogger(__name__)

#: Lambda's synchronous response limit; Step Functions' state payload limit.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
MAX_STATE_PAYLOAD_BYTES = 256 * 1024

#: The runtime and function whose invocation the current thread (or task) is running.
_current_function: contextvars.ContextVar[tuple[LambdaRuntime, str] | None] = \
    contextvars.ContextVar("local_lambda_function", default=None)


class Call(NamedTuple):
    """One boto3 call made by a function."""

    logical_id: str
    service: str  # boto3 service name: "dynamodb", "s3", "stepfunctions", "secretsmanager"
    operation: str  # API operation: "PutItem", "CreateMultipartUpload"


@dataclass(frozen=True)
class CallDetail:
    """A call with what an IAM check needs besides the names: the IAM action prefix (the
    service's signing name: "states" for stepfunctions) and the request parameters."""

    call: Call
    iam_prefix: str
    params: Mapping[str, Any]


class FunctionError(Exception):
    """A function failed in a way that is not its own exception (timeout, bad result, import)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class LambdaContext:
    """What a Python handler receives as `context` (the attributes Powertools reads)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float  # time.monotonic() at which Lambda would stop the function
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[$LATEST]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation."""

    logical_id: str
    request_id: str
    duration_ms: float
    result: Any = None  # the JSON-decoded result when it succeeded
    error: BaseException | None = None
    error_type: str | None = None

    @property
    def errored(self) -> bool:
        return self.error is not None

    def error_payload(self) -> dict[str, Any]:
        assert self.error is not None
        return {
            "errorType": self.error_type,
            "errorMessage": str(self.error),
            "requestId": self.request_id,
            # from the handler down, as Lambda reports it (this module's frame is not Lambda's)
            "stackTrace": traceback.format_list(
                [frame for frame in traceback.extract_tb(self.error.__traceback__)
                 if frame.filename != __file__]),
        }

    def payload(self) -> str:
        """What Lambda's Invoke API returns as Payload."""
        return json.dumps(self.error_payload() if self.errored else self.result)


def _json_default(value: Any) -> Any:
    # The Python runtime's marshaller writes Decimal as a number, and nothing else non-JSON.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@dataclass
class _Loaded:
    module: ModuleType
    handler: Callable[[Any, LambdaContext], Any]


@dataclass(eq=False)  # identity: the process hooks keep a list of installed runtimes
class LambdaRuntime:
    """The template's functions, invocable in-process.

    `install()` hooks it into moto (Lambda Invoke, hence Step Functions' lambda:invoke) and into
    botocore (call recording); `uninstall()` undoes both.
    """

    functions: Mapping[str, Function]
    enforce_timeouts: bool = True
    details: list[CallDetail] = field(default_factory=list)
    #: the fault hook: a function's handler replaced by another build of it (tests deploy one
    #: that is slow, or fails mid-way, through the collaborators the logic takes); reset() clears
    handler_overrides: dict[str, Callable[[Any, LambdaContext], Any]] = field(
        default_factory=dict)
    _timeouts_ms: dict[str, int] = field(default_factory=dict)
    _loaded: dict[str, _Loaded] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _running: int = 0  # invocations in progress

    # -------------------------------------------------------------- configuration

    def set_timeout(self, logical_id: str, milliseconds: int | None) -> None:
        """Override the template's Timeout (None: back to the template's value), e.g. to make the
        export worker hand its cursor on after a few pages."""
        self._function(logical_id)
        if milliseconds is None:
            self._timeouts_ms.pop(logical_id, None)
        else:
            self._timeouts_ms[logical_id] = milliseconds

    def timeout_ms(self, logical_id: str) -> int:
        return self._timeouts_ms.get(logical_id, self._function(logical_id).timeout_s * 1000)

    def reset(self) -> None:
        """Forget recorded calls, timeout and handler overrides (modules stay loaded: warm)."""
        with self._lock:
            self.details.clear()
            self._timeouts_ms.clear()
            self.handler_overrides.clear()

    def record(self, detail: CallDetail) -> None:
        with self._lock:
            self.details.append(detail)

    @property
    def running(self) -> int:
        """How many invocations are in progress (a stopped execution's task may still be)."""
        with self._lock:
            return self._running

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return [detail.call for detail in self.details]

    def logical_id_for(self, name_or_arn: str) -> str:
        for lid, function in self.functions.items():
            if name_or_arn in (function.name, function.arn, lid):
                return lid
        raise KeyError(f"No local function is named {name_or_arn}")

    def _function(self, logical_id: str) -> Function:
        try:
            return self.functions[logical_id]
        except KeyError:
            raise KeyError(f"No function {logical_id} in the template") from None

    # -------------------------------------------------------------- invocation

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Invoke and return the (JSON round-tripped) result; the handler's exception, or a
        FunctionError for what Lambda itself would report, is raised."""
        invocation = self.run(logical_id, event)
        if invocation.error is not None:
            raise invocation.error
        return invocation.result

    def run(self, logical_id: str, event: Any) -> Invocation:
        """Invoke and return the outcome, errors included (never raises for handler faults)."""
        function = self._function(logical_id)
        request_id = str(uuid.uuid4())
        timeout_ms = self.timeout_ms(logical_id)
        started = time.monotonic()
        context = LambdaContext(
            function_name=function.name,
            invoked_function_arn=function.arn,
            memory_limit_in_mb=function.memory_mb,
            aws_request_id=request_id,
            deadline=started + timeout_ms / 1000,
        )

        def outcome(result: Any = None, error: BaseException | None = None,
                    error_type: str | None = None) -> Invocation:
            return Invocation(logical_id, request_id, (time.monotonic() - started) * 1000,
                              result, error, error_type)

        try:
            payload = json.loads(json.dumps(event, default=_json_default))
        except TypeError as exc:
            return outcome(error=exc, error_type="Runtime.MarshalError")
        try:
            loaded = self._load(function)
        except FunctionError as exc:
            return outcome(error=exc, error_type=exc.error_type)

        token = _current_function.set((self, logical_id))
        with self._lock:
            self._running += 1
        try:
            handler = self.handler_overrides.get(logical_id, loaded.handler)
            result = handler(payload, context)
        except Exception as exc:
            LOG.info("%s failed: %s: %s", logical_id, type(exc).__name__, exc)
            return outcome(error=exc, error_type=type(exc).__name__)
        finally:
            _current_function.reset(token)
            with self._lock:
                self._running -= 1

        elapsed = time.monotonic() - started
        if self.enforce_timeouts and elapsed * 1000 > timeout_ms:
            message = f"RequestId: {request_id} Error: Task timed out after {elapsed:.2f} seconds"
            return outcome(error=FunctionError("Sandbox.Timedout", message),
                           error_type="Sandbox.Timedout")
        try:
            encoded = json.dumps(result, default=_json_default)
        except (TypeError, ValueError) as exc:
            return outcome(error=FunctionError("Runtime.MarshalError", str(exc)),
                           error_type="Runtime.MarshalError")
        if len(encoded.encode()) > MAX_RESPONSE_BYTES:
            message = f"Response payload size exceeded maximum allowed ({MAX_RESPONSE_BYTES} bytes)"
            return outcome(error=FunctionError("Function.ResponseSizeTooLarge", message),
                           error_type="Function.ResponseSizeTooLarge")
        return outcome(result=json.loads(encoded))

    def module(self, logical_id: str) -> ModuleType:
        """A function's handler module, loaded if need be (tests may inspect its state)."""
        return self._load(self._function(logical_id)).module

    def _load(self, function: Function) -> _Loaded:
        """Import the handler once (the warm container), by file path under a unique name."""
        with self._lock:
            if function.logical_id in self._loaded:
                return self._loaded[function.logical_id]
            for layer in function.layer_dirs:
                if str(layer) not in sys.path:
                    sys.path.insert(0, str(layer))
            name = f"_local_lambda_{function.logical_id}"
            spec = importlib.util.spec_from_file_location(name, function.module_path)
            if spec is None or spec.loader is None or not function.module_path.exists():
                raise FunctionError("Runtime.ImportModuleError",
                                    f"Unable to import module {function.module_path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                LOG.exception("Importing %s failed", function.module_path)
                raise FunctionError("Runtime.ImportModuleError",
                                    f"Unable to import module {function.module_path}: {exc}"
                                    ) from exc
            handler = getattr(module, function.handler_name, None)
            if not callable(handler):
                raise FunctionError("Runtime.HandlerNotFound",
                                    f"Handler {function.handler} missing in {function.module_path}")
            self._loaded[function.logical_id] = _Loaded(module, handler)
            return self._loaded[function.logical_id]

    # -------------------------------------------------------------- hooks

    def install(self) -> None:
        """Route moto's Lambda invocations of these functions here and record their boto3 calls.
        Several runtimes may be installed at once (a test stack inside the session stack)."""
        with _hooks_lock:
            if self not in _installed:
                if not _installed:
                    _patch_process()
                _installed.append(self)

    def uninstall(self) -> None:
        with _hooks_lock:
            if self in _installed:
                _installed.remove(self)
                if not _installed:
                    _unpatch_process()

    @contextmanager
    def installed(self) -> Iterator[LambdaRuntime]:
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def moto_invoke(self, function_name: str, event: Any) -> tuple[str, bool, str]:
        """moto's `_invoke_lambda` contract: (payload, errored, logs)."""
        if isinstance(event, (str, bytes)):
            event = json.loads(event or "{}")
        invocation = self.run(self.logical_id_for(function_name), event)
        if invocation.errored:
            return invocation.payload(), True, ""
        payload = invocation.payload()
        # Only Step Functions invokes through moto here, and it refuses state payloads above
        # 256 KiB; moto's interpreter does not check, so the limit is enforced at the source.
        if len(payload.encode()) > MAX_STATE_PAYLOAD_BYTES:
            error = {"errorType": "States.DataLimitExceeded",
                     "errorMessage": f"{function_name} returned {len(payload.encode())} bytes, "
                                     f"more than the {MAX_STATE_PAYLOAD_BYTES} a state may carry"}
            return json.dumps(error), True, ""
        return payload, False, ""


# ---------------------------------------------------------------------------- process hooks

_installed: list[LambdaRuntime] = []
_hooks_lock = threading.Lock()
_patches = ExitStack()


def _moto_invoke_lambda(moto_function: Any, event: Any = None) -> tuple[str, bool, str]:
    """Replaces moto's `LambdaFunction._invoke_lambda`, which would run a Docker container."""
    name = moto_function.function_name
    for runtime in reversed(_installed):
        if any(name == f.name for f in runtime.functions.values()):
            return runtime.moto_invoke(name, event)
    error = {"errorType": "ResourceNotFoundException",
             "errorMessage": f"{name} is not a function of a running local stack"}
    return json.dumps(error), True, ""


_original_api_call = BaseClient._make_api_call  # type: ignore[attr-defined]  # private API
_original_submit = concurrent.futures.ThreadPoolExecutor.submit


def _recording_api_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
    """Every botocore call goes through here, whichever factory made the client (Powertools'
    parameters make their own): calls inside an invocation are recorded for its function."""
    current = _current_function.get()
    if current is not None:
        runtime, logical_id = current
        model = client.meta.service_model
        detail = CallDetail(Call(logical_id, model.service_name, operation), model.signing_name,
                            dict(params))
        runtime.record(detail)
    return _original_api_call(client, operation, params)


def _submit_in_context(executor: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any],
                       /, *args: Any, **kwargs: Any) -> Any:
    """Threads do not inherit context variables; boto3's managed transfers (s3transfer) call S3
    from a pool, and those calls belong to the invoking function too."""
    if _current_function.get() is None:
        return _original_submit(executor, fn, *args, **kwargs)
    return _original_submit(executor, contextvars.copy_context().run, fn, *args, **kwargs)


def _patch_process() -> None:
    _patches.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda",
                                             _moto_invoke_lambda))
    _patches.enter_context(mock.patch.object(BaseClient, "_make_api_call", _recording_api_call))
    _patches.enter_context(mock.patch.object(concurrent.futures.ThreadPoolExecutor, "submit",
                                             _submit_in_context))


def _unpatch_process() -> None:
    _patches.close()
