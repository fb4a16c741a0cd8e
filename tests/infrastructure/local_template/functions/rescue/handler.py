"""The Catch target: says which error it caught (tests only)."""

from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"rescued": event["id"], "caught": event["error"]["Error"]}
