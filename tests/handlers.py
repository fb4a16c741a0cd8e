"""Load a Lambda's `functions/<name>/handler.py` by file path.

Every function folder has a `handler.py` (the CodeUri convention), so importing them as a
top-level `handler` module would make them overwrite each other in `sys.modules`. Each is loaded
under its own flat name instead, `dataport_fn_<name>` (see `module_name`), which is also what
`unittest.mock.patch("dataport_fn_<name>.attr")` / `monkeypatch.setattr` by string resolve.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"


def module_name(function_dir_name: str) -> str:
    """The unique `sys.modules` name a function's handler is loaded under."""
    return "dataport_fn_" + re.sub(r"\W", "_", function_dir_name)


def load_handler(function_dir_name: str, *, fresh: bool = False) -> ModuleType:
    """Import `functions/<function_dir_name>/handler.py` once (again with `fresh=True`)."""
    name = module_name(function_dir_name)
    if not fresh and name in sys.modules:
        return sys.modules[name]
    path = FUNCTIONS_DIR / function_dir_name / "handler.py"
    if not path.is_file():
        raise FileNotFoundError(f"no handler at {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing, as a normal import does: dataclasses, pydantic models and
    # `from __future__ import annotations` resolve their module through sys.modules.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
