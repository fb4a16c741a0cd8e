"""Generate the REST API's OpenAPI document from the code (the routes and pydantic models), or
check that the committed one still matches: `python -m infrastructure.openapi --write|--check`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import dataport

ROOT = Path(__file__).resolve().parent.parent
API_HANDLER = ROOT / "functions" / "api" / "handler.py"


def document() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server

    spec = importlib.util.spec_from_file_location("dataport_api_handler_openapi", API_HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schema = module.app.get_openapi_json_schema(
        title="dataport", version=dataport.__version__,
        description="Export your ClaudeLens conversations. Every route needs "
                    "`Authorization: Bearer <jwt>` or `Authorization: ApiKey <key>`.",
        servers=[Server(url="/v1")],
        security_schemes={"dataport": APIKey(name="Authorization", in_=APIKeyIn.header)},
        security=[{"dataport": []}],
    )
    parsed: dict[str, Any] = json.loads(schema)
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args(argv)
    text = json.dumps(document(), indent=2, sort_keys=True) + "\n"
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
        return 0
    if args.check.read_text(encoding="utf-8") != text:
        print(f"{args.check} is out of date: run `make openapi` and commit it.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
