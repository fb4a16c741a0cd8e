"""JSON request bodies (REST and WebSocket): parsed with a nesting limit.

`json.loads` recurses once per level: a body of 5,000 `[` raised RecursionError, which the
resolver could only answer as a 500. No request of ours nests more than a few levels, so a body
deeper than MAX_BODY_DEPTH is refused as `400 body_too_deep`, whether the parser gave up first
or the parsed value shows it.
"""

from __future__ import annotations

import json
from typing import Any

from dataport.errors import InvalidRequest

#: objects and arrays in one body; the deepest request (an export's filters) has three
MAX_BODY_DEPTH = 32


class BodyTooDeep(InvalidRequest):
    code = "body_too_deep"

    def __init__(self) -> None:
        super().__init__(f"The request body nests objects and arrays deeper than "
                         f"{MAX_BODY_DEPTH} levels.", details={"maxDepth": MAX_BODY_DEPTH})


def nesting_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit` (without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in
                     (item.values() if isinstance(item, dict) else item))
    return False


def parse_json_body(text: str) -> Any:
    """The body as JSON; json.JSONDecodeError when it is not JSON (the resolver answers that
    as a field error), BodyTooDeep when it nests too deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise BodyTooDeep from None
    if nesting_depth_exceeds(value, MAX_BODY_DEPTH):
        raise BodyTooDeep
    return value
