"""/api-keys over HTTP on the local stack: a user makes a key with their sign-in token, scripts
use it (REST and WebSocket), and revoking it shuts it out."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from dataport.api.api_keys import MAX_ACTIVE_KEYS
from infrastructure.local import seed
from infrastructure.local.progress_client import ProgressSocket
from infrastructure.local.stack import LocalStack
from tests.e2e.api_client import Api, table_text
from tests.infrastructure.iam import assert_calls_allowed

OTHER_USER = "66ad9b005f2b4a0012c0bbbb"


@pytest.fixture
def api(fresh_stack: LocalStack) -> Api:
    return Api(fresh_stack, seed.DEMO_USER_ID)


def _with_key(api: Api, key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


def test_a_key_is_shown_once_works_and_stops_working_once_revoked(api: Api) -> None:
    answer = api.request("POST", "/api-keys", json={"name": "nightly backup",
                                                    "expiresInDays": 30})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    created = answer.json()
    key, key_id = created["key"], created["keyId"]
    assert key.startswith("dpk_")
    assert created["name"] == "nightly backup"
    assert created["revoked"] is False

    # scripts use it over REST and on the WebSocket
    assert api.request("GET", "/exports", headers=_with_key(api, key)).status_code == 200
    with ProgressSocket(api.stack.ws_url, key):
        pass

    # the list names it but never shows it; the table holds only its hash
    listed = api.request("GET", "/api-keys")
    assert [k["keyId"] for k in listed.json()["apiKeys"]] == [key_id]
    assert "key" not in listed.json()["apiKeys"][0]
    assert key not in listed.text
    assert key not in table_text(api.stack, "ApiKeysTable")

    # a key can neither make nor revoke keys; another user cannot see or revoke it
    for method, path, body in (("POST", "/api-keys", {"name": "more"}),
                               ("DELETE", f"/api-keys/{key_id}", None)):
        refused = api.request(method, path, json=body, headers=_with_key(api, key))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    intruder = Api(api.stack, OTHER_USER)
    assert intruder.request("GET", "/api-keys").json()["apiKeys"] == []
    assert intruder.request("DELETE", f"/api-keys/{key_id}").status_code == 404

    revoked = api.request("DELETE", f"/api-keys/{key_id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True
    assert revoked.json()["revokedAt"]
    with pytest.raises(InvalidStatus) as refused_socket:  # the WebSocket asks every time
        ProgressSocket(api.stack.ws_url, key)
    assert refused_socket.value.response.status_code == 401
    api.stack.forget_authorizer_answers()  # REST: once API Gateway's cached answer lapses
    assert api.request("GET", "/exports", headers=_with_key(api, key)).status_code == 401
    assert api.request("GET", "/api-keys").json()["apiKeys"][0]["revoked"] is True
    assert_calls_allowed(api.stack)


def test_bad_requests_and_the_limit_of_active_keys(api: Api) -> None:
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x", "expiresInDays": 0},
                 {"name": "x", "expiresInDays": 366}, {"name": "x", "scope": "admin"}):
        answer = api.request("POST", "/api-keys", json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert api.request("DELETE", "/api-keys/not-a-key-id").status_code == 400
    assert api.request("GET", "/api-keys").json()["apiKeys"] == []

    ids = []
    for n in range(MAX_ACTIVE_KEYS):
        answer = api.request("POST", "/api-keys", json={"name": f"key {n}"})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["keyId"])
    over = api.request("POST", "/api-keys", json={"name": "one too many"})
    assert over.status_code == 409, over.text
    assert over.json()["error"]["details"]["limit"] == MAX_ACTIVE_KEYS
    assert api.request("DELETE", f"/api-keys/{ids[0]}").status_code == 200
    assert api.request("POST", "/api-keys", json={"name": "in its place"}).status_code == 201
    names = [k["name"] for k in api.request("GET", "/api-keys").json()["apiKeys"]]
    assert len(names) == MAX_ACTIVE_KEYS + 1


def test_only_an_administrator_makes_an_admin_key(api: Api) -> None:
    refused = api.request("POST", "/api-keys", json={"name": "ops", "role": "admin"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    assert api.request("GET", "/api-keys").json()["apiKeys"] == []  # nothing half made

    admin = Api(api.stack, api.user_id, admin=True)
    made = admin.request("POST", "/api-keys", json={"name": "ops", "role": "admin"})
    assert made.status_code == 201, made.text
    assert made.json()["role"] == "admin"
    plain = admin.request("POST", "/api-keys", json={"name": "laptop"})
    assert plain.json()["role"] == "user"
    roles = {k["name"]: k["role"] for k in api.request("GET", "/api-keys").json()["apiKeys"]}
    assert roles == {"ops": "admin", "laptop": "user"}
