"""The export request contract: what is accepted, and the field errors a client sees."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from dataport.models.exports import ExportFormat, ExportRequest


def _errors(body: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        ExportRequest.model_validate(body)
    return {".".join(str(p) for p in e["loc"]): e["type"] for e in caught.value.errors()}


def test_defaults_are_a_full_lossless_json_export() -> None:
    request = ExportRequest.model_validate({})
    assert request.format is ExportFormat.JSON
    assert request.filters.include_sidechains is True
    assert request.options.split_size_mb == 100
    assert not request.filters.filters_messages


def test_camel_case_filters_parse_with_exact_decimals() -> None:
    request = ExportRequest.model_validate({
        "format": "csv",
        "filters": {"dateRange": {"start": "2025-08-01T00:00:00Z", "end": "2025-09-01T00:00:00Z"},
                    "projectIds": ["66ad9c1e5f2b4a0012c0ffee"], "models": ["claude-opus-4-1"],
                    "messageTypes": ["user", "assistant"],
                    "costRange": {"min": "0.1", "max": "2.4187355"},
                    "includeSidechains": False},
        "options": {"splitSizeMb": 5, "compression": {"level": 9}},
    })
    assert request.filters.cost_range is not None
    assert request.filters.cost_range.max == Decimal("2.4187355")
    assert request.filters.filters_messages


@pytest.mark.parametrize(("body", "field", "kind"), [
    ({"format": "xlsx"}, "format", "enum"),
    ({"options": {"splitSizeMb": 0}}, "options.splitSizeMb", "greater_than_equal"),
    ({"options": {"splitSizeMb": 501}}, "options.splitSizeMb", "less_than_equal"),
    ({"options": {"compression": {"level": 10}}}, "options.compression.level", "less_than_equal"),
    ({"filters": {"projectIds": ["not-an-id"]}}, "filters.projectIds.0", "value_error"),
    ({"filters": {"messageTypes": ["human"]}}, "filters.messageTypes.0", "value_error"),
    ({"filters": {"dateRange": {"start": "2025-09-01T00:00:00Z", "end": "2025-08-01T00:00:00Z"}}},
     "filters.dateRange", "value_error"),
    ({"filters": {"dateRange": {"start": "2025-09-01T00:00:00"}}}, "filters.dateRange.start",
     "timezone_aware"),
    ({"filters": {"costRange": {"min": "-1"}}}, "filters.costRange.min", "greater_than_equal"),
    ({"filters": {"colour": "blue"}}, "filters.colour", "extra_forbidden"),
])
def test_bad_fields_are_reported_by_path(body: dict[str, object], field: str, kind: str) -> None:
    assert _errors(body).get(field) == kind
