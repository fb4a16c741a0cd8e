"""A local API Gateway REST API (Lambda proxy integration, v1 events), driven by the template.

What `sam local start-api` would do, without containers: match the request against the Api
events of the template's functions (stage prefix, `{param}` and `{proxy+}` templates, the most
specific resource first), run the REQUEST authorizer as API Gateway does (identity sources
missing -> 401 without calling it; `Exception("Unauthorized")` -> 401; a policy that does not
allow the method ARN -> ACCESS_DENIED; results cached per identity for ReauthorizeEvery), answer
gateway errors with the template's GatewayResponses, answer CORS preflights (OPTIONS) as the
mock method SAM adds for the Api's `Cors` does (no authorizer, no function), and return the
handler's proxy response
as API Gateway would: headers and multiValueHeaders merged, base64 bodies decoded only when the
first Accept type is one of the API's BinaryMediaTypes (otherwise AWS returns the base64 text,
and so does this), 502 for a failed or malformed answer, 504 past the 29 s integration timeout.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from infrastructure.local.lambda_runtime import LambdaRuntime
from infrastructure.local.template import Authorizer, RestApi, Route

__all__ = ["GatewayResponseType", "HttpResponse", "RestGateway"]

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
INTEGRATION_TIMEOUT_S = 29
#: what SAM lists for an ANY method in a preflight's Access-Control-Allow-Methods
_ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
MAX_REQUEST_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class GatewayResponseType:
    """A gateway response API Gateway answers by itself, with its defaults."""

    name: str
    status: int
    body: str
    error_type: str | None  # x-amzn-ErrorType

    @property
    def family(self) -> str:
        return "DEFAULT_4XX" if self.status < 500 else "DEFAULT_5XX"


UNAUTHORIZED = GatewayResponseType("UNAUTHORIZED", 401, '{"message":"Unauthorized"}',
                                   "UnauthorizedException")
ACCESS_DENIED = GatewayResponseType(
    "ACCESS_DENIED", 403,
    '{"Message":"User is not authorized to access this resource with an explicit deny"}',
    "AccessDeniedException")
MISSING_AUTHENTICATION_TOKEN = GatewayResponseType(
    "MISSING_AUTHENTICATION_TOKEN", 403, '{"message":"Missing Authentication Token"}',
    "MissingAuthenticationTokenException")
AUTHORIZER_CONFIGURATION_ERROR = GatewayResponseType(
    "AUTHORIZER_CONFIGURATION_ERROR", 500, '{"message":null}', "AuthorizerConfigurationException")
REQUEST_TOO_LARGE = GatewayResponseType("REQUEST_TOO_LARGE", 413, '{"message":"Request Too Long"}',
                                        "RequestTooLargeException")
INTEGRATION_FAILURE = GatewayResponseType(  # a failed or malformed Lambda proxy answer
    "DEFAULT_5XX", 502, '{"message": "Internal server error"}', "InternalServerErrorException")
INTEGRATION_TIMEOUT = GatewayResponseType(
    "INTEGRATION_TIMEOUT", 504, '{"message": "Endpoint request timed out"}', None)


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class _Request:
    method: str  # upper case
    path: str  # without the stage prefix
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    request_id: str


@dataclass(frozen=True)
class _Match:
    route: Route
    path_parameters: dict[str, str]


@dataclass
class _Decision:
    principal_id: str
    context: dict[str, str]
    statements: list[Mapping[str, Any]]
    expires: float


class _Denied(Exception):
    def __init__(self, response: GatewayResponseType, message: str) -> None:
        super().__init__(message)
        self.response = response


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _match_resource(template: str, path: str) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """(specificity, path parameters) when `path` fits the resource template, else None.
    Specificity orders matches as API Gateway does: literal < {param} < {proxy+}, per segment."""
    wanted, actual = _segments(template), _segments(path)
    rank: list[int] = []
    params: dict[str, str] = {}
    for index, part in enumerate(wanted):
        if part.startswith("{") and part.endswith("+}"):
            rest = actual[index:]
            if not rest:
                return None
            params[part[1:-2]] = "/".join(rest)
            return (*rank, 2), params
        if index >= len(actual):
            return None
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = actual[index]
            rank.append(1)
        elif part == actual[index]:
            rank.append(0)
        else:
            return None
    return (tuple(rank), params) if len(wanted) == len(actual) else None


def _arn_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_allows(statements: Iterable[Mapping[str, Any]], method_arn: str) -> bool:
    """IAM evaluation as API Gateway applies it to an authorizer's policy: an explicit Deny
    wins, otherwise some Allow of execute-api:Invoke must match the method ARN."""
    allowed = False
    for statement in statements:
        actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
        if not any(a in ("*", "execute-api:*", "execute-api:invoke") for a in actions):
            continue
        if not any(_arn_pattern(str(r)).fullmatch(method_arn)
                   for r in _as_list(statement.get("Resource", []))):
            continue
        if str(statement.get("Effect", "")).lower() == "deny":
            return False
        allowed = allowed or str(statement.get("Effect", "")).lower() == "allow"
    return allowed


def _context_value(value: Any) -> str:
    """API Gateway hands the authorizer's context on as strings, and refuses nested values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"authorizer context values must be scalars, not {type(value).__name__}")


