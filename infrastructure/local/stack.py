"""The Docker-free local stack: moto (S3, DynamoDB, Secrets Manager, KMS, Lambda, Step Functions
executing the real ASL) + in-process Lambda + REST gateway + WebSocket gateway (with its
@connections endpoint) + MongoDB, all built from template.yaml.

    with LocalStack() as stack:
        requests.post(f"{stack.rest_url}/exports", headers=stack.auth_headers(user_id), ...)
        stack.wait_for_execution(arn)

Everything binds to 127.0.0.1, and `stop()` leaves no server, thread or process behind. The
process environment is the Lambda environment: each function's resolved variables go into
os.environ (restored on stop), with AWS_ENDPOINT_URL pointing at moto, so production code runs
unchanged and presigned URLs point at the local S3.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any
from unittest import mock

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.utils import TMP_THREADS

from infrastructure import asl_lint
from infrastructure.local import mongo_server, sfn_fidelity
from infrastructure.local.clock import LocalClock
from infrastructure.local.lambda_runtime import Call, CallDetail, LambdaRuntime
from infrastructure.local.rest_gateway import RestGateway
from infrastructure.local.template import (
    DEFAULT_REGION,
    DEFAULT_STACK_NAME,
    DEFAULT_TEMPLATE,
    Bucket,
    Table,
    Template,
    TemplateError,
)
from infrastructure.local.ws_gateway import WebSocketGateway

__all__ = ["LocalStack", "LocalStackError"]

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: Template parameters that name a secret living outside the stack, and what the local stack
#: stores in it (on AWS someone puts the ClaudeLens URI there before deploying).
EXTERNAL_SECRETS = {"MongoDbUriSecretName": "mongo_uri"}
#: Loggers too chatty for tests and `make local` (every request, every ASL state).
_QUIET_LOGGERS = {"moto.stepfunctions.parser": logging.CRITICAL, "werkzeug": logging.ERROR}
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


class LocalStackError(RuntimeError):
    """The local stack could not be built or did not behave (message says what)."""


class _Environ:
    """os.environ changes that can be undone key by key (other fixtures may set keys too)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str | None) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "# runs in-process: infrastructure/local/lambda_runtime\n")
    return buffer.getvalue()


