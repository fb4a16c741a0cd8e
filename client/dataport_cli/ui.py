"""What a person sees (rich: live bars, tables) and what a script reads (`--json`: one JSON
document on stdout, nothing else). Bars are live on a terminal; elsewhere only their last state
is written."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from dataport_cli.api import Json


@dataclass
class Output:
    json: bool
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))

    @property
    def interactive(self) -> bool:
        """A person at a terminal (then commands wait and draw bars by default)."""
        return sys.stdout.isatty() and not self.json

    def say(self, *lines: Any) -> None:
        """Words for a person (nothing in --json mode)."""
        if not self.json:
            for line in lines:
                self.out.print(line)

    def table(self, table: Table) -> None:
        if not self.json:
            self.out.print(table)

    def document(self, data: Any) -> None:
        """The one machine-readable answer (--json mode only)."""
        if self.json:
            print(json.dumps(data, indent=2, sort_keys=True))

    @contextmanager
    def job_bar(self, label: str) -> Iterator[JobBar]:
        bar = JobBar(label, self.out, disabled=self.json)
        with bar.progress:
            yield bar

    @contextmanager
    def byte_bar(self, label: str) -> Iterator[ByteBar]:
        bar = ByteBar(label, self.out, disabled=self.json)
        with bar.progress:
            yield bar


class JobBar:
    """phase, bar, %, sessions, bytes written, rate, ETA (the server's etaSeconds)."""

    def __init__(self, label: str, console: Console, *, disabled: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), TextColumn("{task.fields[phase]:<10}"),
            BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[items]}"),
            TextColumn("{task.fields[size]}"), TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console, disable=disabled, refresh_per_second=8)
        self.task: TaskID = self.progress.add_task(label, total=100, phase="queued", items="",
                                                   size="", rate="", eta="-:--:--")
        self._first: tuple[float, int] | None = None

    def update(self, state: Json) -> None:
        """From an event or a REST view (both carry status and progress)."""
        progress: dict[str, Any] = state.get("progress") or {}
        written = int(progress.get("bytes") or 0)
        now = time.monotonic()
        if self._first is None:
            self._first = (now, written)
        started, at_start = self._first
        rate = (written - at_start) / (now - started) if now - started > 0.5 else 0.0
        current, total = progress.get("current", 0), progress.get("total", 0)
        done = state.get("status") == "succeeded" or progress.get("phase") == "done"
        eta = progress.get("etaSeconds")
        self.progress.update(
            self.task, completed=100 if done else float(progress.get("percentage") or 0),
            phase=str(progress.get("phase") or state.get("status") or ""),
            items=f"{current}/{total}" if total else "",
            size=decimal(written) if written else "", rate=f"{decimal(int(rate))}/s" if rate
            else "", eta="0:00:00" if done else _clock(eta) if isinstance(eta, int) else "-:--:--")


class ByteBar:
    def __init__(self, label: str, console: Console, *, disabled: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=console, disable=disabled, refresh_per_second=8)
        self.task = self.progress.add_task(label, total=None)

    def advance(self, count: int, total: int | None) -> None:
        self.progress.update(self.task, advance=count, total=total)


def _clock(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def size(value: int | None) -> str:
    return "-" if value is None else decimal(value)
