"""template.yaml read the way CloudFormation and SAM would, for the local stack.

The local stack creates nothing from its own configuration: every table, bucket, function,
route and state machine comes from here, so the template and the emulator cannot drift. This
module only *reads*: it merges SAM Globals, resolves intrinsics (`Ref`, `Fn::GetAtt`, `Fn::Sub`,
`Fn::Join`, `Fn::If`...) against local physical names and ARNs, applies dynamic references
(`{{resolve:secretsmanager:...}}`) through a callback, and returns typed views of what the stack
needs. Anything it does not understand raises `TemplateError` instead of guessing.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cfnlint.decode

__all__ = [
    "ApiEvent",
    "Authorizer",
    "Bucket",
    "Cors",
    "Function",
    "GatewayResponse",
    "KmsKey",
    "RestApi",
    "Route",
    "Secret",
    "StateMachine",
    "Table",
    "Template",
    "TemplateError",
    "WebSocketApi",
    "WebSocketAuthorizer",
    "WebSocketRoute",
]

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DEFAULT_STACK_NAME = "dataport-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account

# SAM Globals sections and the resource type each one applies to.
_GLOBALS_TARGETS = {
    "Function": "AWS::Serverless::Function",
    "Api": "AWS::Serverless::Api",
    "HttpApi": "AWS::Serverless::HttpApi",
    "StateMachine": "AWS::Serverless::StateMachine",
    "LayerVersion": "AWS::Serverless::LayerVersion",
    "SimpleTable": "AWS::Serverless::SimpleTable",
}
_FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
# Property holding an explicit physical name, per type (CloudFormation generates one otherwise).
_NAME_PROPERTIES = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SQS::Queue": "QueueName",
}
# SAM's implicit REST API, created when an Api event names no RestApiId.
IMPLICIT_REST_API = "ServerlessRestApi"

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_SUB_LITERAL = re.compile(r"\$\{!([^}]*)\}")
_DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:([^{}]+)\}\}")
#: API Gateway's Lambda integration / authorizer URI around a function ARN
_LAMBDA_URI = re.compile(r":apigateway:[^:]*:lambda:path/2015-03-31/functions/(.+)/invocations$")
_ROUTE_SELECTION = re.compile(r"^\$request\.body\.([A-Za-z0-9_.]+)$")


_RATE = re.compile(r"rate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class TemplateError(ValueError):
    """The template uses something the local stack cannot resolve (it would not guess)."""


class _NoValue:
    """`AWS::NoValue`: the property disappears."""


_NO_VALUE = _NoValue()


# ------------------------------------------------------------------------------------ views


@dataclass(frozen=True)
class ApiEvent:
    """One `Type: Api` event of a function: a REST route."""

    name: str
    api: str  # logical id of the REST API
    path: str  # "/exports/{jobId}"
    method: str  # upper case; "ANY" matches every method
    authorizer: str | None  # event-level Auth.Authorizer ("NONE" opts out); None: API default


@dataclass(frozen=True)
class ScheduleEvent:
    """One `Type: Schedule` event of a function: an EventBridge rule `rate(<n> <unit>)`."""

    name: str
    every_s: int  # the rate in seconds
    enabled: bool


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str  # "handler.lambda_handler"
    runtime: str
    timeout_s: int
    memory_mb: int
    environment: Mapping[str, str]
    layer_dirs: tuple[Path, ...]  # what Lambda puts on sys.path from /opt/python
    policy_statements: tuple[Mapping[str, Any], ...]  # inline `Policies` statements, resolved
    api_events: tuple[ApiEvent, ...]
    schedule_events: tuple[ScheduleEvent, ...] = ()

    @property
    def module_path(self) -> Path:
        """The file holding the handler ("a.b.fn" -> <CodeUri>/a/b.py)."""
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir.joinpath(*module.split(".")).with_suffix(".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class Table:
    logical_id: str
    name: str
    arn: str
    properties: Mapping[str, Any]

    @property
    def ttl_attribute(self) -> str | None:
        spec = self.properties.get("TimeToLiveSpecification") or {}
        return str(spec["AttributeName"]) if spec.get("Enabled") else None


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    name: str
    arn: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Secret:
    logical_id: str
    name: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class KmsKey:
    logical_id: str
    properties: Mapping[str, Any]  # KeyPolicy resolved


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    name: str
    arn: str
    type: str  # STANDARD | EXPRESS
    definition: str  # ASL JSON with DefinitionSubstitutions applied


@dataclass(frozen=True)
class Authorizer:
    name: str
    function_arn: str
    payload_type: str  # REQUEST | TOKEN
    identity_headers: tuple[str, ...]
    identity_query_strings: tuple[str, ...]
    reauthorize_every: int  # seconds the answer is cached per identity; 0: no cache


@dataclass(frozen=True)
class GatewayResponse:
    status_code: int | None
    templates: Mapping[str, str]  # content type -> body
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Cors:
    """An Api's `Cors`: what API Gateway's OPTIONS method (a mock SAM adds to every path) answers,
    without the authorizer unless AddDefaultAuthorizerToCorsPreflight says otherwise."""

    allow_origin: str
    allow_headers: str | None
    allow_methods: str | None  # None: the path's own methods and OPTIONS
    max_age: str | None
    allow_credentials: bool
    authorized: bool  # AddDefaultAuthorizerToCorsPreflight


@dataclass(frozen=True)
class Route:
    function: str  # logical id
    event: ApiEvent


@dataclass(frozen=True)
class RestApi:
    logical_id: str
    id: str
    stage: str
    default_authorizer: str | None
    authorizers: Mapping[str, Authorizer]
    gateway_responses: Mapping[str, GatewayResponse]
    binary_media_types: tuple[str, ...]
    routes: tuple[Route, ...] = field(default=())
    cors: Cors | None = None

    def authorizer_for(self, event: ApiEvent) -> Authorizer | None:
        name = event.authorizer or self.default_authorizer
        if name is None or name == "NONE":
            return None
        try:
            return self.authorizers[name]
        except KeyError:
            raise TemplateError(f"Api event {event.name} names unknown authorizer {name}") from None


@dataclass(frozen=True)
class WebSocketAuthorizer:
    """A REQUEST Lambda authorizer of a WebSocket API (only $connect can have one)."""

    name: str
    function: str  # logical id
    identity_sources: tuple[str, ...]  # "route.request.querystring.token", ...header.X


@dataclass(frozen=True)
class WebSocketRoute:
    key: str  # "$connect", "$disconnect", "$default" or a value of the selection expression
    function: str  # logical id behind the route's AWS_PROXY integration
    authorizer: WebSocketAuthorizer | None


@dataclass(frozen=True)
class WebSocketApi:
    logical_id: str
    id: str
    stage: str
    selection_path: tuple[str, ...]  # $request.body.action -> ("action",)
    routes: Mapping[str, WebSocketRoute]


# ------------------------------------------------------------------------------------ helpers


def _plain(node: Any) -> Any:
    """cfn-lint's decoded nodes as plain dicts, lists and scalars (they carry line marks)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)


