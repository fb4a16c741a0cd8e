"""A local API Gateway WebSocket API, driven by the template's AWS::ApiGatewayV2 resources.

Two real servers on 127.0.0.1, as API Gateway offers two faces:

- `ws://127.0.0.1:<port>/<stage>`: a `websockets` server. The opening handshake runs the $connect
  route as API Gateway does (identity sources missing -> 401 without calling the authorizer;
  `Exception("Unauthorized")` -> 401; a policy that does not allow the $connect ARN -> 403; then
  the $connect integration, whose non-2xx statusCode refuses the handshake with that status).
  Each text message goes to the route its `$request.body.<field>` selects (else $default), with
  the authorizer's context on every event; a close runs $disconnect. A failing integration
  answers the client `{"message": "Internal server error", ...}`, as AWS does.
- `http://127.0.0.1:<port>/<stage>/@connections/{connectionId}`: the management API the handlers
  reach through AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI. POST sends a frame (410 with
  `x-amzn-ErrorType: GoneException` for a closed connection, so botocore raises the real
  GoneException; 413 past 128 KB), GET describes the connection, DELETE closes it. Ids arrive
  URL-encoded (botocore quotes `=`, `+` and `/`) and are decoded. A post only queues the frame
  and returns: a slow client never holds the poster up, and frames keep their order.

API Gateway delivers $disconnect on a best-effort basis; `lose_disconnects = True` drops them, so
tests can see a gone connection being pruned by the next post (410).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from infrastructure.local.lambda_runtime import LambdaRuntime
from infrastructure.local.rest_gateway import _context_value, _policy_allows
from infrastructure.local.template import WebSocketApi, WebSocketAuthorizer, WebSocketRoute

__all__ = ["ConnectionCall", "WebSocketGateway"]

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: API Gateway's limits: a message (several 32 KB frames) and a post to @connections
MAX_MESSAGE_BYTES = 128 * 1024
INTEGRATION_TIMEOUT_S = 29
CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
_MISSING = object()


class ConnectionCall(NamedTuple):
    """One request to the @connections endpoint and its answer's status."""

    method: str
    connection_id: str
    status: int


@dataclass
class _Connection:
    id: str
    socket: ServerConnection
    connected_at: int  # epoch ms
    source_ip: str
    user_agent: str | None
    authorizer: dict[str, Any] | None
    outbox: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)
    last_active: float = field(default_factory=time.time)
    silent: bool = False  # closed by reset(): no $disconnect


def _connection_id() -> str:
    """Like API Gateway's ("L0SM9cOFvHcCIhw="): base64, so '=', '+' and '/' must survive URLs."""
    return base64.b64encode(os.urandom(11)).decode()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _request_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


