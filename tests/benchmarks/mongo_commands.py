"""MongoDB commands counted per (command, collection), for the benchmarks' profiles.

`CommandTally` is a pymongo `CommandListener` registered globally (every client made after
`start()` reports to it): how many of each command went out and the sum of their round trips
(`duration_micros`, as the client sees them: on the local stack that includes the wait for the
single-threaded nx-27017 and for the GIL, so it is longer than the server's own time). With
MONGO_COMMANDS=<directory>, import_probe.py writes each task's tally to
<directory>/<task>-<pid>.json and backup_bench.py sums them per task.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

from pymongo import monitoring

#: commands whose first field is not a collection name
_NO_COLLECTION = {"getMore": "collection", "killCursors": None, "endSessions": None,
                  "ping": None, "hello": None, "isMaster": None, "ismaster": None}


class CommandTally(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def start(self) -> CommandTally:
        monitoring.register(self)
        return self

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command_name
        field = _NO_COLLECTION.get(command, command)
        collection = event.command.get(field) if field else None
        name = f"{command} {collection}" if isinstance(collection, str) else command
        with self._lock:
            self._names[event.request_id] = name

    def _ended(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent
               ) -> None:
        with self._lock:
            name = self._names.pop(event.request_id, event.command_name)
            self.counts[name] += 1
            self.seconds[name] += event.duration_micros / 1e6

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: {"count": self.counts[name], "seconds": round(self.seconds[name], 4)}
                    for name in self.counts}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict()))


def summed(folder: Path) -> dict[str, dict[str, dict[str, float]]]:
    """The tallies under `folder`, summed per task (the file name's part before the pid)."""
    tasks: dict[str, dict[str, dict[str, float]]] = {}
    for path in sorted(folder.glob("*.json")):
        task = path.stem.rsplit("-", 1)[0]
        into = tasks.setdefault(task, {})
        for name, figures in json.loads(path.read_text()).items():
            entry = into.setdefault(name, {"count": 0, "seconds": 0.0})
            entry["count"] += figures["count"]
            entry["seconds"] += figures["seconds"]
    return tasks


def render(tasks: dict[str, dict[str, dict[str, float]]], top: int = 8) -> list[str]:
    lines = []
    for task, commands in tasks.items():
        total = sum(c["count"] for c in commands.values())
        seconds = sum(c["seconds"] for c in commands.values())
        lines.append(f"  {task}: {total:,.0f} commands, {seconds:.1f} s of round trips")
        for name, figures in sorted(commands.items(), key=lambda item: -item[1]["seconds"])[:top]:
            lines.append(f"    {name:<45} {figures['count']:>8,.0f}  {figures['seconds']:8.2f} s")
    return lines
