"""Generate the REST API's OpenAPI document from the code (the routes and pydantic models), or
check that the committed one still matches: `python -m infrastructure.openapi --write|--check`."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import (
    APIKey,
    APIKeyIn,
    Server,
    ServerVariable,
)

import dataport
from dataport.models.api import ErrorBody
from infrastructure.generated import write_or_check
from infrastructure.local.template import Template

ROOT = Path(__file__).resolve().parent.parent
API_HANDLER = ROOT / "functions" / "api" / "handler.py"


def document() -> dict[str, Any]:
    # The handler loads its settings at import, as at a cold start: give it the environment
    # the template gives the function (names only; nothing is called).
    for name, value in Template().environment().items():
        os.environ.setdefault(name, value)
    spec = importlib.util.spec_from_file_location("dataport_api_handler_openapi", API_HANDLER)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {API_HANDLER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schema = module.app.get_openapi_json_schema(
        title="dataport", version=dataport.__version__,
        description="Export your ClaudeLens conversations. Every route needs "
                    "`Authorization: Bearer <jwt>` or `Authorization: ApiKey <key>`.",
        servers=servers(),
        security_schemes={"dataport": APIKey(name="Authorization", in_=APIKeyIn.header)},
        security=[{"dataport": []}],
    )
    parsed: dict[str, Any] = json.loads(schema)
    return _with_error_answers(parsed)


#: the local stack's fixed ports (infrastructure/local/__main__.py: LOCAL_REST_PORT, LOCAL_WS_PORT)
LOCAL_REST_URL = "http://127.0.0.1:3000/v1"
LOCAL_WS_URL = "ws://127.0.0.1:3001/v1"


def servers() -> list[Server]:
    """Absolute URLs a client can call: the local stack (`make local`), and a deployed stack's
    `RestApiUrl` output as a template (API Gateway's id and the region fill it in)."""
    return [
        Server(url=LOCAL_REST_URL, description="The local stack (`make local`)"),
        Server(url="https://{restApiId}.execute-api.{region}.amazonaws.com/{stage}",
               description="A deployed stack: its `RestApiUrl` output",
               variables={
                   "restApiId": ServerVariable(default="abc123defg",
                                               description="the RestApi's id"),
                   "region": ServerVariable(default="eu-west-1",
                                            description="the stack's region"),
                   "stage": ServerVariable(default="v1", enum=["v1"],
                                           description="the API's stage")}),
    ]


#: answers every authorized route can give besides its own
_COMMON_ERRORS = {
    "400": "Invalid request: `error.details` lists each field",
    "401": "Missing, malformed or expired credential",
    "404": "No such job for this account (another user's job looks exactly like this)",
}


def _with_error_answers(spec: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents request validation as 422; the resolver answers 400 with our error
    body (functions/api/handler.py), so the document says what clients really get."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    body = ErrorBody.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas.update(body.pop("$defs", {}))
    schemas["ErrorBody"] = body
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in spec["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            responses.pop("422", None)
            for status, description in _COMMON_ERRORS.items():
                responses.setdefault(status, {"description": description, "content": error})
    return spec


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    return write_or_check(argv, __doc__, render, "openapi")


if __name__ == "__main__":
    raise SystemExit(main())
