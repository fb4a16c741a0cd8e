"""statelint, taught the ItemReader fields it lacks (`python -m infrastructure.asl_lint FILE...`).

statelint 3.1.0 (the latest) knows an ItemReader's `ReaderConfig` only by `MaxItems`; Step
Functions requires `InputType` (CSV, JSON, JSONL, MANIFEST, PARQUET) for an `s3:getObject`
reader, which the restore machine's Map uses (one items object: docs/backups.md, "What one
shard costs"), and `CSVHeaderLocation` / `CSVHeaders` / `CSVDelimiter` for CSV. Those are
added to its ReaderConfig node, each checked for its type, and everything else is linted
as statelint lints it: the local stack, `make lint` and the template's test run this."""

from __future__ import annotations

import sys
from typing import Any

from statelint.fields.base import Field
from statelint.fields.list_field import ListField
from statelint.fields.str_field import EnumStrField, StrField
from statelint.linter import Linter
from statelint.nodes.map_state import ReaderConfig

INPUT_TYPE = EnumStrField("InputType", ["CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"])
CSV_HEADER_LOCATION = EnumStrField("CSVHeaderLocation", ["FIRST_ROW", "GIVEN"])
CSV_HEADERS = ListField("CSVHeaders", StrField)
CSV_DELIMITER = StrField("CSVDelimiter")

_known = ReaderConfig.optional_fields


def _optional_fields(self: ReaderConfig) -> list[Field]:
    known: list[Field] = _known.fget(self)
    return [*known, INPUT_TYPE, CSV_HEADER_LOCATION, CSV_HEADERS, CSV_DELIMITER]


ReaderConfig.optional_fields = property(_optional_fields)


def problems(definition: str | dict[str, Any]) -> list[str]:
    """What statelint finds in a definition (text, parsed, or a file's path)."""
    found: list[str] = Linter.validate(definition)
    return found


def main(paths: list[str]) -> int:
    found = 0
    for path in paths:
        for problem in problems(path):
            print(f"{path}: {problem}")
            found += 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
