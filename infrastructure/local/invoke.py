"""`make invoke FN=<Function> EVENT=events/<file>.json`: one function, one sample event, on the
local stack (no Docker), answered as Lambda answers: the result, or errorType/errorMessage.

The events in events/ are what API Gateway, the authorizer and Step Functions hand each function
(`sam local invoke <Function> -e events/<file>.json` takes the same files with Docker). A
credential cannot be written into a file, so `<token>` stands for one: here it becomes a token
for the seeded demo user, signed with the local stack's secret (with `sam local invoke`, put a
real token there). tests/e2e/test_sample_events.py invokes every function with its events.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from infrastructure.local.lambda_runtime import Invocation
from infrastructure.local.stack import LocalStack

TOKEN_PLACEHOLDER = "<token>"  # noqa: S105 (a placeholder, not a secret)
EVENTS = Path(__file__).resolve().parents[2] / "events"


def event_files(folder: str) -> list[Path]:
    """A function's sample events: events/<its code folder>.json and .<variant>.json."""
    return sorted([*EVENTS.glob(f"{folder}.json"), *EVENTS.glob(f"{folder}.*.json")])


def load_event(path: Path, token: str) -> Any:
    """The event with its credential placeholder filled in."""
    return json.loads(path.read_text().replace(TOKEN_PLACEHOLDER, token))


def answer(invocation: Invocation) -> dict[str, Any]:
    """What `aws lambda invoke` / `sam local invoke` would print."""
    if invocation.error is not None:
        return {"errorType": invocation.error_type or type(invocation.error).__name__,
                "errorMessage": str(invocation.error)}
    return {"result": invocation.result}


def invoke(stack: LocalStack, function: str, event_path: Path, user_id: str) -> dict[str, Any]:
    event = load_event(event_path, stack.token_for(user_id))
    return answer(stack.runtime.run(function, event))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("function", help="logical id in template.yaml, e.g. ApiFunction")
    parser.add_argument("event", type=Path, help="events/<file>.json")
    args = parser.parse_args(argv)
    with LocalStack() as stack:
        from infrastructure.local import seed  # noqa: PLC0415 (needs the layer on sys.path)

        if args.function not in stack.functions:
            parser.error(f"{args.function} is not a function of template.yaml: "
                         f"{', '.join(sorted(stack.functions))}")
        out = invoke(stack, args.function, args.event, seed.DEMO_USER_ID)
    print(json.dumps(out, indent=2, default=str))
    return 1 if "errorType" in out else 0


if __name__ == "__main__":
    sys.exit(main())
