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
