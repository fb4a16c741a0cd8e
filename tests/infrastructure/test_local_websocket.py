"""The local WebSocket gateway behaves like API Gateway's: the production @connections client
(botocore, through AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI) reaches real sockets, gets the real
GoneException for a closed one, and connection ids survive URL-encoding; the handshake and the
routes are the template's."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dataport import aws
from dataport.api import websocket as websocket_logic
from infrastructure.local import ws_gateway
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack

USER = "66ad9b005f2b4a0012c0aaaa"


@dataclass
class Connected:
    client: ProgressSocket
    id: str


@pytest.fixture
def socket(fresh_stack: LocalStack) -> Iterator[Connected]:
    with ProgressSocket(fresh_stack.ws_url, fresh_stack.token_for(USER)) as client:
        (connection_id,) = fresh_stack.websocket.connection_ids
        yield Connected(client, connection_id)


def test_handlers_reach_the_gateway_through_the_botocore_endpoint_variable(
        fresh_stack: LocalStack) -> None:
    endpoint = os.environ[aws.CONNECTIONS_ENDPOINT_ENV]
    assert endpoint == fresh_stack.websocket.callback_url
    assert endpoint.startswith("http://127.0.0.1:")
    assert endpoint.endswith("/v1")
    assert aws.connections_api().meta.endpoint_url == endpoint


def test_post_get_delete_then_gone(fresh_stack: LocalStack, socket: Connected) -> None:
    api = aws.connections_api()
    api.post_to_connection(ConnectionId=socket.id, Data=b'{"hello": "world"}')
    assert json.loads(socket.client.connection.recv(timeout=5)) == {"hello": "world"}

    described = api.get_connection(ConnectionId=socket.id)
    assert described["Identity"]["SourceIp"] == "127.0.0.1"
    assert described["ConnectedAt"] <= described["LastActiveAt"]

    api.delete_connection(ConnectionId=socket.id)
    with pytest.raises(ConnectionClosed):
        socket.client.connection.recv(timeout=5)
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId=socket.id, Data=b"{}")
    with pytest.raises(api.exceptions.GoneException):
        api.get_connection(ConnectionId=socket.id)
    statuses = [(c.method, c.status) for c in fresh_stack.websocket.calls]
    assert statuses == [("POST", 200), ("GET", 200), ("DELETE", 204), ("POST", 410), ("GET", 410)]


def test_connection_ids_are_url_decoded(fresh_stack: LocalStack,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore sends "a+b/c==" as a%2Bb%2Fc%3D%3D: the gateway must find the socket again."""
    monkeypatch.setattr(ws_gateway, "_connection_id", lambda: "a+b/c==")
    with ProgressSocket(fresh_stack.ws_url, fresh_stack.token_for(USER)) as client:
        assert fresh_stack.websocket.connection_ids == ["a+b/c=="]
        aws.connections_api().post_to_connection(ConnectionId="a+b/c==", Data=b'"ok"')
        assert client.connection.recv(timeout=5) == '"ok"'


def test_oversized_and_unsigned_posts_are_refused(fresh_stack: LocalStack,
                                                  socket: Connected) -> None:
    api = aws.connections_api()
    with pytest.raises(api.exceptions.PayloadTooLargeException):
        api.post_to_connection(ConnectionId=socket.id, Data=b"x" * (128 * 1024 + 1))
    url = f"{fresh_stack.websocket.callback_url}/@connections/{socket.id}"
    assert requests.post(url, data=b"{}", timeout=5).status_code == 403  # no SigV4


def test_the_handshake_follows_the_stage_and_the_authorizer(fresh_stack: LocalStack) -> None:
    wrong_stage = fresh_stack.ws_url.replace("/v1", "/v2")
    with pytest.raises(InvalidStatus) as refused:
        ProgressSocket(wrong_stage, fresh_stack.token_for(USER))
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        ProgressSocket(fresh_stack.ws_url, None)  # identity source missing: no Lambda runs
    assert refused.value.response.status_code == 401
    assert not [c for c in fresh_stack.calls if c.logical_id == "AuthorizerFunction"]


def test_a_failing_integration_answers_internal_server_error(
        socket: Connected, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(websocket_logic, "unknown_action", broken)
    socket.client.send({"action": "nothing"})
    answer = json.loads(socket.client.connection.recv(timeout=5))
    assert answer["message"] == "Internal server error"
    assert answer["connectionId"] == socket.id


def test_closing_runs_disconnect_which_forgets_the_connection(fresh_stack: LocalStack) -> None:
    table = fresh_stack.tables["ConnectionsTable"]
    dynamodb = fresh_stack.client("dynamodb")
    with ProgressSocket(fresh_stack.ws_url, fresh_stack.token_for(USER)) as client:
        client.subscribe("f" * 32)  # not found: error frame, no subscription
        assert client.receive().type == "error"
        assert dynamodb.scan(TableName=table)["Count"] == 1  # the connection itself
    deadline = time.monotonic() + 5
    while dynamodb.scan(TableName=table)["Count"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dynamodb.scan(TableName=table)["Count"] == 0
    assert fresh_stack.websocket.connection_ids == []