class LocalStack:
    """The whole service on 127.0.0.1, as template.yaml declares it.

    `mongodb_uri`: an existing MongoDB (else MONGODB_URI from the environment, else an embedded
    nx-27017; `with_mongo=False` for a template that needs none). Ports 0 pick free ones.
    `fast_retries` makes the state machines' Retry intervals instant; `enforce_timeouts` reports
    a run longer than its function's Timeout as `Sandbox.Timedout`. Stacks may nest (a test
    template's stack inside the session's): each creates and deletes only its own resources.
    """

    def __init__(
        self,
        template_path: Path = DEFAULT_TEMPLATE,
        *,
        mongodb_uri: str | None = None,
        mongo_data_dir: Path | None = None,
        with_mongo: bool = True,
        rest_port: int = 0,
        aws_port: int = 0,
        ws_port: int = 0,
        parameters: Mapping[str, str] | None = None,
        fast_retries: bool = True,
        enforce_timeouts: bool = True,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.template_path = Path(template_path)
        self._mongodb_uri = mongodb_uri
        self._mongo_data_dir = mongo_data_dir
        self._with_mongo = with_mongo
        self._rest_port = rest_port
        self._aws_port = aws_port
        self._ws_port = ws_port
        self._parameters = dict(parameters or {})
        self.fast_retries = fast_retries
        self.enforce_timeouts = enforce_timeouts
        self.stack_name = stack_name
        self.region = region

        self._environ = _Environ()
        self._cleanup = ExitStack()
        self._moto: ThreadedMotoServer | None = None
        self._mongo: mongo_server.MongoServer | None = None
        self._template: Template | None = None
        self._runtime: LambdaRuntime | None = None
        self._clock: LocalClock | None = None
        self._gateways: dict[str, RestGateway] = {}
        self._websockets: dict[str, WebSocketGateway] = {}
        self._secret_values: dict[str, str] = {}
        self._kms_keys: dict[str, str] = {}  # logical id -> key id
        self._exported: dict[str, str] = {}  # function environment put into os.environ
        self._session = boto3.session.Session()
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self.aws_endpoint = ""
        self.mongo_uri = ""

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LocalStack:
        """Start every part and create the template's resources; on failure, undo what started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        external_mongo = self._mongodb_uri or os.environ.get("MONGODB_URI")
        self._quiet_logs()
        self._start_moto()
        self._template = Template(
            self.template_path, stack_name=self.stack_name, region=self.region,
            account_id=self.client("sts").get_caller_identity()["Account"],
            parameters=self._parameters, dynamic_reference=self._dynamic_reference)
        if external_mongo:
            self.mongo_uri = external_mongo
        elif self._with_mongo:
            self._mongo = mongo_server.start(self._mongo_data_dir)
            self.mongo_uri = self._mongo.uri
        self._provision()
        self._runtime = LambdaRuntime(self._template.functions(),
                                      enforce_timeouts=self.enforce_timeouts)
        for function in self._runtime.functions.values():
            for layer in function.layer_dirs:  # what Lambda mounts on /opt/python
                if str(layer) not in sys.path:
                    sys.path.insert(0, str(layer))
        self._runtime.install()
        self._cleanup.callback(self._runtime.uninstall)
        self._clock = LocalClock(self._template.functions(), self._runtime.invoke, self.region,
                                 self._template.account_id, self.stack_name)
        self._cleanup.enter_context(mock.patch.object(Execution, "stop", _stop_execution))
        self._cleanup.enter_context(sfn_fidelity.patches())  # Distributed Map failures
        if self.fast_retries:
            # Retry IntervalSeconds/BackoffRate really sleep in moto's interpreter.
            no_sleep = SimpleNamespace(sleep=lambda _seconds: None)
            self._cleanup.enter_context(mock.patch.object(retrier_decl, "time", no_sleep))
        for index, (logical_id, api) in enumerate(self._template.rest_apis().items()):
            gateway = RestGateway(api, self._runtime, self.region, self._template.account_id,
                                  port=self._rest_port if index == 0 else 0,
                                  clock=self._clock.now)
            gateway.start()
            self._gateways[logical_id] = gateway
        self._start_websockets()

    def _start_websockets(self) -> None:
        """The WebSocket APIs, and AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI pointing the
        handlers' @connections client at the gateway (one process, one variable: one API)."""
        apis = self.template.websocket_apis()
        if len(apis) > 1:
            raise LocalStackError(f"{len(apis)} WebSocket APIs: the handlers' one "
                                  "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI can reach only one")
        for logical_id, api in apis.items():
            gateway = WebSocketGateway(api, self.runtime, self.region, self.template.account_id,
                                       port=self._ws_port)
            gateway.start()
            self._websockets[logical_id] = gateway
            self._environ.set("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", gateway.callback_url)
            self._forget_cached_clients()

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order, delete the resources it made
        (moto's backends are process-wide: another stack may share them) and restore the
        environment."""
        for gateway in self._gateways.values():
            gateway.stop()
        self._gateways.clear()
        for websocket in self._websockets.values():
            websocket.stop()
        self._websockets.clear()
        if self._moto is not None and self._template is not None:
            self._stop_executions()
            self._teardown()
        self._cleanup.close()  # runtime hooks, retry patch, moto config, log levels
        if self._moto is not None:
            server = self._moto._server  # stop() shuts the server down but never closes it
            self._moto.stop()
            if server is not None:
                server.server_close()
            self._moto = None
        if self._mongo is not None:
            self._mongo.stop()
            self._mongo = None
        self._environ.restore()
        self._exported.clear()
        self._clients.clear()
        self._forget_cached_clients()
        self._template = self._runtime = self._clock = None

    def reset(self) -> None:
        """Back to a freshly provisioned stack: running executions stopped, tables and bucket
        emptied (or everything created again if something wiped moto, e.g. a `mock_aws` test),
        recorded calls, timeout overrides and cached authorizer answers forgotten, WebSocket
        clients disconnected. MongoDB is left alone (its fixtures own it)."""
        self._stop_executions()
        if self._intact():
            self._empty_tables_and_buckets()
        else:
            LOG.info("Local resources are missing (moto was reset?): provisioning again")
            self._teardown()
            self._provision()
        self.runtime.reset()
        self.clock.release()
        self.forget_authorizer_answers()
        for websocket in self._websockets.values():
            websocket.reset()

    def forget_authorizer_answers(self) -> None:
        """As when the REST authorizer's cached answers lapse (ReauthorizeEvery)."""
        for gateway in self._gateways.values():
            gateway.clear_authorizer_cache()

    def _quiet_logs(self) -> None:
        for name, level in _QUIET_LOGGERS.items():
            logger = logging.getLogger(name)
            self._cleanup.callback(logger.setLevel, logger.level)
            logger.setLevel(level)

    def _start_moto(self) -> None:
        sfn_config = default_user_config["stepfunctions"]
        previous = sfn_config.get("execute_state_machine", False)
        sfn_config["execute_state_machine"] = True  # run the ASL, not just record executions
        self._cleanup.callback(sfn_config.__setitem__, "execute_state_machine", previous)
        if self._aws_port:
            _ensure_port_free(self._aws_port)
        self._moto = ThreadedMotoServer(HOST, self._aws_port, verbose=False)
        self._moto.start()
        port = self._moto.get_host_and_port()[1]
        self.aws_endpoint = f"http://{HOST}:{port}"
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
            self._environ.set(name, None)  # a per-service endpoint would win over ours
        for name, value in {
            "MOTO_PORT": str(port),  # or moto's interpreter calls Lambda on port 5000
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            # a bucket cannot be a host name under 127.0.0.1 (AWS: virtual-hosted, the default)
            "S3_ADDRESSING_STYLE": "path",
        }.items():
            self._environ.set(name, value)
        self._forget_cached_clients()

    def _forget_cached_clients(self) -> None:
        """Cached boto3 clients and settings hold endpoints and names of a previous stack."""
        if "dataport.aws" in sys.modules:
            sys.modules["dataport.aws"].reset_clients()
        if "dataport.settings" in sys.modules:
            sys.modules["dataport.settings"].get_settings.cache_clear()
            sys.modules["dataport.settings"].get_mongo_settings.cache_clear()
        if "aws_lambda_powertools.utilities.parameters" in sys.modules:
            sys.modules["aws_lambda_powertools.utilities.parameters"].clear_caches()

    def _stop_executions(self, timeout: float = 30.0) -> None:
        """Stop running executions and wait for moto's interpreter threads to end."""
        sfn = self.client("stepfunctions")
        for machine in self.template.state_machines().values():
            try:
                pages = sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=machine.arn, statusFilter="RUNNING")
                arns = [e["executionArn"] for page in pages for e in page["executions"]]
            except sfn.exceptions.StateMachineDoesNotExist:
                continue
            for arn in arns:
                sfn.stop_execution(executionArn=arn, cause="local stack stopping")
        deadline = time.monotonic() + timeout
        for thread in list(TMP_THREADS):
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                TMP_THREADS.remove(thread)
        if TMP_THREADS:
            LOG.warning("%d Step Functions threads still running (a Lambda task that never "
                        "returns?)", len(TMP_THREADS))

    # ------------------------------------------------------------------ provisioning

    def _provision(self) -> None:
        """Create what the template declares, in dependency order, and export the functions'
        environment into os.environ (all handlers share this process)."""
        template = self.template
        role_arn = self._create_role()
        for name, value in self._external_secrets().items():
            self.client("secretsmanager").create_secret(Name=name, SecretString=value)
        for table in template.tables().values():
            self._create_table(table)
        for bucket in template.buckets().values():
            self._create_bucket(bucket)
        for logical_id, secret in template.secrets().items():
            value = self._secret_values.get(logical_id) or self._secret_value(secret.properties)
            self._secret_values[logical_id] = value
            created = self.client("secretsmanager").create_secret(
                Name=secret.name, SecretString=value,
                Description=str(secret.properties.get("Description", "")))
            template.bind(logical_id, created["ARN"])  # Ref of a secret is its ARN
        for logical_id, key in template.kms_keys().items():
            self._create_kms_key(logical_id, key.properties)
        environment = template.environment()
        for function in template.functions().values():
            self.client("lambda").create_function(
                FunctionName=function.name, Runtime=function.runtime or "python3.11",
                Role=role_arn, Handler=function.handler, Code={"ZipFile": _dummy_zip()},
                Timeout=function.timeout_s, MemorySize=function.memory_mb,
                Environment={"Variables": dict(function.environment)})
        for machine in template.state_machines().values():
            # moto runs broken graphs (dangling Next, bad StartAt) until it trips over them.
            problems = asl_lint.problems(json.loads(machine.definition))
            if problems:
                raise LocalStackError(f"{machine.logical_id} is not valid ASL: {problems}")
            self.client("stepfunctions").create_state_machine(
                name=machine.name, definition=machine.definition, roleArn=role_arn,
                type=machine.type)
        for name, value in environment.items():
            # Provisioning again (reset() after moto was wiped) re-exports only what changed
            # (a new secret ARN), so a test's monkeypatched MONGODB_DATABASE, say, survives.
            if self._exported.get(name) != value:
                self._environ.set(name, value)
                self._exported[name] = value
        self._forget_cached_clients()

    def _intact(self) -> bool:
        """Do the tables, buckets, functions and state machines of this stack still exist?"""
        template = self.template
        tables = set(self.client("dynamodb").get_paginator("list_tables").paginate()
                     .build_full_result().get("TableNames", []))
        buckets = {b["Name"] for b in self.client("s3").list_buckets().get("Buckets", [])}
        functions = {f["FunctionName"] for f in self.client("lambda").get_paginator(
            "list_functions").paginate().build_full_result().get("Functions", [])}
        machines = {m["name"] for m in self.client("stepfunctions").list_state_machines()
                    .get("stateMachines", [])}
        return ({t.name for t in template.tables().values()} <= tables
                and {b.name for b in template.buckets().values()} <= buckets
                and {f.name for f in self.runtime.functions.values()} <= functions
                and {m.name for m in template.state_machines().values()} <= machines)

    def _empty_tables_and_buckets(self) -> None:
        dynamodb, s3 = self.client("dynamodb"), self.client("s3")
        for table in self.template.tables().values():
            keys = [k["AttributeName"] for k in table.properties["KeySchema"]]
            names = {f"#k{i}": key for i, key in enumerate(keys)}
            pages = dynamodb.get_paginator("scan").paginate(
                TableName=table.name, ProjectionExpression=", ".join(names),
                ExpressionAttributeNames=names)
            with_keys = [item for page in pages for item in page["Items"]]
            for start in range(0, len(with_keys), 25):
                dynamodb.batch_write_item(RequestItems={table.name: [
                    {"DeleteRequest": {"Key": key}} for key in with_keys[start:start + 25]]})
        for bucket in self.template.buckets().values():
            self._empty_bucket(s3, bucket.name)

    @staticmethod
    def _empty_bucket(s3: Any, name: str) -> None:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
            if doomed:
                s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=name, Key=upload["Key"],
                                          UploadId=upload["UploadId"])

    def _teardown(self) -> None:
        """Delete what _provision created, whatever of it still exists."""
        template = self.template
        deletions: list[tuple[str, str, dict[str, Any]]] = [
            *(("stepfunctions", "delete_state_machine", {"stateMachineArn": m.arn})
              for m in template.state_machines().values()),
            *(("lambda", "delete_function", {"FunctionName": f.name})
              for f in template.functions().values()),
            *(("secretsmanager", "delete_secret", {"SecretId": name,
                                                    "ForceDeleteWithoutRecovery": True})
              for name in [*(s.name for s in template.secrets().values()),
                           *self._external_secrets()]),
            *(("dynamodb", "delete_table", {"TableName": t.name})
              for t in template.tables().values()),
            *(("kms", "schedule_key_deletion", {"KeyId": key_id, "PendingWindowInDays": 7})
              for key_id in self._kms_keys.values()),
            ("iam", "delete_role", {"RoleName": self._role_name}),
        ]
        for bucket in template.buckets().values():
            try:
                self._empty_bucket(self.client("s3"), bucket.name)
                self.client("s3").delete_bucket(Bucket=bucket.name)
            except ClientError as exc:
                LOG.debug("Bucket %s: %s", bucket.name, exc)
        for service, operation, params in deletions:
            try:
                getattr(self.client(service), operation)(**params)
            except ClientError as exc:  # already gone
                LOG.debug("%s.%s(%s): %s", service, operation, params, exc)
        self._kms_keys.clear()

    @property
    def _role_name(self) -> str:
        return f"{self.stack_name}-execution"

    def _create_role(self) -> str:
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]}}]}
        role = self.client("iam").create_role(  # moto's Lambda refuses functions without one
            RoleName=self._role_name, AssumeRolePolicyDocument=json.dumps(trust))
        return str(role["Role"]["Arn"])

    def _external_secrets(self) -> dict[str, str]:
        return {str(self.template.parameters[parameter]): getattr(self, attribute)
                for parameter, attribute in EXTERNAL_SECRETS.items()
                if parameter in self.template.parameters and getattr(self, attribute)}

    def _dynamic_reference(self, reference: str) -> str:
        """`{{resolve:secretsmanager:<id>[:SecretString[:<json-key>]]}}` from local Secrets
        Manager, as CloudFormation resolves it at deploy time."""
        service, _, rest = reference.partition(":")
        if service != "secretsmanager":
            raise TemplateError(f"{{{{resolve:{reference}}}}} is not emulated")
        parts = rest.split(":")
        split = 7 if rest.startswith("arn:") else 1
        secret_id, options = ":".join(parts[:split]), parts[split:]
        value = self.client("secretsmanager").get_secret_value(SecretId=secret_id)
        text = str(value["SecretString"])
        if len(options) > 1 and options[1]:
            return str(json.loads(text)[options[1]])
        return text

    def _secret_value(self, properties: Mapping[str, Any]) -> str:
        """SecretString, or what GenerateSecretString asks for (the same API CloudFormation
        calls), generated once per stack so tokens survive reset()."""
        if "SecretString" in properties:
            return str(properties["SecretString"])
        spec = dict(properties.get("GenerateSecretString") or {})
        if not spec:
            return secrets.token_urlsafe(48)
        template_json, key = spec.pop("SecretStringTemplate", None), spec.pop(
            "GenerateStringKey", None)
        options = {k: (int(v) if k == "PasswordLength" else v) for k, v in spec.items()}
        generated = str(self.client("secretsmanager").get_random_password(**options)[
            "RandomPassword"])
        if template_json and key:
            return json.dumps({**json.loads(template_json), key: generated})
        return generated

    def _create_kms_key(self, logical_id: str, properties: Mapping[str, Any]) -> None:
        """The key with its policy (moto stores it; IAM is checked by test_iam_coverage), bound
        so that Ref gives its id and GetAtt Arn its ARN."""
        kms = self.client("kms")
        options: dict[str, Any] = {"Description": str(properties.get("Description", ""))}
        if "KeyPolicy" in properties:
            options["Policy"] = json.dumps(properties["KeyPolicy"])
        key_id = str(kms.create_key(**options)["KeyMetadata"]["KeyId"])
        if properties.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key_id)
        self._kms_keys[logical_id] = key_id
        self.template.bind(logical_id, key_id)

    def _create_table(self, table: Table) -> None:
        props = table.properties
        request: dict[str, Any] = {
            "TableName": table.name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for name in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput",
                     "Tags"):
            if name in props:
                request[name] = props[name]
        if "StreamSpecification" in props:  # CloudFormation leaves out StreamEnabled
            request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        sse = props.get("SSESpecification")
        if sse:  # CloudFormation says SSEEnabled where the API says Enabled
            request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled")),
                                           **{k: v for k, v in sse.items() if k != "SSEEnabled"}}
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(**request)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(TableName=table.name, TimeToLiveSpecification={
                "AttributeName": table.ttl_attribute, "Enabled": True})
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr:
            dynamodb.update_continuous_backups(TableName=table.name,
                                               PointInTimeRecoverySpecification=pitr)

    def _create_bucket(self, bucket: Bucket) -> None:
        """The bucket and its configuration, CloudFormation property names mapped to the S3 API.

        The template's bucket policy (deny non-TLS GetObject) is not applied: the local S3 speaks
        plain http, and the presigned downloads of `make local` must work."""
        props = bucket.properties
        s3 = self.client("s3")
        if self.region == "us-east-1":
            s3.create_bucket(Bucket=bucket.name)
        else:
            s3.create_bucket(Bucket=bucket.name, CreateBucketConfiguration={
                "LocationConstraint": self.region})
        encryption = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
        if encryption:
            s3.put_bucket_encryption(Bucket=bucket.name, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault":
                           rule["ServerSideEncryptionByDefault"],
                           **({"BucketKeyEnabled": rule["BucketKeyEnabled"]}
                              if "BucketKeyEnabled" in rule else {})}
                          for rule in encryption]})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket.name,
                PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=bucket.name,
                                             OwnershipControls=props["OwnershipControls"])
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(Bucket=bucket.name,
                                     VersioningConfiguration=props["VersioningConfiguration"])
        cors = (props.get("CorsConfiguration") or {}).get("CorsRules")
        if cors:  # moto answers preflights and adds the headers by these rules, as S3 does
            s3.put_bucket_cors(Bucket=bucket.name, CORSConfiguration={
                "CORSRules": [_cors_rule(rule) for rule in cors]})
        rules = (props.get("LifecycleConfiguration") or {}).get("Rules")
        if rules:
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket.name,
                LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in rules]})

    # ------------------------------------------------------------------ what tests use

    @property
    def template(self) -> Template:
        if self._template is None:
            raise LocalStackError("The stack is not running: use `with LocalStack() as stack:`")
        return self._template

    @property
    def clock(self) -> LocalClock:
        """The time the template's Schedule rules fire at and requests are stamped with;
        `set` and `advance` it (infrastructure/local/clock.py). reset() releases it."""
        if self._clock is None:
            raise LocalStackError("The stack is not running")
        return self._clock

    @property
    def runtime(self) -> LambdaRuntime:
        if self._runtime is None:
            raise LocalStackError("The stack is not running")
        return self._runtime

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API, with its stage: "http://127.0.0.1:<port>/v1"."""
        if len(self._gateways) != 1:
            raise LocalStackError(f"{len(self._gateways)} REST APIs: use rest_urls")
        return next(iter(self._gateways.values())).url

    @property
    def rest_urls(self) -> dict[str, str]:
        return {logical_id: gateway.url for logical_id, gateway in self._gateways.items()}

    @property
    def websocket(self) -> WebSocketGateway:
        """The template's WebSocket API (its connections, @connections calls, knobs)."""
        if len(self._websockets) != 1:
            raise LocalStackError(f"{len(self._websockets)} WebSocket APIs in the template")
        return next(iter(self._websockets.values()))

    @property
    def ws_url(self) -> str:
        """The WebSocket API's URL, with its stage: "ws://127.0.0.1:<port>/v1"."""
        return self.websocket.url

    @property
    def s3_endpoint(self) -> str:
        return self.aws_endpoint

    @property
    def tables(self) -> dict[str, str]:
        """Table names by logical id ("JobsTable" -> "dataport-local-JobsTable")."""
        return {lid: table.name for lid, table in self.template.tables().items()}

    @property
    def buckets(self) -> dict[str, str]:
        return {lid: bucket.name for lid, bucket in self.template.buckets().items()}

    @property
    def bucket(self) -> str:
        """The name of the template's only bucket."""
        (name,) = self.buckets.values()
        return name

    @property
    def state_machines(self) -> dict[str, str]:
        """State machine ARNs by logical id."""
        return {lid: machine.arn for lid, machine in self.template.state_machines().items()}

    @property
    def functions(self) -> dict[str, str]:
        """Function names by logical id."""
        return {lid: function.name for lid, function in self.runtime.functions.items()}

    @property
    def calls(self) -> list[Call]:
        """Every boto3 call the functions made: (logical id, service, operation)."""
        return self.runtime.calls

    @property
    def call_details(self) -> list[CallDetail]:
        """The same calls with their IAM prefix and request parameters."""
        return list(self.runtime.details)

    @property
    def jwt_secret(self) -> str:
        """The local HS256 signing secret (the value of the template's JwtSecret)."""
        return self._secret_values["JwtSecret"]

    def token_for(self, user_id: str, ttl_seconds: int = 3600, *, admin: bool = False) -> str:
        """A bearer token for `user_id` (a 24-hex ObjectId), as ClaudeLens would issue it;
        `admin` gives it the administrator scope."""
        from dataport.auth import issue_token  # noqa: PLC0415 (the layer joins sys.path at start)

        return issue_token(user_id, self.jwt_secret, ttl_seconds, admin=admin)

    def auth_headers(self, user_id: str, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(user_id, admin=admin)}"}

    def client(self, service: str) -> Any:
        """A boto3 client on the local endpoint, made once per stack (creating one costs ~0.1 s).
        Calls made with it outside an invocation are not recorded as a function's."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(  # type: ignore[call-overload]
                    service, endpoint_url=self.aws_endpoint, region_name=self.region,
                    aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106
                    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
            return self._clients[service]

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Invoke a function in-process; its exception is raised."""
        return self.runtime.invoke(logical_id, event)

    @property
    def handler_overrides(self) -> dict[str, Callable[[Any, Any], Any]]:
        """Fault hook: logical id -> the handler to run instead of the template's (the module
        stays loaded); reset() clears it. See tests/fixtures/faults.py."""
        return self.runtime.handler_overrides

    def set_function_timeout(self, logical_id: str, milliseconds: int | None) -> None:
        """Override a function's Timeout (None: the template's again); reset() clears it."""
        self.runtime.set_timeout(logical_id, milliseconds)

    def wait_for_execution(self, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the execution ends; its DescribeExecution answer."""
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if description["status"] in _TERMINAL:
                return description
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still {description['status']} after "
                                   f"{timeout} s")
            time.sleep(0.02)

    def wait_until_quiet(self, timeout: float = 30.0) -> None:
        """Poll until no Step Functions execution thread is alive and no function runs: then
        whatever a stopped execution's tasks were still doing is done (a negative check waits
        for this instead of sleeping)."""
        deadline = time.monotonic() + timeout
        while any(thread.is_alive() for thread in list(TMP_THREADS)) or self.runtime.running:
            if time.monotonic() > deadline:
                raise TimeoutError(f"executions or invocations still running after {timeout} s")
            time.sleep(0.02)

    def execution_history(self, execution_arn: str) -> Iterator[dict[str, Any]]:
        """The execution's history events, oldest first (why did it fail?)."""
        pages = self.client("stepfunctions").get_paginator("get_execution_history").paginate(
            executionArn=execution_arn)
        for page in pages:
            yield from page["events"]


