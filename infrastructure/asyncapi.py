"""Generate the WebSocket API's AsyncAPI document from the code (the pydantic frame models of
dataport.progress.events and the subscription request of dataport.api.websocket), or check that
the committed one still matches: `python -m infrastructure.asyncapi --write|--check`. The prose
of the protocol is docs/progress.md; this is its machine-readable half."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import dataport
from dataport.api.websocket import SubscriptionRequest
from dataport.progress.events import (
    CancelledEvent,
    ErrorEvent,
    FailedEvent,
    ProgressEvent,
    RolledBackEvent,
    SnapshotEvent,
    SucceededEvent,
    UnsubscribedEvent,
)
from infrastructure.generated import write_or_check
from infrastructure.openapi import LOCAL_WS_URL

HEADER = ("# Generated from the code by `make asyncapi` (infrastructure/asyncapi.py); `make lint` "
          "checks it.\n# The protocol in prose: docs/progress.md.\n")

#: what a client sends: (message name, model, summary)
SENT: list[tuple[str, type[BaseModel], str]] = [
    ("subscribe", SubscriptionRequest, "Subscribe to one of your jobs: a job.snapshot answers "
     "at once, then its events follow (`action`: subscribe)."),
    ("unsubscribe", SubscriptionRequest, "Stop receiving a job's events (`action`: "
     "unsubscribe); `unsubscribed` answers."),
]
#: what the server sends
RECEIVED: list[tuple[str, type[BaseModel], str]] = [
    ("jobSnapshot", SnapshotEvent, "The answer to subscribe: the job as it is now; a terminal "
     "status here is the end of the stream."),
    ("jobProgress", ProgressEvent, "While the job runs: at most 2 a second, at least 1 every "
     "2 seconds while it advances; `progress.etaSeconds` once there is a pace to project."),
    ("jobSucceeded", SucceededEvent, "Once, at the end; an export's carries a presigned "
     "`download` link (a credential: never log it)."),
    ("jobFailed", FailedEvent, "Once, at the end: `error.message` says what to do."),
    ("jobCancelled", CancelledEvent, "Once, at the end."),
    ("jobRolledBack", RolledBackEvent, "Once, at the end of an import's rollback."),
    ("unsubscribed", UnsubscribedEvent, "The answer to unsubscribe."),
    ("error", ErrorEvent, "A request that was not served (`not_found` for a job that is not "
     "yours or does not exist)."),
]


def document() -> dict[str, Any]:
    models = {model for _, model, _ in SENT + RECEIVED}
    _, top = models_json_schema([(model, "serialization") for model in sorted(
        models, key=lambda m: m.__name__)], by_alias=True,
        ref_template="#/components/schemas/{model}")
    schemas = top.get("$defs", {})
    host, pathname = LOCAL_WS_URL.removeprefix("ws://").split("/", 1)
    channel = "#/channels/progress"
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "dataport live progress",
            "version": dataport.__version__,
            "description": "Watch your dataport jobs live: connect with your credential as "
                           "`?token=`, subscribe to a job, receive its events until it ends. "
                           "Every frame is one JSON object with `v` (1) and `type`; `seq` "
                           "orders a job's events (drop any not above the highest seen).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": host, "pathname": f"/{pathname}", "protocol": "ws",
                      "description": "The local stack (`make local`)",
                      "security": [{"$ref": "#/components/securitySchemes/token"}]},
            "deployed": {
                "host": "{webSocketApiId}.execute-api.{region}.amazonaws.com",
                "pathname": "/v1", "protocol": "wss",
                "description": "A deployed stack: its `WebSocketUrl` output",
                "variables": {"webSocketApiId": {"default": "abc123defg",
                                                 "description": "the WebSocketApi's id"},
                              "region": {"default": "eu-west-1",
                                         "description": "the stack's region"}},
                "security": [{"$ref": "#/components/securitySchemes/token"}]},
        },
        "channels": {"progress": {
            "address": "/",
            "description": "One connection carries every subscribed job's frames.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}
                         for name, _, _ in SENT + RECEIVED},
        }},
        "operations": {
            **{f"send{name.capitalize()}": {
                "action": "send", "channel": {"$ref": channel}, "summary": summary,
                "messages": [{"$ref": f"{channel}/messages/{name}"}]}
               for name, _, summary in SENT},
            "receiveJobEvents": {
                "action": "receive", "channel": {"$ref": channel},
                "summary": "Job events and answers, as JSON frames.",
                "messages": [{"$ref": f"{channel}/messages/{name}"}
                             for name, _, _ in RECEIVED]},
        },
        "components": {
            "securitySchemes": {"token": {
                "type": "httpApiKey", "name": "token", "in": "query",
                "description": "A JWT or an API key, as on the REST API (browsers cannot set "
                               "headers on a WebSocket). Checked once, when connecting."}},
            "messages": {name: {"name": name, "title": model.__name__, "summary": summary,
                                "payload": {"$ref": f"#/components/schemas/{model.__name__}"}}
                         for name, model, summary in SENT + RECEIVED},
            "schemas": schemas,
        },
    }


def render() -> str:
    return HEADER + yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    return write_or_check(argv, __doc__, render, "asyncapi")


if __name__ == "__main__":
    raise SystemExit(main())
