"""Following a job to a state: WebSocket events when a WebSocket URL is known (the protocol:
docs/progress.md), the REST view otherwise, and a REST look whenever the socket is quiet for a
second (an import waiting for a decision sends no terminal event; a closed socket must not hang
the client).

Events are dicts as received; `seq` orders them (older or repeated ones are dropped). The token
goes in the socket URL's query, so neither the URL nor a connection error is ever printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from dataport_cli.api import Api, Json
from dataport_cli.exit_codes import CliError, ExitCode

#: statuses after which nothing more happens to a job (until a rollback runs it again)
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rolled_back", "deleted"})
QUIET_SECONDS = 1.0


def open_socket(ws_url: str | None, token: str) -> ClientConnection | None:
    """A connection, or None (then the REST view is polled). A refused token is an auth error."""
    if not ws_url:
        return None
    try:
        return connect(f"{ws_url}?{urlencode({'token': token})}", open_timeout=10, proxy=None)
    except InvalidStatus as error:
        if error.response.status_code in (401, 403):
            raise CliError(ExitCode.AUTH, "The WebSocket API refused the credential "
                                          f"({error.response.status_code}).") from None
        return None
    except (OSError, InvalidHandshake, TimeoutError):
        return None  # live events are a courtesy: the REST view still tells the state


def follow(api: Api, socket: ClientConnection | None, job_id: str, path: str, *,
           until: set[str], on_update: Callable[[Json], None],
           timeout: float | None = None, ends: frozenset[str] = TERMINAL) -> Json:
    """Events (or views) of `job_id` to `on_update` until its status is in `until` or `ends`;
    returns the last one. `path` is its REST view (/exports/ID). A rollback passes its own
    `ends`: the import it runs again had ended already."""
    deadline = None if timeout is None else time.monotonic() + timeout
    highest = -1
    if socket is not None:
        socket.send(json.dumps({"action": "subscribe", "jobId": job_id}))
    while True:
        event = _receive(socket, QUIET_SECONDS) if socket is not None else None
        if event is None:
            if socket is not None and socket.state.name == "CLOSED":
                socket = None
            else:
                time.sleep(0 if socket is not None else QUIET_SECONDS)
            view = api.call("GET", path)
            if socket is None:
                on_update(view)
            if view["status"] in until or view["status"] in ends:
                on_update(view)
                return view
        elif event.get("type") == "error":
            if event.get("jobId") in (None, job_id):
                code = ExitCode.NOT_FOUND if event.get("code") == "not_found" else ExitCode.FAILED
                raise CliError(code, str(event.get("message")))
        elif event.get("jobId") == job_id and isinstance(event.get("seq"), int) \
                and event["seq"] > highest:
            highest = event["seq"]
            on_update(event)
            if event.get("status") in until or event.get("status") in ends:
                return event
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(ExitCode.FAILED, f"Job {job_id} did not finish within {timeout:.0f} s;"
                                            f" it goes on: `dataport watch {job_id}`.")


def _receive(socket: ClientConnection, wait: float) -> dict[str, Any] | None:
    try:
        frame = socket.recv(timeout=wait)
    except TimeoutError:
        return None
    except ConnectionClosed:
        return None
    try:
        event = json.loads(frame)
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("v") == 1 else None