def _is_intrinsic(value: Any) -> bool:
    return (isinstance(value, dict) and len(value) == 1
            and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::")
                 or next(iter(value)) == "Condition"))


def _merge_globals(globals_: Any, own: Any) -> Any:
    """SAM's rule: maps merge (the resource wins per key), lists add up (Globals first), and
    scalars or intrinsics of the resource replace the global value."""
    if isinstance(globals_, dict) and isinstance(own, dict) \
            and not _is_intrinsic(globals_) and not _is_intrinsic(own):
        merged = dict(globals_)
        for key, value in own.items():
            merged[key] = _merge_globals(globals_[key], value) if key in globals_ else value
        return merged
    if isinstance(globals_, list) and isinstance(own, list):
        return [*globals_, *own]
    return own


def _as_str(value: Any) -> str:
    """A resolved scalar as CloudFormation renders it in strings (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"Expected a scalar, got {value!r}")


# ------------------------------------------------------------------------------------ template


class Template:
    """One parsed template plus the local stack's naming of its resources.

    `dynamic_reference` receives the inside of `{{resolve:...}}` (e.g.
    `secretsmanager:dataport/mongodb-uri`) and returns its value; without it such references
    stay as written. `bind()` records physical ids known only after creation (a secret's ARN).
    """

    def __init__(
        self,
        path: Path = DEFAULT_TEMPLATE,
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        parameters: Mapping[str, str] | None = None,
        dynamic_reference: Callable[[str], str] | None = None,
    ) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        decoded, matches = cfnlint.decode.decode(str(self.path))
        if decoded is None:
            raise TemplateError(f"{self.path}: {'; '.join(str(m) for m in matches)}")
        self.raw: dict[str, Any] = _plain(decoded)
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.dynamic_reference = dynamic_reference
        self._bound: dict[str, str] = {}
        self._dynamic_values: dict[str, str] = {}  # resolved once, as at deploy time
        self.parameters = self._parameter_values(parameters or {})

    # -------------------------------------------------------------- raw access

    def _parameter_values(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in (self.raw.get("Parameters") or {}).items():
            if name in overrides:
                value: Any = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise TemplateError(f"Parameter {name} has no default: pass a value")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [item.strip() for item in value.split(",")]
            elif not isinstance(value, list):
                value = _as_str(value)  # Ref of a Number parameter is a string, as on AWS
            allowed = spec.get("AllowedValues")
            if allowed and value not in [_as_str(a) for a in allowed]:
                raise TemplateError(f"Parameter {name}={value!r} is not one of {allowed}")
            values[name] = value
        unknown = set(overrides) - set(values)
        if unknown:
            raise TemplateError(f"Unknown parameters: {sorted(unknown)}")
        return values

    @property
    def resources_raw(self) -> dict[str, dict[str, Any]]:
        return self.raw.get("Resources") or {}

    def resource_type(self, logical_id: str) -> str:
        try:
            return str(self.resources_raw[logical_id]["Type"])
        except KeyError:
            if logical_id == IMPLICIT_REST_API and self._uses_implicit_api:
                return "AWS::Serverless::Api"
            raise TemplateError(f"No resource {logical_id} in {self.path.name}") from None

    def resources(self, *types: str) -> list[str]:
        """Logical ids of the resources of these types whose Condition holds, in template order."""
        return [lid for lid, res in self.resources_raw.items()
                if res.get("Type") in types and self._resource_enabled(res)]

    def _resource_enabled(self, resource: Mapping[str, Any]) -> bool:
        condition = resource.get("Condition")
        return condition is None or self.condition(str(condition))

    def bind(self, logical_id: str, physical_id: str) -> None:
        """Record what `Ref` returns for a resource whose id only exists once it is created."""
        self._bound[logical_id] = physical_id

    def properties_raw(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties with SAM Globals merged in, intrinsics unresolved."""
        if logical_id == IMPLICIT_REST_API and logical_id not in self.resources_raw:
            own: dict[str, Any] = {"StageName": "Prod"}
        else:
            own = dict(self.resources_raw[logical_id].get("Properties") or {})
        rtype = self.resource_type(logical_id)
        for section, target in _GLOBALS_TARGETS.items():
            if target == rtype:
                globals_ = (self.raw.get("Globals") or {}).get(section)
                if globals_:
                    own = _merge_globals(globals_, own)
        return own

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's properties, Globals merged, every intrinsic resolved."""
        resolved = self.resolve(self.properties_raw(logical_id))
        assert isinstance(resolved, dict)
        return resolved

    # -------------------------------------------------------------- naming

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region, account = (self.region, self.account_id) if regional else ("", "")
        return f"arn:aws:{service}:{region}:{account}:{resource}"

    def physical_name(self, logical_id: str) -> str:
        """The explicit name property, else a stable local stand-in for the generated name."""
        rtype = self.resource_type(logical_id)
        prop = _NAME_PROPERTIES.get(rtype)
        if prop and logical_id in self.resources_raw:
            explicit = (self.resources_raw[logical_id].get("Properties") or {}).get(prop)
            if explicit is not None:
                return _as_str(self.resolve(explicit))
        if rtype in ("AWS::Serverless::Api", "AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"):
            return logical_id.lower()  # an API id, as in https://<id>.execute-api...
        name = f"{self.stack_name}-{logical_id}"
        return name.lower() if rtype == "AWS::S3::Bucket" else name

    def ref(self, logical_id: str) -> Any:
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        pseudo = self._pseudo(logical_id)
        if pseudo is not None:
            return pseudo
        if logical_id in self._bound:
            return self._bound[logical_id]
        rtype = self.resource_type(logical_id)
        if rtype in _STATE_MACHINE_TYPES:
            return self.get_att(logical_id, "Arn")
        if rtype == "AWS::SecretsManager::Secret":
            # The ARN ends in 6 random characters chosen at creation; until the stack binds the
            # real one, the IAM pattern that matches it (what a policy check needs).
            return self.arn("secretsmanager", f"secret:{self.physical_name(logical_id)}-??????")
        if rtype == "AWS::Serverless::LayerVersion":
            return self.arn("lambda", f"layer:{self.physical_name(logical_id)}:1")
        if rtype == "AWS::KMS::Key":
            # A key id is a UUID chosen at creation; until bound, the IAM pattern matching one.
            return "????????-????-????-????-????????????"
        return self.physical_name(logical_id)

    def _pseudo(self, name: str) -> Any:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": self.arn("cloudformation", f"stack/{self.stack_name}/local"),
            "AWS::NoValue": _NO_VALUE,
            "AWS::NotificationARNs": [],
        }.get(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        rtype = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        arns: dict[str, Callable[[], str]] = {
            "AWS::Serverless::Function": lambda: self.arn("lambda", f"function:{name}"),
            "AWS::Lambda::Function": lambda: self.arn("lambda", f"function:{name}"),
            "AWS::DynamoDB::Table": lambda: self.arn("dynamodb", f"table/{name}"),
            "AWS::S3::Bucket": lambda: self.arn("s3", name, regional=False),
            "AWS::Serverless::StateMachine": lambda: self.arn("states", f"stateMachine:{name}"),
            "AWS::StepFunctions::StateMachine": lambda: self.arn("states", f"stateMachine:{name}"),
            "AWS::IAM::Role": lambda: f"arn:aws:iam::{self.account_id}:role/{name}",
            "AWS::KMS::Key": lambda: self.arn("kms", f"key/{self.ref(logical_id)}"),
            # As CloudFormation's GetAtt gives it (with ":*"). Log groups, like the access log
            # settings that name them, are only read here: nothing local writes CloudWatch Logs.
            "AWS::Logs::LogGroup": lambda: self.arn("logs", f"log-group:{name}:*"),
            # named only (the functions' OnFailure destination): nothing is invoked
            # asynchronously on the local stack, so the queue is not created
            "AWS::SQS::Queue": lambda: self.arn("sqs", name),
        }
        if attribute == "Arn" and rtype in arns:
            return arns[rtype]()
        if attribute == "Name" and rtype in _STATE_MACHINE_TYPES:
            return name
        if attribute == "QueueName" and rtype == "AWS::SQS::Queue":
            return name
        if attribute == "StreamArn" and rtype == "AWS::DynamoDB::Table":
            return f"{arns[rtype]()}/stream/local"
        if attribute in ("DomainName", "RegionalDomainName") and rtype == "AWS::S3::Bucket":
            return f"{name}.s3.{self.region}.amazonaws.com"
        if attribute in ("ApiId", "RootResourceId") and "Api" in rtype:
            return name
        if attribute == "ApiEndpoint" and rtype == "AWS::ApiGatewayV2::Api":
            return f"wss://{name}.execute-api.{self.region}.amazonaws.com"
        raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} ({rtype}) is not emulated")

    # -------------------------------------------------------------- intrinsics

    def condition(self, name: str) -> bool:
        try:
            spec = (self.raw.get("Conditions") or {})[name]
        except KeyError:
            raise TemplateError(f"Unknown condition {name}") from None
        return bool(self.resolve(spec))

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic and dynamic reference in `value` (a copy is returned)."""
        if isinstance(value, dict):
            if len(value) == 1:
                key, arg = next(iter(value.items()))
                if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                    return self._intrinsic(key, arg)
            out: dict[str, Any] = {}
            for key, item in value.items():
                resolved = self.resolve(item)
                if resolved is not _NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not _NO_VALUE]
        if isinstance(value, str):
            return self._dynamic(value)
        return value

    def _dynamic(self, text: str) -> str:
        if self.dynamic_reference is None or "{{resolve:" not in text:
            return text
        resolver, cache = self.dynamic_reference, self._dynamic_values

        def resolve(match: re.Match[str]) -> str:
            reference = match.group(1)
            if reference not in cache:
                cache[reference] = resolver(reference)
            return cache[reference]

        return _DYNAMIC_REFERENCE.sub(resolve, text)

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Condition":
            return self.condition(str(arg))
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else [self.resolve(a) for a in arg]
            return self.get_att(str(parts[0]), str(parts[1]))
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(_as_str(v) for v in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if key == "Fn::Split":
            sep, text = self.resolve(arg)
            return str(text).split(str(sep))
        if key == "Fn::If":
            name, then, otherwise = arg
            return self.resolve(then if self.condition(str(name)) else otherwise)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return _as_str(left) == _as_str(right)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if key == "Fn::FindInMap":
            mapping, top, second = (_as_str(v) for v in self.resolve(arg))
            return self.raw["Mappings"][mapping][top][second]
        if key == "Fn::Base64":
            return base64.b64encode(_as_str(self.resolve(arg)).encode()).decode()
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise TemplateError(f"{key} is not emulated by the local stack")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return _as_str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return _as_str(self.ref(name))

        substituted = _SUB_VARIABLE.sub(replace, str(text))
        return self._dynamic(_SUB_LITERAL.sub(r"${\1}", substituted))

    # -------------------------------------------------------------- typed views

    def functions(self) -> dict[str, Function]:
        return {lid: self.function(lid) for lid in self.resources(*_FUNCTION_TYPES)}

    def environment(self) -> dict[str, str]:
        """Every function's environment variables in one map, as the local stack's one process
        holds them (and tests set them): a name two functions set differently is refused."""
        merged: dict[str, str] = {}
        for function in self.functions().values():
            for name, value in function.environment.items():
                if merged.setdefault(name, value) != value:
                    raise TemplateError(
                        f"{function.logical_id} sets {name}={value!r} but another function sets "
                        f"{merged[name]!r}: in one process both cannot hold")
        return merged

    def function(self, logical_id: str) -> Function:
        raw = self.properties_raw(logical_id)
        props = self.properties(logical_id)
        sam = self.resource_type(logical_id) == "AWS::Serverless::Function"
        code_uri = props.get("CodeUri") if sam else None
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: only a local CodeUri directory can run locally")
        variables = (props.get("Environment") or {}).get("Variables") or {}
        statements: list[Mapping[str, Any]] = []
        for policy in props.get("Policies") or []:
            if isinstance(policy, dict) and "Statement" in policy:
                statements.extend(policy["Statement"])
        return Function(
            logical_id=logical_id,
            name=self.physical_name(logical_id),
            arn=self.get_att(logical_id, "Arn"),
            code_dir=(self.root / code_uri).resolve(),
            handler=str(props["Handler"]),
            runtime=str(props.get("Runtime", "")),
            timeout_s=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            environment={str(k): _as_str(v) for k, v in variables.items()},
            layer_dirs=tuple(self._layer_dir(layer) for layer in raw.get("Layers") or []),
            policy_statements=tuple(statements),
            api_events=tuple(self._api_events(logical_id, raw)),
            schedule_events=tuple(self._schedule_events(logical_id, raw)),
        )

    def _layer_dir(self, layer: Any) -> Path:
        if not (isinstance(layer, dict) and set(layer) == {"Ref"}):
            raise TemplateError(f"Only layers of this template can run locally, not {layer!r}")
        content = self.properties(str(layer["Ref"])).get("ContentUri")
        if not isinstance(content, str):
            raise TemplateError(f"Layer {layer['Ref']} has no local ContentUri")
        return (self.root / content).resolve()

    def _api_events(self, logical_id: str, raw: Mapping[str, Any]) -> Iterator[ApiEvent]:
        for name, event in (raw.get("Events") or {}).items():
            if event.get("Type") != "Api":
                continue
            props = event.get("Properties") or {}
            api_ref = props.get("RestApiId")
            if api_ref is None:
                api = IMPLICIT_REST_API
            elif isinstance(api_ref, dict) and set(api_ref) == {"Ref"}:
                api = str(api_ref["Ref"])
            else:
                raise TemplateError(f"{logical_id}.{name}: RestApiId must be a Ref")
            auth = self.resolve(props.get("Auth") or {})
            yield ApiEvent(
                name=name,
                api=api,
                path=str(self.resolve(props["Path"])),
                method=str(self.resolve(props["Method"])).upper(),
                authorizer=auth.get("Authorizer"),
            )

    def _schedule_events(self, logical_id: str, raw: Mapping[str, Any],
                         ) -> Iterator[ScheduleEvent]:
        for name, event in (raw.get("Events") or {}).items():
            if event.get("Type") != "Schedule":
                continue
            props = self.resolve(event.get("Properties") or {})
            expression = str(props.get("Schedule", ""))
            rate = _RATE.fullmatch(expression)
            if rate is None:
                raise TemplateError(f"{logical_id}.{name}: only rate(<n> <unit>) schedules run "
                                    f"locally, not {expression!r}")
            unit = rate["unit"].rstrip("s")
            yield ScheduleEvent(name=name, every_s=int(rate["value"]) * _RATE_UNITS[unit],
                                enabled=props.get("Enabled", True) is not False
                                and props.get("State", "ENABLED") == "ENABLED")

    @cached_property
    def _uses_implicit_api(self) -> bool:
        return any(
            event.get("Type") == "Api" and "RestApiId" not in (event.get("Properties") or {})
            for lid in self.resources(*_FUNCTION_TYPES)
            for event in (self.resources_raw[lid].get("Properties", {}).get("Events") or {})
            .values()
        )

    def function_for_arn(self, arn: str) -> str:
        """The logical id of the function with this ARN (or name)."""
        for lid in self.resources(*_FUNCTION_TYPES):
            if arn in (self.get_att(lid, "Arn"), self.physical_name(lid)):
                return lid
        raise TemplateError(f"No function of this template has ARN {arn}")

    def tables(self) -> dict[str, Table]:
        return {
            lid: Table(lid, self.physical_name(lid), self.get_att(lid, "Arn"), self.properties(lid))
            for lid in self.resources("AWS::DynamoDB::Table")
        }

    def buckets(self) -> dict[str, Bucket]:
        return {
            lid: Bucket(lid, self.physical_name(lid), self.get_att(lid, "Arn"),
                        self.properties(lid))
            for lid in self.resources("AWS::S3::Bucket")
        }

    def secrets(self) -> dict[str, Secret]:
        return {
            lid: Secret(lid, self.physical_name(lid), self.properties(lid))
            for lid in self.resources("AWS::SecretsManager::Secret")
        }

    def kms_keys(self) -> dict[str, KmsKey]:
        return {lid: KmsKey(lid, self.properties(lid)) for lid in self.resources("AWS::KMS::Key")}

    def state_machines(self) -> dict[str, StateMachine]:
        return {lid: self.state_machine(lid) for lid in self.resources(*_STATE_MACHINE_TYPES)}

    def state_machine(self, logical_id: str) -> StateMachine:
        props = self.properties(logical_id)
        if "DefinitionUri" in props:
            if not isinstance(props["DefinitionUri"], str):
                raise TemplateError(f"{logical_id}: only a local DefinitionUri file is emulated")
            text = (self.root / props["DefinitionUri"]).read_text()
        elif "Definition" in props:
            text = json.dumps(props["Definition"])
        elif "DefinitionString" in props:
            text = str(props["DefinitionString"])
        else:
            raise TemplateError(f"{logical_id} has no definition")
        substitutions = props.get("DefinitionSubstitutions") or {}
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", _as_str(value))
        leftover = re.findall(r"\$\{(\w+)\}", text)
        if leftover:
            raise TemplateError(f"{logical_id}: no DefinitionSubstitutions for {leftover}")
        json.loads(text)  # a broken definition fails here, with its line, not at run time
        return StateMachine(
            logical_id=logical_id,
            name=self.physical_name(logical_id),
            arn=self.get_att(logical_id, "Arn"),
            type=str(props.get("Type", props.get("StateMachineType", "STANDARD"))),
            definition=text,
        )

    def rest_apis(self) -> dict[str, RestApi]:
        """Every REST API (SAM's implicit one too) with the routes its functions declare."""
        routes: dict[str, list[Route]] = {}
        for function in self.functions().values():
            for event in function.api_events:
                routes.setdefault(event.api, []).append(Route(function.logical_id, event))
        ids = self.resources("AWS::Serverless::Api")
        if IMPLICIT_REST_API in routes and IMPLICIT_REST_API not in ids:
            ids.append(IMPLICIT_REST_API)
        return {lid: self._rest_api(lid, tuple(routes.get(lid, ()))) for lid in ids}

    def websocket_apis(self) -> dict[str, WebSocketApi]:
        """Every WebSocket API with its stage and routes (route -> integration -> function)."""
        return {lid: self._websocket_api(lid) for lid in self.resources("AWS::ApiGatewayV2::Api")
                if self.properties(lid).get("ProtocolType") == "WEBSOCKET"}

    def _children(self, api: str, rtype: str) -> list[str]:
        return [lid for lid in self.resources(rtype)
                if self.properties_raw(lid).get("ApiId") == {"Ref": api}]

    def _lambda_uri(self, logical_id: str, uri: Any) -> str:
        match = _LAMBDA_URI.search(str(uri))
        if match is None:
            raise TemplateError(f"{logical_id}: only Lambda integrations are emulated, not {uri}")
        return self.function_for_arn(match.group(1))

    def _websocket_api(self, logical_id: str) -> WebSocketApi:
        selection = _ROUTE_SELECTION.match(
            str(self.properties(logical_id).get("RouteSelectionExpression", "")))
        if selection is None:
            raise TemplateError(f"{logical_id}: only $request.body.<field> route selection is "
                                "emulated")
        stages = self._children(logical_id, "AWS::ApiGatewayV2::Stage")
        if len(stages) != 1:
            raise TemplateError(f"{logical_id} has {len(stages)} stages; the local stack "
                                "serves exactly one")
        integrations: dict[str, str] = {}
        for lid in self._children(logical_id, "AWS::ApiGatewayV2::Integration"):
            props = self.properties(lid)
            if props.get("IntegrationType") != "AWS_PROXY":
                raise TemplateError(f"{lid}: only AWS_PROXY integrations are emulated")
            integrations[str(self.ref(lid))] = self._lambda_uri(lid, props.get("IntegrationUri"))
        authorizers: dict[str, WebSocketAuthorizer] = {}
        for lid in self._children(logical_id, "AWS::ApiGatewayV2::Authorizer"):
            props = self.properties(lid)
            if props.get("AuthorizerType") != "REQUEST":
                raise TemplateError(f"{lid}: only REQUEST authorizers are emulated")
            authorizers[str(self.ref(lid))] = WebSocketAuthorizer(
                name=str(props.get("Name", lid)),
                function=self._lambda_uri(lid, props.get("AuthorizerUri")),
                identity_sources=tuple(str(s) for s in props.get("IdentitySource") or []))
        routes: dict[str, WebSocketRoute] = {}
        for lid in self._children(logical_id, "AWS::ApiGatewayV2::Route"):
            props = self.properties(lid)
            kind, _, target = str(props.get("Target", "")).partition("/")
            if kind != "integrations" or target not in integrations:
                raise TemplateError(f"{lid}: Target must name an integration of this API")
            authorization = str(props.get("AuthorizationType", "NONE"))
            if authorization not in ("NONE", "CUSTOM"):
                raise TemplateError(f"{lid}: AuthorizationType {authorization} is not emulated")
            authorizer = None
            if authorization == "CUSTOM":
                authorizer = authorizers.get(str(props.get("AuthorizerId")))
                if authorizer is None:
                    raise TemplateError(f"{lid}: AuthorizerId names no authorizer of this API")
            key = str(props["RouteKey"])
            routes[key] = WebSocketRoute(key, integrations[target], authorizer)
        return WebSocketApi(
            logical_id=logical_id,
            id=self.physical_name(logical_id),
            stage=str(self.properties(stages[0])["StageName"]),
            selection_path=tuple(selection.group(1).split(".")),
            routes=routes,
        )

    def _rest_api(self, logical_id: str, routes: tuple[Route, ...]) -> RestApi:
        props = self.properties(logical_id)
        auth = props.get("Auth") or {}
        authorizers = {
            name: Authorizer(
                name=name,
                function_arn=str(spec["FunctionArn"]),
                payload_type=str(spec.get("FunctionPayloadType", "TOKEN")).upper(),
                identity_headers=tuple((spec.get("Identity") or {}).get("Headers")
                                       or ([] if spec.get("FunctionPayloadType") == "REQUEST"
                                           else ["Authorization"])),
                identity_query_strings=tuple(
                    (spec.get("Identity") or {}).get("QueryStrings") or []),
                reauthorize_every=int((spec.get("Identity") or {}).get("ReauthorizeEvery", 300)),
            )
            for name, spec in (auth.get("Authorizers") or {}).items()
        }
        responses = {
            kind: GatewayResponse(
                status_code=int(spec["StatusCode"]) if "StatusCode" in spec else None,
                templates={str(k): str(v) for k, v in (spec.get("ResponseTemplates") or {})
                           .items()},
                headers={str(k): str(v).strip("'") for k, v in
                         ((spec.get("ResponseParameters") or {}).get("Headers") or {}).items()},
            )
            for kind, spec in (props.get("GatewayResponses") or {}).items()
        }
        return RestApi(
            logical_id=logical_id,
            id=self.physical_name(logical_id),
            stage=str(props.get("StageName", "Prod")),
            default_authorizer=auth.get("DefaultAuthorizer"),
            authorizers=authorizers,
            gateway_responses=responses,
            binary_media_types=tuple(str(t).replace("~1", "/")
                                     for t in props.get("BinaryMediaTypes") or []),
            routes=routes,
            cors=self._cors(props.get("Cors"), auth),
        )

    @staticmethod
    def _cors(spec: Any, auth: Mapping[str, Any]) -> Cors | None:
        """SAM's Cors: a string is the AllowOrigin; values are quoted header values ("'*'")."""
        if not spec:
            return None
        if isinstance(spec, str):
            spec = {"AllowOrigin": spec}
        spec = {"AllowOrigin": "'*'", **spec}  # SAM's default origin

        def unquoted(name: str) -> str | None:
            value = spec.get(name)
            return None if value is None else _as_str(value).strip("'")

        return Cors(allow_origin=unquoted("AllowOrigin") or "",
                    allow_headers=unquoted("AllowHeaders"),
                    allow_methods=unquoted("AllowMethods"),
                    max_age=unquoted("MaxAge"),
                    allow_credentials=bool(spec.get("AllowCredentials", False)),
                    authorized=bool(auth.get("AddDefaultAuthorizerToCorsPreflight", True))
                    and bool(auth.get("DefaultAuthorizer")))
