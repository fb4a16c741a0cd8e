"""`python -m infrastructure.local` (`make local`): the whole service on 127.0.0.1 until Ctrl-C.

Ports are fixed so curl commands and bookmarks keep working (LOCAL_REST_PORT, default 3000;
LOCAL_WS_PORT, default 3001, the WebSocket API; LOCAL_AWS_PORT, default 4566, the port AWS tools
habitually use for local endpoints). Retry
intervals are real here, as on AWS. Sample data is seeded into an empty database.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
from types import FrameType

from infrastructure.local.stack import LocalStack


def _seed(stack: LocalStack) -> str:
    """Seed the sample data unless the database already has some; the demo user's id."""
    from dataport.source.mongo import connect  # noqa: PLC0415 (the layer joins sys.path at start)
    from infrastructure.local import seed  # noqa: PLC0415 (needs the layer too)

    db = connect(stack.mongo_uri, os.environ["MONGODB_DATABASE"])
    try:
        if db.list_collection_names():
            print(f"MongoDB database {db.name!r} already has data: not seeding it")
        else:
            summary = seed.seed(db)
            print(f"Seeded {db.name!r}: {len(summary.users)} users, {summary.sessions} sessions, "
                  f"{summary.messages} messages")
    finally:
        db.client.close()
    return seed.DEMO_USER_ID


def _instructions(stack: LocalStack, user_id: str) -> str:
    token = stack.token_for(user_id, ttl_seconds=12 * 3600)
    auth = shlex.quote(f"Authorization: Bearer {token}")
    api = stack.rest_url
    return f"""
dataport is running locally (Ctrl-C stops it).

  REST API   {api}
  WebSocket  {stack.ws_url}  (live progress: docs/progress.md)
  AWS        {stack.aws_endpoint}  (moto: S3, DynamoDB, Step Functions, Lambda, Secrets Manager)
  MongoDB    {stack.mongo_uri}
  Bucket     {stack.bucket}

Demo user {user_id}, token valid for 12 hours:

  export API={api}
  export AUTH={auth}
  export TOKEN={token}

Start an export, follow it, download it (-L follows the 302 to the presigned local S3 URL):

  curl -s -X POST "$API/exports" -H "$AUTH" -H 'Content-Type: application/json' \\
       -d '{{"format": "json"}}'
  curl -s "$API/exports/<jobId>" -H "$AUTH"
  curl -sL -o export.zip "$API/exports/<jobId>/download" -H "$AUTH"
  curl -s "$API/exports" -H "$AUTH"

Make an API key for scripts (shown once; then -H "Authorization: ApiKey <key>"):

  curl -s -X POST "$API/api-keys" -H "$AUTH" -H 'Content-Type: application/json' \
       -d '{{"name": "my script", "expiresInDays": 30}}'

Watch a job live (then type {{"action": "subscribe", "jobId": "<jobId>"}}):

  .venv/bin/python -m websockets "{stack.ws_url}?token=$TOKEN"
"""


def main() -> None:
    # Gateway access lines and handler failures (502s say why here); Powertools logs as JSON.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("infrastructure.local").setLevel(logging.INFO)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = LocalStack(
        rest_port=int(os.environ.get("LOCAL_REST_PORT", "3000")),
        ws_port=int(os.environ.get("LOCAL_WS_PORT", "3001")),
        aws_port=int(os.environ.get("LOCAL_AWS_PORT", "4566")),
        fast_retries=False,
    )
    with stack:
        user_id = _seed(stack)
        print(_instructions(stack, user_id), flush=True)
        # the template's EventBridge rules (schedule dispatcher, retention sweep), in real time
        rules = threading.Thread(target=stack.clock.follow, args=(stop,), daemon=True)
        rules.start()
        stop.wait()
        rules.join(timeout=5)
        print("Stopping...", flush=True)


if __name__ == "__main__":
    main()
