"""`--write FILE | --check FILE` for a document generated from the code (openapi.py,
asyncapi.py): write it, or fail (exit 1) when the committed one differs from what the code
generates now."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(argv: list[str] | None, description: str | None, render: Callable[[], str],
                   make_target: str) -> int:
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
        return 0
    if not args.check.exists() or args.check.read_text(encoding="utf-8") != text:
        print(f"{args.check} is out of date: run `make {make_target}` and commit it.",
              file=sys.stderr)
        return 1
    return 0
