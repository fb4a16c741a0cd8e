"""`make package`: after `sam build`, check what Lambda will run.

- every function with its layers stays under Lambda's 250 MB unzipped limit (the function's
  build folder plus each layer's, as Lambda counts them);
- every built handler imports from the build output alone: a fresh interpreter without
  site-packages (-S), environment ignored (-E), its path the function's folder and the layers'
  `python/` (what Lambda puts on sys.path, /var/task and /opt/python) plus the standard library.
  A dependency missing from layers/dataport/requirements.txt fails here, not on AWS.

    python -m infrastructure.package_check [--build-dir .aws-sam/build]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from infrastructure.local.template import Template

LIMIT_BYTES = 250 * 1024 * 1024  # Lambda: function + layers, unzipped
ROOT = Path(__file__).resolve().parents[1]


def size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def import_check(function_dir: Path, layer_dirs: list[Path], module: str,
                 environment: dict[str, str]) -> str | None:
    """None when `module` imports in a clean interpreter from these folders; else the error."""
    code = ("import sys; sys.path[:0] = " + json.dumps([str(function_dir)] + [
        str(layer / "python") for layer in layer_dirs]) + f"; import {module}")
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", **environment}
    done = subprocess.run([sys.executable, "-S", "-E", "-c", code], env=env, cwd=function_dir,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ["exit status " + str(done.returncode)])[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check the sam build output")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    args = parser.parse_args(argv)
    template = Template(ROOT / "template.yaml")
    environment = template.environment()
    layer_ids = template.resources("AWS::Serverless::LayerVersion")
    layers = {lid: args.build_dir / lid for lid in layer_ids}
    problems: list[str] = []
    for lid, folder in layers.items():
        if not (folder / "python").is_dir():
            problems.append(f"{lid}: no {folder}/python (did sam build run?)")
    layer_sizes = {lid: size_of(folder) for lid, folder in layers.items() if folder.is_dir()}
    for logical_id, function in sorted(template.functions().items()):
        built = args.build_dir / logical_id
        if not built.is_dir():
            problems.append(f"{logical_id}: not built ({built})")
            continue
        total = size_of(built) + sum(layer_sizes.values())
        status = "ok" if total < LIMIT_BYTES else "TOO BIG"
        module = function.handler.rpartition(".")[0]
        error = import_check(built, list(layers.values()), module, environment)
        print(f"{logical_id:28} {total / 2**20:7.1f} MB unzipped  {status:7}  "
              f"import {module}: {'ok' if error is None else error}")
        if total >= LIMIT_BYTES:
            problems.append(f"{logical_id}: {total} bytes with its layers, over {LIMIT_BYTES}")
        if error is not None:
            problems.append(f"{logical_id}: {module} does not import from the build: {error}")
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
