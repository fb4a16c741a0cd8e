"""Answers REST proxy events so tests can see what the gateway passed on (tests only)."""

import base64
import json
from typing import Any

# 1x1 transparent PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    resource = event["resource"]
    if resource == "/picture":
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(PNG).decode(), "isBase64Encoded": True}
    if resource == "/redirect":
        return {"statusCode": 302, "headers": {"Location": "http://127.0.0.1:9/somewhere?x=1"},
                "body": ""}
    if resource == "/fail":
        raise ValueError("handler failed")
    if resource == "/broken":
        return "not a proxy response"
    return {
        "statusCode": 201 if event["httpMethod"] == "POST" else 200,
        "headers": {"Content-Type": "application/json", "X-Single": "one"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps({"event": event, "function": context.function_name,
                            "remaining_ms": context.get_remaining_time_in_millis()}),
    }
