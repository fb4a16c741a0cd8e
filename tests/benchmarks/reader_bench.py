"""Reader CPU benchmark: the dataport JSON reader and validation, in process, over one file.

    PYTHONPATH=layers/dataport .venv/bin/python -m tests.benchmarks.reader_bench [--mb 30]

Process CPU time (not wall time: these machines are shared, and CPU time of one process is
barely affected by the others), best of `--repeat`, for the same file the import ratio uses
(import_bench.write_input): `json_util.loads` of the whole file (the raw import's parse), the
reader's records alone, and `validate` (reader + per-record checks) without a sink.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

from bson import json_util

import infrastructure.local  # noqa: F401 (puts the layer on sys.path)
from dataport.formats.common import EXTENDED_JSON_READ_OPTIONS
from dataport.imports.detect import open_import
from dataport.imports.validate import validate
from tests.benchmarks.import_bench import MB, write_input


def _cpu(function: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path, default=None,
                        help="reuse (or write once) the input here")
    args = parser.parse_args(argv)
    path = args.file or Path(f"/tmp/reader-bench-{args.mb:g}mb.json")
    if not path.exists():
        write_input(path, int(args.mb * MB))
    data = path.read_bytes()

    def opener() -> io.BytesIO:
        return io.BytesIO(data)

    def raw() -> object:
        return json_util.loads(data, json_options=EXTENDED_JSON_READ_OPTIONS)

    def reader() -> int:
        source = open_import(opener, path.name, None, None)
        return sum(1 for _ in source.records())

    def validation() -> object:
        return validate(opener, path.name)

    records = reader()
    print(f"{path} {len(data) / MB:.1f} MB, {records:,} records")
    for name, function in (("json_util.loads", raw), ("reader", reader),
                           ("validate", validation)):
        print(f"{name:16} {_cpu(function, args.repeat):6.2f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
