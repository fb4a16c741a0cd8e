"""The `dataport` command-line client (client/) run against a local stack, as the demo uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infrastructure.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


def dataport(stack: LocalStack, user_id: str, *args: str) -> int:
    """Run the `dataport` CLI as `user_id` against the local stack, on this terminal (its bars
    draw live). The credential travels in the environment, never on the command line."""
    env = {**os.environ, "DATAPORT_API_URL": stack.rest_url, "DATAPORT_WS_URL": stack.ws_url,
           "DATAPORT_TOKEN": stack.token_for(user_id),
           "DATAPORT_CONFIG": str(ROOT / "out" / ".no-config.json"),
           # the client from the checkout, installed or not
           "PYTHONPATH": os.pathsep.join([str(ROOT / "client"), os.environ.get("PYTHONPATH", "")])}
    print(f"$ dataport {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "dataport_cli", *args], env=env,
                          check=False).returncode
