"""The logic behind the WebSocket routes: $connect, $disconnect, subscribe, unsubscribe, $default.

Answers go back over the socket as frames (dataport.progress.events), never as the route's
return value: API Gateway sends integration responses only on routes set up for two-way talk,
and one mechanism for every frame keeps the client simple.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, ValidationError

from dataport.api.body import BodyTooDeep, parse_json_body
from dataport.errors import NotFound
from dataport.jobs.store import JobStore
from dataport.models.common import ApiModel
from dataport.progress.connections import ConnectionStore
from dataport.progress.events import ErrorEvent, UnsubscribedEvent, encode
from dataport.progress.publisher import send, send_snapshot

ACTIONS = ("subscribe", "unsubscribe")


class SubscriptionRequest(ApiModel):
    action: Literal["subscribe", "unsubscribe"]
    job_id: str = Field(pattern="^[0-9a-f]{32}$")


def connect(connection_id: str, user_id: str, connected_at: datetime) -> None:
    ConnectionStore().open(connection_id, user_id, connected_at)


def disconnect(connection_id: str) -> None:
    ConnectionStore().close(connection_id)


def subscribe(connection_id: str, user_id: str, connected_at: datetime, body: str | None) -> None:
    """Subscribe to one of the caller's jobs and answer with its snapshot.

    The subscription is written before the job is read: an event published in between reaches
    the client (maybe just before the snapshot, which `seq` sorts out), and an end that came
    before is in the snapshot. Either way the client never misses how the job ended.
    """
    request = _request(connection_id, body, "subscribe")
    if request is None:
        return
    store = JobStore()
    try:
        store.get(request.job_id, user_id)  # another user's job is simply not found
    except NotFound as error:
        _error(connection_id, "not_found", error.message, "subscribe", request.job_id)
        return
    ConnectionStore().subscribe(connection_id, request.job_id, connected_at)
    send_snapshot(connection_id, store.get(request.job_id, user_id))


def unsubscribe(connection_id: str, body: str | None) -> None:
    request = _request(connection_id, body, "unsubscribe")
    if request is None:
        return
    ConnectionStore().unsubscribe(connection_id, request.job_id)
    send(connection_id, encode(UnsubscribedEvent(job_id=request.job_id)))


def unknown_action(connection_id: str, body: str | None) -> None:
    """$default: anything that is not a JSON object with a known `action`."""
    try:
        action = _action(body)
    except BodyTooDeep as error:
        _error(connection_id, error.code, error.message)
        return
    message = (f"Unknown action {action!r}: send one of {', '.join(ACTIONS)}." if action
               else 'Send JSON like {"action": "subscribe", "jobId": "<job id>"}.')
    _error(connection_id, "unknown_action" if action else "invalid_request", message, action)


def _request(connection_id: str, body: str | None, action: str) -> SubscriptionRequest | None:
    try:
        return SubscriptionRequest.model_validate_json(body or "")
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in error.errors()})
        _error(connection_id, "invalid_request",
               f"The {action} request is not valid ({', '.join(fields)}): send "
               f'{{"action": "{action}", "jobId": "<32 hex characters>"}}.', action)
        return None


def _action(body: str | None) -> str | None:
    try:
        message = parse_json_body(body or "")
    except ValueError:
        return None
    action = message.get("action") if isinstance(message, dict) else None
    return action if isinstance(action, str) and action else None


def _error(connection_id: str, code: str, message: str, action: str | None = None,
           job_id: str | None = None) -> None:
    send(connection_id, encode(ErrorEvent(code=code, message=message, action=action,
                                          job_id=job_id)))
