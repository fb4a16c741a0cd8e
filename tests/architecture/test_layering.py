"""One direction of imports: handlers -> api / workflows -> domain -> adapters -> base.

Every module under layers/dataport/dataport and functions/ is parsed (ast, nothing imported),
mapped to its layer by the table below (the longest matching prefix wins), and each of its
imports of a dataport module must point at a layer below its own (or stay inside its own
package). The AWS client factory is for adapters only. No two packages may import each
other, however indirectly. docs/architecture.md draws the same table.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "dataport"
FUNCTIONS = ROOT / "functions"

HANDLERS, LOGIC, DOMAIN, ADAPTERS, CLIENTS, BASE = 5, 4, 3, 2, 1, 0
LAYER_NAMES = {HANDLERS: "handlers", LOGIC: "api / workflows", DOMAIN: "domain",
               ADAPTERS: "adapters", CLIENTS: "AWS client factory", BASE: "base"}

#: module prefix -> layer (the longest prefix wins). A module may import its own layer and the
#: layers below it, never one above.
LAYERS: dict[str, int] = {
    "functions": HANDLERS,
    "dataport.api": LOGIC,
    "dataport.workflows": LOGIC,
    "dataport.auth": LOGIC,  # the authorizer's and the REST API's principal
    "dataport.scheduling": LOGIC,  # schedule routes, the dispatcher's tick, the retention sweep
    "dataport.formats": DOMAIN,
    "dataport.imports": DOMAIN,
    "dataport.packaging": DOMAIN,
    "dataport.progress": DOMAIN,
    "dataport.schedules": DOMAIN,  # when schedules fire, what a tick decides, what expires
    "dataport.backups": DOMAIN,  # the backup format, writer and container reader
    "dataport.progress.connections": ADAPTERS,  # the connection store (DynamoDB, @connections)
    "dataport.source": ADAPTERS,
    "dataport.jobs": ADAPTERS,  # job store, rate limits, idempotency records, sealed passwords
    "dataport.bucket": ADAPTERS,
    "dataport.engine": ADAPTERS,
    "dataport.api_key_store": ADAPTERS,
    "dataport.schedule_store": ADAPTERS,
    "dataport.backups.catalog": ADAPTERS,  # the backups' catalog records (DynamoDB)
    "dataport.aws": CLIENTS,
    "dataport.models": BASE,
    "dataport.settings": BASE,
    "dataport.errors": BASE,
    "dataport.observability": BASE,
    "dataport.heap": BASE,  # the garbage collector during a long task
    "dataport": BASE,  # dataport/__init__.py
}

#: the one boto3 client factory: only adapters build clients
CLIENT_FACTORY = "dataport.aws"

def layer_of(module: str) -> int:
    best = max((prefix for prefix in LAYERS
                if module == prefix or module.startswith(prefix + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return LAYERS[best]


def package_of(module: str) -> str:
    """`dataport.imports.readers.csv_reader` -> `dataport.imports`; a handler is its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in {"dataport", "functions"} else module


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((PACKAGE / "dataport").rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path
    for path in sorted(FUNCTIONS.rglob("*.py")):
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported dataport module, line) for every import, TYPE_CHECKING ones included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from dataport import aws` names a module; `from x.y import Name` names x.y
            names = [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == "dataport" or name.startswith("dataport."):
                yield name, node.lineno


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return ((PACKAGE / relative).with_suffix(".py").is_file()
            or (PACKAGE / relative / "__init__.py").is_file())


def edges() -> Iterator[tuple[str, str, str]]:
    """(importer, imported, where) for every import of a dataport module."""
    for module, path in modules():
        for imported, line in imports_of(module, path):
            yield module, imported, f"{path.relative_to(ROOT)}:{line}"


def test_every_import_points_down() -> None:
    wrong = sorted({f"{where}: {module} ({LAYER_NAMES[layer_of(module)]}) imports {imported} "
                    f"({LAYER_NAMES[layer_of(imported)]})"
                    for module, imported, where in edges()
                    if layer_of(imported) > layer_of(module)})
    assert not wrong, "imports that point up:\n" + "\n".join(wrong)


def test_only_adapters_build_aws_clients() -> None:
    wrong = [f"{where}: {module} imports the client factory"
             for module, imported, where in edges()
             if imported == CLIENT_FACTORY and layer_of(module) != ADAPTERS]
    assert not wrong, "AWS clients outside the adapters:\n" + "\n".join(wrong)


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imported, _ in edges():
        source, target = package_of(module), package_of(imported)
        if source != target:
            graph[source].add(target)
    cycles = sorted({" -> ".join(cycle) for cycle in _cycles(graph) if cycle[0] == min(cycle)})
    assert not cycles, "package import cycles:\n" + "\n".join(cycles)


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """One cycle through each package that reaches itself again."""
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    yield [*path, start]
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))


def test_the_table_knows_every_module() -> None:
    for module, _ in modules():
        layer_of(module)
