"""A client of the live-progress WebSocket API, as a script would use it (`make demo`, tests).

    with ProgressSocket(stack.ws_url, token) as socket:
        socket.subscribe(job_id)
        for event in socket.follow(job_id):
            ...

`follow` applies the protocol's rules (docs/progress.md): events whose seq is not above the
highest seen are dropped, and the stream ends with the terminal event or with a snapshot that
already shows the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from websockets.sync.client import ClientConnection, connect

from dataport.models.jobs import JobStatus
from dataport.progress.events import (
    TERMINAL_EVENTS,
    ErrorEvent,
    Event,
    JobEvent,
    SnapshotEvent,
    UnsubscribedEvent,
    parse_event,
)

__all__ = ["ProgressError", "ProgressSocket", "is_end"]


def is_end(event: JobEvent) -> bool:
    """The terminal event, or a snapshot of a job that has already ended."""
    if isinstance(event, SnapshotEvent):
        return event.status in TERMINAL_EVENTS or event.status is JobStatus.DELETED
    return event.type in TERMINAL_EVENTS.values()


class ProgressSocket:
    def __init__(self, url: str, token: str | None, *, open_timeout: float = 10) -> None:
        """`token`: a JWT or API key, sent as ?token= (browsers cannot set headers here)."""
        query = "" if token is None else f"?{urlencode({'token': token})}"
        self.connection: ClientConnection = connect(f"{url}{query}", open_timeout=open_timeout,
                                                    proxy=None, legacy=True)

    def __enter__(self) -> ProgressSocket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def send(self, message: dict[str, Any] | str) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def subscribe(self, job_id: str) -> None:
        self.send({"action": "subscribe", "jobId": job_id})

    def unsubscribe(self, job_id: str) -> None:
        self.send({"action": "unsubscribe", "jobId": job_id})

    def receive(self, timeout: float | None = 10) -> Event:
        """The next frame (TimeoutError when none comes in time)."""
        return parse_event(self.connection.recv(timeout=timeout))

    def follow(self, job_id: str, timeout: float = 300) -> Iterator[JobEvent]:
        """`job_id`'s events in seq order, duplicates dropped, until its end; an error frame
        (say, not your job) raises ProgressError."""
        deadline = time.monotonic() + timeout
        highest = -1
        while True:
            event = self.receive(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, ErrorEvent):
                if event.job_id in (None, job_id):
                    raise ProgressError(event.code, event.message)
                continue
            if isinstance(event, UnsubscribedEvent) or event.job_id != job_id \
                    or event.seq <= highest:
                continue
            highest = event.seq
            yield event
            if is_end(event):
                return


class ProgressError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