@dataclass
class RestGateway:
    """One REST API of the template served on 127.0.0.1; `url` ends with the stage ("/v1")."""

    api: RestApi
    runtime: LambdaRuntime
    region: str
    account_id: str
    port: int = 0
    #: the time requests are stamped with (requestTimeEpoch): the stack's clock
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _cache: dict[tuple[str, tuple[str, ...]], _Decision] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    # -------------------------------------------------------------- server

    def start(self) -> None:
        gateway = self

        class Handler(_RequestHandler):
            pass

        Handler.gateway = gateway
        server = ThreadingHTTPServer((HOST, self.port), Handler)
        server.daemon_threads = False  # close() joins the request threads: nothing left behind
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"rest-gateway-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/{self.api.stage}"

    def clear_authorizer_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # -------------------------------------------------------------- request handling

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
               source_ip: str = HOST) -> HttpResponse:
        """One HTTP request -> one HTTP response (the server calls this; tests may too)."""
        request_id = str(uuid.uuid4())
        raw_path, _, query = target.partition("?")
        stage_prefix = f"/{self.api.stage}"
        if raw_path != stage_prefix and not raw_path.startswith(stage_prefix + "/"):
            return self._gateway_response(MISSING_AUTHENTICATION_TOKEN, request_id, "")
        path = raw_path[len(stage_prefix):] or "/"
        if len(body) > MAX_REQUEST_BYTES:
            return self._gateway_response(REQUEST_TOO_LARGE, request_id, "")
        if method.upper() == "OPTIONS" and self.api.cors is not None:
            preflight = self._preflight(path, request_id)
            if preflight is not None:
                return preflight
        match = self._route(method.upper(), path)
        if match is None:
            return self._gateway_response(MISSING_AUTHENTICATION_TOKEN, request_id, "")

        request = _Request(method.upper(), path, query, headers, body, source_ip, request_id)
        event = self._proxy_event(match, request)
        authorizer = self.api.authorizer_for(match.route.event)
        if authorizer is not None:
            try:
                event["requestContext"]["authorizer"] = self._authorize(authorizer, event,
                                                                        method.upper(), path)
            except _Denied as denied:
                return self._gateway_response(denied.response, request_id, str(denied))

        invocation = self.runtime.run(match.route.function, event)
        if invocation.error_type == "Sandbox.Timedout" \
                or invocation.duration_ms > INTEGRATION_TIMEOUT_S * 1000:
            return self._gateway_response(INTEGRATION_TIMEOUT, request_id, "")
        if invocation.errored:
            LOG.warning("%s failed behind %s %s: %s", match.route.function, method, path,
                        invocation.error)
            return self._gateway_response(INTEGRATION_FAILURE, request_id, "")
        try:
            return self._proxy_response(invocation.result, headers, request_id)
        except (TypeError, ValueError, KeyError) as exc:
            LOG.warning("%s returned a malformed proxy response: %s", match.route.function, exc)
            return self._gateway_response(INTEGRATION_FAILURE, request_id, "")

    def _route(self, method: str, path: str) -> _Match | None:
        best: tuple[tuple[tuple[int, ...], int], _Match] | None = None
        for route in self.api.routes:
            if route.event.method not in (method, "ANY"):
                continue
            found = _match_resource(route.event.path, path)
            if found is None:
                continue
            key = (found[0], 0 if route.event.method == method else 1)
            if best is None or key < best[0]:
                best = (key, _Match(route, found[1]))
        return best[1] if best else None

    def _preflight(self, path: str, request_id: str) -> HttpResponse | None:
        """The answer of the OPTIONS mock SAM adds to every resource of an Api with `Cors`: its
        static headers, whatever the request says (API Gateway does not look at it). None when
        no resource matches or the resource has an OPTIONS route of its own."""
        cors = self.api.cors
        assert cors is not None
        resources: dict[str, tuple[tuple[int, ...], set[str]]] = {}
        for route in self.api.routes:
            found = _match_resource(route.event.path, path)
            if found is not None:
                resources.setdefault(route.event.path, (found[0], set()))[1].add(
                    route.event.method)
        if not resources:
            return None
        _, methods = min(resources.values(), key=lambda entry: entry[0])
        if "OPTIONS" in methods:
            return None
        if cors.authorized:  # the default authorizer on the preflight: browsers send no token
            return self._gateway_response(UNAUTHORIZED, request_id, "Unauthorized")
        allowed = cors.allow_methods or ",".join(
            sorted(set(_ALL_METHODS) if "ANY" in methods else {*methods, "OPTIONS"}))
        headers = [("Content-Type", "application/json"),
                   ("Access-Control-Allow-Origin", cors.allow_origin),
                   ("Access-Control-Allow-Methods", allowed)]
        if cors.allow_headers is not None:
            headers.append(("Access-Control-Allow-Headers", cors.allow_headers))
        if cors.max_age is not None:
            headers.append(("Access-Control-Max-Age", cors.max_age))
        if cors.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        headers.append(("x-amzn-RequestId", request_id))
        return HttpResponse(200, headers, b"")

    def _proxy_event(self, match: _Match, request: _Request) -> dict[str, Any]:
        method, path, headers, body = request.method, request.path, request.headers, request.body
        source_ip, request_id = request.source_ip, request.request_id
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        for name, value in (("X-Forwarded-For", source_ip), ("X-Forwarded-Proto", "http"),
                            ("X-Forwarded-Port", str(self.port))):
            single.setdefault(name, value)
            multi.setdefault(name, [value])
        pairs = parse_qsl(request.query, keep_blank_values=True)
        query_multi: dict[str, list[str]] = {}
        for name, value in pairs:
            query_multi.setdefault(name, []).append(value)
        content_type = self._header(headers, "content-type") or ""
        binary = self._is_binary(content_type)
        now = self.clock()
        return {
            "resource": match.route.event.path,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": dict(pairs) or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": match.path_parameters or None,
            "stageVariables": None,
            "body": (base64.b64encode(body).decode() if binary else
                     body.decode("utf-8", errors="replace")) if body else None,
            "isBase64Encoded": bool(body) and binary,
            "requestContext": {
                "accountId": self.account_id,
                "apiId": self.api.id,
                "resourceId": "local",
                "resourcePath": match.route.event.path,
                "httpMethod": method,
                "path": f"/{self.api.stage}{path}",
                "stage": self.api.stage,
                "protocol": "HTTP/1.1",
                "requestId": request_id,
                "extendedRequestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "domainName": self._header(headers, "host") or f"{HOST}:{self.port}",
                "domainPrefix": HOST,
                "identity": {
                    "sourceIp": source_ip,
                    "userAgent": self._header(headers, "user-agent"),
                    "accessKey": None, "accountId": None, "apiKey": None, "caller": None,
                    "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None, "cognitoIdentityPoolId": None,
                    "principalOrgId": None, "user": None, "userArn": None,
                },
            },
        }

    # -------------------------------------------------------------- authorizer

    def _authorize(self, authorizer: Authorizer, event: dict[str, Any], method: str,
                   path: str) -> dict[str, Any]:
        started = time.monotonic()
        identity: list[str] = []
        for name in authorizer.identity_headers:
            value = self._header(list((event["headers"] or {}).items()), name.lower())
            if not value:
                raise _Denied(UNAUTHORIZED, "Unauthorized")
            identity.append(value)
        for name in authorizer.identity_query_strings:
            value = (event["queryStringParameters"] or {}).get(name)
            if not value:
                raise _Denied(UNAUTHORIZED, "Unauthorized")
            identity.append(value)
        method_arn = (f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api.id}/"
                      f"{self.api.stage}/{method}{path}")
        key = (authorizer.name, tuple(identity))
        with self._cache_lock:
            decision = self._cache.get(key)
        if decision is None or decision.expires < time.monotonic():
            decision = self._call_authorizer(authorizer, event, method_arn)
            if authorizer.reauthorize_every > 0:
                with self._cache_lock:
                    self._cache[key] = decision
        if not _policy_allows(decision.statements, method_arn):
            raise _Denied(ACCESS_DENIED, "User is not authorized to access this resource")
        return {"principalId": decision.principal_id,
                "integrationLatency": int((time.monotonic() - started) * 1000),
                **decision.context}

    def _call_authorizer(self, authorizer: Authorizer, event: dict[str, Any],
                         method_arn: str) -> _Decision:
        if authorizer.payload_type == "TOKEN":
            header = authorizer.identity_headers[0].lower()
            request: dict[str, Any] = {
                "type": "TOKEN", "methodArn": method_arn,
                "authorizationToken": self._header(list((event["headers"] or {}).items()),
                                                   header)}
        else:
            request = {"type": "REQUEST", "methodArn": method_arn,
                       **{k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")}}
        lambda_id = self.runtime.logical_id_for(authorizer.function_arn)
        invocation = self.runtime.run(lambda_id, request)
        if invocation.errored:
            if str(invocation.error) == "Unauthorized":
                raise _Denied(UNAUTHORIZED, "Unauthorized")
            LOG.warning("Authorizer %s failed: %s", authorizer.name, invocation.error)
            raise _Denied(AUTHORIZER_CONFIGURATION_ERROR, str(invocation.error))
        result = invocation.result
        try:
            document = result["policyDocument"]
            statements = _as_list(document["Statement"])
            context = {str(k): _context_value(v) for k, v in (result.get("context") or {}).items()}
            principal_id = str(result["principalId"])
        except (TypeError, KeyError, ValueError) as exc:
            LOG.warning("Authorizer %s answered no valid policy: %s", authorizer.name, exc)
            raise _Denied(AUTHORIZER_CONFIGURATION_ERROR, "Invalid authorizer response") from None
        return _Decision(principal_id, context, statements,
                         time.monotonic() + authorizer.reauthorize_every)

    # -------------------------------------------------------------- responses

    @staticmethod
    def _header(headers: list[tuple[str, str]], name: str) -> str | None:
        for key, value in reversed(headers):
            if key.lower() == name:
                return value
        return None

    def _is_binary(self, media_type: str) -> bool:
        media_type = media_type.split(";", maxsplit=1)[0].strip().lower()
        return bool(media_type) and any(fnmatch.fnmatchcase(media_type, pattern.lower())
                                        for pattern in self.api.binary_media_types)

    def _proxy_response(self, result: Any, request_headers: list[tuple[str, str]],
                        request_id: str) -> HttpResponse:
        if not isinstance(result, dict):
            raise TypeError("the proxy response must be an object")
        status = int(result["statusCode"])
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        multi = {str(k): [str(v) for v in values]
                 for k, values in (result.get("multiValueHeaders") or {}).items()}
        out = [(k, v) for k, v in headers.items() if k not in multi]
        out += [(k, v) for k, values in multi.items() for v in values]
        body = result.get("body")
        if body is not None and not isinstance(body, str):
            raise TypeError("the proxy response body must be a string")
        raw = (body or "").encode()
        if result.get("isBase64Encoded") and body:
            accept = (self._header(request_headers, "accept") or "").split(",")[0]
            if self._is_binary(accept):
                raw = base64.b64decode(body)
            else:
                LOG.warning("Binary response sent as base64 text: the first Accept type %r is "
                            "not in the API's BinaryMediaTypes %s (as on AWS)", accept,
                            list(self.api.binary_media_types))
        out.append(("x-amzn-RequestId", request_id))
        return HttpResponse(status, out, raw)

    def _gateway_response(self, kind: GatewayResponseType, request_id: str,
                          message: str) -> HttpResponse:
        custom = (self.api.gateway_responses.get(kind.name)
                  or self.api.gateway_responses.get(kind.family))
        status = kind.status
        body = kind.body
        headers = [("Content-Type", "application/json")]
        if custom is not None:
            status = custom.status_code or status
            if custom.templates:
                body = custom.templates.get("application/json") \
                    or next(iter(custom.templates.values()))
            headers += list(custom.headers.items())
        body = (body.replace("$context.error.messageString", json.dumps(message or kind.name))
                .replace("$context.error.message", message or kind.name)
                .replace("$context.error.responseType", kind.name)
                .replace("$context.requestId", request_id))
        headers.append(("x-amzn-RequestId", request_id))
        if kind.error_type:
            headers.append(("x-amzn-ErrorType", kind.error_type))
        return HttpResponse(status, headers, body.encode())


class _RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.0: one request per connection, so stopping never waits on an idle keep-alive."""

    gateway: RestGateway

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = self.gateway.handle(self.command, self.path, list(self.headers.items()), body,
                                       self.client_address[0])
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        self.send_response(response.status, phrase)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        LOG.info("%s - %s", self.address_string(), format % args)