@dataclass(eq=False)
class WebSocketGateway:
    """One WebSocket API of the template on 127.0.0.1 (`url`, and `callback_url` for handlers)."""

    api: WebSocketApi
    runtime: LambdaRuntime
    region: str
    account_id: str
    port: int = 0
    connections_port: int = 0
    lose_disconnects: bool = False
    calls: list[ConnectionCall] = field(default_factory=list)
    _connections: dict[str, _Connection] = field(default_factory=dict)
    _pending: dict[ServerConnection, _Connection] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _loop_thread: threading.Thread | None = None
    _server: Server | None = None
    _http: ThreadingHTTPServer | None = None
    _http_thread: threading.Thread | None = None
    _executor: ThreadPoolExecutor | None = None
    _stopping: bool = False

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._stopping = False
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ws-lambda")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, name="ws-gateway",
                                             daemon=True)
        self._loop_thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), loop).result()
        self.port = self._server.sockets[0].getsockname()[1]

        gateway = self

        class Handler(_ConnectionsHandler):
            pass

        Handler.gateway = gateway
        self._http = ThreadingHTTPServer((HOST, self.connections_port), Handler)
        self._http.daemon_threads = False  # close() joins the request threads
        self.connections_port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"ws-connections-{self.connections_port}", daemon=True)
        self._http_thread.start()

    async def _serve(self) -> Server:
        return await serve(self._session, HOST, self.port, process_request=self._handshake,
                           max_size=MAX_MESSAGE_BYTES, open_timeout=INTEGRATION_TIMEOUT_S + 1,
                           server_header=None)

    def stop(self) -> None:
        """Close every connection (no $disconnect: the stack is going away) and both servers."""
        self._stopping = True
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
        if self._loop is not None:
            if self._server is not None:
                server = self._server

                async def close() -> None:
                    server.close()
                    await server.wait_closed()

                asyncio.run_coroutine_threadsafe(close(), self._loop).result()
                self._server = None
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join()
            self._loop_thread = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._connections.clear()
        self._pending.clear()

    def reset(self) -> None:
        """Between tests: every connection closed without $disconnect (its tables are emptied
        anyway), disconnects delivered again, recorded @connections calls forgotten."""
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
            self.calls.clear()
        self.lose_disconnects = False
        if self._loop is not None:
            for connection in connections:
                connection.silent = True
                asyncio.run_coroutine_threadsafe(connection.socket.close(1001, "reset"),
                                                 self._loop).result(timeout=10)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/{self.api.stage}"

    @property
    def callback_url(self) -> str:
        """What AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI holds (botocore adds /@connections/...)."""
        return f"http://{HOST}:{self.connections_port}/{self.api.stage}"

    @property
    def connection_ids(self) -> list[str]:
        with self._lock:
            return list(self._connections)

    # -------------------------------------------------------------- WebSocket side

    async def _handshake(self, socket: ServerConnection, request: Request) -> Response | None:
        """$connect: the authorizer, then the integration; an answer refuses the handshake."""
        parts = urlsplit(request.path)
        if parts.path.rstrip("/") != f"/{self.api.stage}":
            return socket.respond(HTTPStatus.FORBIDDEN, '{"message":"Forbidden"}')
        headers = list(request.headers.raw_items())
        remote = socket.remote_address
        connection = _Connection(
            id=_connection_id(), socket=socket, connected_at=_now_ms(),
            source_ip=str(remote[0]) if remote else HOST,
            user_agent=request.headers.get("User-Agent"), authorizer=None)
        event = self._event(connection, CONNECT, "CONNECT")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for name, value in pairs:
            multi_query.setdefault(name, []).append(value)
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers:
            multi_headers.setdefault(name, []).append(value)
        event.update({
            "headers": dict(headers), "multiValueHeaders": multi_headers,
            "queryStringParameters": dict(pairs) or None,
            "multiValueQueryStringParameters": multi_query or None,
        })
        route = self.api.routes.get(CONNECT)
        try:
            if route is not None and route.authorizer is not None:
                connection.authorizer = await self._authorize(route.authorizer, event)
                event["requestContext"]["authorizer"] = connection.authorizer
            if route is not None:
                await self._connect(route, event)
        except _Refused as refused:
            return socket.respond(refused.status, str(refused))
        # Live from the 101 on, as on AWS: a post that comes before the session starts waits in
        # the outbox (and a handshake that fails after this is seen as closed: 410).
        with self._lock:
            self._connections[connection.id] = connection
        self._pending[socket] = connection
        return None

    async def _authorize(self, authorizer: WebSocketAuthorizer,
                         event: dict[str, Any]) -> dict[str, Any]:
        for source in authorizer.identity_sources:
            if self._identity(source, event) in (_MISSING, ""):
                raise _Refused(HTTPStatus.UNAUTHORIZED, '{"message":"Unauthorized"}')
        method_arn = (f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api.id}/"
                      f"{self.api.stage}/{CONNECT}")
        request = {"type": "REQUEST", "methodArn": method_arn, "stageVariables": {},
                   **{k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")}}
        started = time.monotonic()
        invocation = await self._invoke(authorizer.function, request)
        if invocation.errored:
            if str(invocation.error) == "Unauthorized":
                raise _Refused(HTTPStatus.UNAUTHORIZED, '{"message":"Unauthorized"}')
            LOG.warning("Authorizer %s failed: %s", authorizer.name, invocation.error)
            raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, '{"message":null}')
        result = invocation.result
        try:
            statements = result["policyDocument"]["Statement"]
            statements = statements if isinstance(statements, list) else [statements]
            context = {str(k): _context_value(v) for k, v in (result.get("context") or {}).items()}
            principal = str(result["principalId"])
        except (TypeError, KeyError, ValueError) as exc:
            LOG.warning("Authorizer %s answered no valid policy: %s", authorizer.name, exc)
            raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, '{"message":null}') from None
        if not _policy_allows(statements, method_arn):
            raise _Refused(HTTPStatus.FORBIDDEN, '{"message":"Forbidden"}')
        return {"principalId": principal, **context,
                "integrationLatency": int((time.monotonic() - started) * 1000)}

    @staticmethod
    def _identity(source: str, event: Mapping[str, Any]) -> object:
        prefix, _, name = source.rpartition(".")
        if prefix == "route.request.querystring":
            return (event.get("queryStringParameters") or {}).get(name, _MISSING)
        if prefix == "route.request.header":
            for key, value in (event.get("headers") or {}).items():
                if key.lower() == name.lower():
                    return value
            return _MISSING
        raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, f"identity source {source} not emulated")

    async def _connect(self, route: WebSocketRoute, event: dict[str, Any]) -> None:
        invocation = await self._invoke(route.function, event)
        if invocation.errored:
            LOG.warning("%s failed on $connect: %s", route.function, invocation.error)
            raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, '{"message":"Internal server error"}')
        status = 200
        if isinstance(invocation.result, dict) and "statusCode" in invocation.result:
            status = int(invocation.result["statusCode"])
        if not 200 <= status < 300:
            raise _Refused(status, str((invocation.result or {}).get("body") or ""))

    async def _session(self, socket: ServerConnection) -> None:
        connection = self._pending.pop(socket)
        sender = asyncio.create_task(self._send_loop(connection))
        try:
            async for message in socket:
                connection.last_active = time.time()
                await self._message(connection, message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.pop(connection.id, None)  # from now on: 410 Gone
            sender.cancel()
            with suppress(asyncio.CancelledError):
                await sender
            if not (self._stopping or self.lose_disconnects or connection.silent) \
                    and DISCONNECT in self.api.routes:
                event = self._event(connection, DISCONNECT, "DISCONNECT")
                event["requestContext"]["disconnectStatusCode"] = socket.close_code or 1006
                event["requestContext"]["disconnectReason"] = socket.close_reason or ""
                event["headers"] = {"Host": f"{HOST}:{self.port}",
                                    "X-Forwarded-For": connection.source_ip}
                invocation = await self._invoke(self.api.routes[DISCONNECT].function, event)
                if invocation.errored:
                    LOG.warning("$disconnect failed: %s", invocation.error)

    async def _send_loop(self, connection: _Connection) -> None:
        while True:
            frame = await connection.outbox.get()
            try:
                await connection.socket.send(frame)
            except ConnectionClosed:
                return

    async def _message(self, connection: _Connection, message: str | bytes) -> None:
        request_id = str(uuid.uuid4())
        route = self.api.routes.get(self._route_key(message)) or self.api.routes.get(DEFAULT)
        if route is None:
            connection.outbox.put_nowait(json.dumps({
                "message": "Forbidden", "connectionId": connection.id, "requestId": request_id}))
            return
        event = self._event(connection, route.key, "MESSAGE", request_id)
        if isinstance(message, bytes):
            event.update(body=base64.b64encode(message).decode(), isBase64Encoded=True)
        else:
            event["body"] = message
        invocation = await self._invoke(route.function, event)
        if invocation.errored:
            LOG.warning("%s failed on route %s: %s", route.function, route.key, invocation.error)
            connection.outbox.put_nowait(json.dumps({
                "message": "Internal server error", "connectionId": connection.id,
                "requestId": request_id}))

    def _route_key(self, message: str | bytes) -> str:
        """The value at $request.body.<path>, when the message is JSON that has one."""
        try:
            value: Any = json.loads(message)
        except (ValueError, RecursionError):  # API Gateway routes what it cannot read to $default
            return DEFAULT
        for name in self.api.selection_path:
            if not isinstance(value, dict) or name not in value:
                return DEFAULT
            value = value[name]
        return value if isinstance(value, str) else DEFAULT

    def _event(self, connection: _Connection, route_key: str, event_type: str,
               request_id: str | None = None) -> dict[str, Any]:
        request_id = request_id or str(uuid.uuid4())
        now = _now_ms()
        context: dict[str, Any] = {
            "routeKey": route_key, "eventType": event_type, "extendedRequestId": request_id,
            "requestTime": _request_time(now), "messageDirection": "IN",
            "stage": self.api.stage, "connectedAt": connection.connected_at,
            "requestTimeEpoch": now, "requestId": request_id,
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "domainName": f"{HOST}:{self.port}", "connectionId": connection.id,
            "apiId": self.api.id,
        }
        if event_type == "MESSAGE":
            context["messageId"] = str(uuid.uuid4())
        if connection.authorizer is not None:  # API Gateway repeats it on every route
            context["authorizer"] = connection.authorizer
        return {"requestContext": context, "isBase64Encoded": False}

    async def _invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.runtime.run, logical_id, event)

    # -------------------------------------------------------------- @connections side

    def manage(self, method: str, connection_id: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """One @connections request -> (status, JSON body); the HTTP server calls this."""
        with self._lock:
            connection = self._connections.get(connection_id)
        status, answer = self._manage(method, connection, body)
        with self._lock:
            self.calls.append(ConnectionCall(method, connection_id, int(status)))
        return status, answer

    def _manage(self, method: str, connection: _Connection | None,
                body: bytes) -> tuple[int, dict[str, Any]]:
        if method not in ("POST", "GET", "DELETE"):
            return HTTPStatus.METHOD_NOT_ALLOWED, {"message": f"{method} is not supported"}
        if connection is None or self._loop is None \
                or connection.socket.state in (State.CLOSING, State.CLOSED):
            return HTTPStatus.GONE, {"message": None}
        if method == "POST":
            if len(body) > MAX_MESSAGE_BYTES:
                return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {
                    "message": f"Message too long: at most {MAX_MESSAGE_BYTES} bytes"}
            try:
                frame: str | bytes = body.decode("utf-8")
            except UnicodeDecodeError:
                frame = body
            self._loop.call_soon_threadsafe(connection.outbox.put_nowait, frame)
            return HTTPStatus.OK, {}
        if method == "GET":
            return HTTPStatus.OK, {  # the wire names (botocore maps them to ConnectedAt...)
                "connectedAt": _iso(connection.connected_at / 1000),
                "identity": {"sourceIp": connection.source_ip,
                             "userAgent": connection.user_agent or ""},
                "lastActiveAt": _iso(connection.last_active)}
        asyncio.run_coroutine_threadsafe(connection.socket.close(1000, "deleted"), self._loop)
        return HTTPStatus.NO_CONTENT, {}


_ERROR_TYPES = {HTTPStatus.GONE: "GoneException",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "PayloadTooLargeException",
                HTTPStatus.FORBIDDEN: "ForbiddenException",
                HTTPStatus.NOT_FOUND: "NotFoundException",
                HTTPStatus.METHOD_NOT_ALLOWED: "BadRequestException"}


class _ConnectionsHandler(BaseHTTPRequestHandler):
    """HTTP/1.0: one request per connection, so stopping never waits on an idle keep-alive."""

    gateway: WebSocketGateway

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        prefix = f"/{self.gateway.api.stage}/@connections/"
        path = urlsplit(self.path).path
        status: int
        answer: dict[str, Any]
        if not path.startswith(prefix) or len(path) == len(prefix):
            status, answer = HTTPStatus.NOT_FOUND, {"message": "Not Found"}
        elif not (self.headers.get("Authorization") or "").startswith("AWS4-HMAC-SHA256 "):
            status, answer = HTTPStatus.FORBIDDEN, {"message": "Missing Authentication Token"}
        else:
            connection_id = unquote(path[len(prefix):])
            status, answer = self.gateway.manage(self.command, connection_id, body)
        payload = json.dumps(answer).encode() if status != HTTPStatus.NO_CONTENT else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status in _ERROR_TYPES:
            self.send_header("x-amzn-ErrorType", _ERROR_TYPES[HTTPStatus(status)])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)
