"""The package's layers: each module imports only from its own layer or lower ones, and no imports go
round in a cycle. Imports under ``TYPE_CHECKING`` and inside functions count: they are arrows too.

From the top: ``cli`` parses the command line; the two modes (``run``'s ``service``, ``operator/``)
and the CLI's ``status`` wire the parts; the parts (listener, reconciler, receivers, sandbox) use the
drivers; the drivers act through the boundaries (Cattle, Kubernetes, the store, tokens); everything
stands on plain values (model, raw shapes, settings, errors).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "controller"

# Top first. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry", ("controller.cli", "controller.__main__")),
    ("modes", ("controller.service", "controller.operator", "controller.wiring", "controller.status_report")),
    (
        "parts",
        (
            "controller.listener",
            "controller.cattle.endpoint",
            "controller.reconciler",
            "controller.fold",
            "controller.receivers",
            "controller.health",
            "controller.memory",
            "controller.sandbox",
            "controller.rancher",
            "controller.status",
        ),
    ),
    ("drivers", ("controller.drivers", "controller.push_events")),
    (
        "boundaries",
        (
            "controller.cattle",
            "controller.kube",
            "controller.store",
            "controller.tokens",
            "controller.rancher.keys",
            "controller.receiver_set",
            "controller.metrics",
            "controller.backoff",
            "controller.statedir",
            "controller.statelock",
        ),
    ),
    (
        "values",
        (
            "controller",
            "controller.model",
            "controller.manifest",
            "controller.settings",
            "controller.flags",
            "controller.redact",
            "controller.logformat",
            "controller.errors",
            "controller.http_headers",
        ),
    ),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The package's modules ``path`` imports (``from pkg import mod`` is an import of ``pkg.mod``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            yield from submodules or [node.module]


def layer(module: str) -> int:
    best, depth = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "controller" and module.startswith(prefix + "."))
            if matches and len(prefix) > depth:
                best, depth = index, len(prefix)
    return best


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(path, known)) - {name} for name, path in known.items()}


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if layer(m) < 0] == []


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = [
        f"{module} ({LAYERS[layer(module)][0]}) -> {target} ({LAYERS[layer(target)][0]})"
        for module, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer(target) < layer(module)
    ]
    assert upward == []


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("module", ["controller.drivers.contract", "controller.store.base"])
def test_the_graph_sees_imports(module: str) -> None:
    assert graph()[module]  # the checks above are not vacuous
