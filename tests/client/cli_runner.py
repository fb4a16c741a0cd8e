"""The `dataport` CLI run as a person's shell runs it: a separate process talking HTTP and
WebSocket to the local stack, the credential in its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrastructure.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli_env(stack: LocalStack, token: str, home: Path) -> dict[str, str]:
    """A clean environment: the URLs, the credential, a config file of its own."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT / "client"), "DATAPORT_API_URL": stack.rest_url,
            "DATAPORT_WS_URL": stack.ws_url, "DATAPORT_TOKEN": token,
            "DATAPORT_CONFIG": str(home / "config.json"), "COLUMNS": "120"}


def dataport(env: dict[str, str], *args: str, stdin: str | None = None,
             timeout: float = 180) -> Run:
    """Run `dataport ARGS`; the credential never appears in what it printed."""
    done = subprocess.run([sys.executable, "-m", "dataport_cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, input=stdin, check=False)
    token = env.get("DATAPORT_TOKEN")
    if token:
        assert token not in done.stdout, "the credential leaked"
        assert token not in done.stderr, "the credential leaked"
    return Run(done.returncode, done.stdout, done.stderr)