_moto_stop_execution = Execution.stop


def _stop_execution(self: Execution, stop_date: Any, error: str | None,
                    cause: str | None) -> None:
    """StopExecution as on AWS, also while a task waits for a task token: moto's interpreter
    sets the stop flag but its callback wait only ends at the task's TimeoutSeconds (an import
    awaiting its decision would hold the execution, and stop() here, for a week)."""
    _moto_stop_execution(self, stop_date, error, cause)
    worker = self.exec_worker
    if worker is not None and worker.env is not None:
        for endpoint in list(worker.env.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()


def _ensure_port_free(port: int) -> None:
    """ThreadedMotoServer.start() waits forever when its thread fails to bind: check first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            raise LocalStackError(f"Port {port} on {HOST} is taken ({exc.strerror}): pick "
                                  "another one (make local: LOCAL_AWS_PORT=...)") from None


#: CloudFormation's CorsRule property names -> the S3 API's
_CORS_RULE_NAMES = {"Id": "ID", "AllowedHeaders": "AllowedHeaders",
                    "AllowedMethods": "AllowedMethods", "AllowedOrigins": "AllowedOrigins",
                    "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation CORS rule in S3 API shape."""
    return {_CORS_RULE_NAMES[name]: (int(value) if name == "MaxAge" else value)
            for name, value in rule.items()}


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in S3 API shape."""
    out: dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule["Status"]}
    if "Prefix" in rule:
        out["Filter"] = {"Prefix": rule["Prefix"]}
    elif "TagFilters" in rule:
        out["Filter"] = {"And": {"Tags": rule["TagFilters"]}}
    else:
        out["Filter"] = {"Prefix": ""}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "ExpirationDate" in rule:
        out["Expiration"] = {"Date": rule["ExpirationDate"]}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(
            rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    if "Transitions" in rule:
        out["Transitions"] = [{"Days": int(t["TransitionInDays"]),
                               "StorageClass": t["StorageClass"]} for t in rule["Transitions"]]
    return out
