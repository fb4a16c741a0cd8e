"""The checks `make package` runs on the sam build output (the build itself is not run here:
it installs the layer from PyPI). A handler that needs something the build lacks must fail."""

from __future__ import annotations

from pathlib import Path

from infrastructure.package_check import import_check, size_of


def _build(tmp_path: Path, handler: str, layer_module: str | None = None) -> tuple[Path, Path]:
    function, layer = tmp_path / "Fn", tmp_path / "Layer"
    function.mkdir()
    (layer / "python").mkdir(parents=True)
    (function / "handler.py").write_text(handler)
    if layer_module:
        (layer / "python" / f"{layer_module}.py").write_text("VALUE = 1\n")
    return function, layer


def test_a_handler_importing_from_its_layer_passes(tmp_path: Path) -> None:
    function, layer = _build(tmp_path, "import os\nimport shared\nassert os.environ['X'] == '1'\n",
                             layer_module="shared")
    assert import_check(function, [layer], "handler", {"X": "1"}) is None


def test_a_handler_needing_what_only_the_dev_environment_has_fails(tmp_path: Path) -> None:
    """pytest is installed where the tests run, never in a build: site-packages are not used."""
    function, layer = _build(tmp_path, "import pytest\n")
    error = import_check(function, [layer], "handler", {})
    assert error is not None
    assert "No module named 'pytest'" in error


def test_sizes_count_every_file(tmp_path: Path) -> None:
    function, layer = _build(tmp_path, "x = 1\n", layer_module="shared")
    (layer / "python" / "blob.bin").write_bytes(bytes(10_000))
    assert size_of(layer) == 10_000 + len("VALUE = 1\n")
    assert size_of(function) == len("x = 1\n")
