"""The committed OpenAPI document is the one the code generates (`make openapi` rewrites it)."""

from __future__ import annotations

import json
from pathlib import Path

from infrastructure.openapi import document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_matches_the_code() -> None:
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == document(), (
        "docs/openapi.json is out of date: run `make openapi` and commit it")


def test_every_route_is_documented_with_its_error_answers() -> None:
    spec = document()
    assert {"/exports", "/exports/{jobId}", "/exports/{jobId}/download"} <= set(spec["paths"])
    create = spec["paths"]["/exports"]["post"]
    assert "202" in create["responses"]
    assert spec["components"]["securitySchemes"]["dataport"]["name"] == "Authorization"


def test_servers_are_absolute_the_local_stack_and_a_deployed_template() -> None:
    local, deployed = document()["servers"]
    assert local["url"] == "http://127.0.0.1:3000/v1"
    assert deployed["url"].startswith("https://{restApiId}.execute-api.{region}.")
    assert set(deployed["variables"]) == {"restApiId", "region", "stage"}
    assert "/exports/estimate" in document()["paths"]
