"""The package's layering: no import loop and no module importing from a layer above its own.

Every import of ``esrt_lit`` in the source counts, function-level ones included (they run too).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import esrt_lit

ROOT = Path(esrt_lit.__file__).parent

#: Bottom to top; a module may import from its own layer and those below. A package (``data``) is one
#: unit; top-level modules are named alone.
LAYERS: list[set[str]] = [
    {"esrt_lit", "errors", "files", "paths", "_lazy"},
    {"runs", "cli"},
    {"metrics", "profiling", "wandb_offline", "reference"},
    {"data"},
    {"models"},
    {"config_schema", "configs", "training", "inference", "evaluation"},
    {"train", "eval", "upscale", "export", "report", "demo", "bench"},
]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] in ("__init__", "__main__") else parts)


def _imports() -> dict[str, set[str]]:
    """``module -> esrt_lit modules it imports`` for every module of the package."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        here = _module(path)
        graph[here]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            graph[here].update(n for n in names if n == "esrt_lit" or n.startswith("esrt_lit."))
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "esrt_lit"


def _layer(module: str) -> int:
    unit = _unit(module)
    found = [i for i, layer in enumerate(LAYERS) if unit in layer]
    assert found, f"{module}: not placed in a layer of tests/test_layers.py"
    return found[0]


def test_every_module_has_a_layer() -> None:
    for module in _imports():
        _layer(module)


def test_no_module_imports_from_a_layer_above() -> None:
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in _imports().items()
        for b in targets
        if _layer(b) > _layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_loop() -> None:
    graph = _imports()
    # a package's __init__ is its own node: importing esrt_lit.data.io runs esrt_lit.data first
    state: dict[str, int] = {}
    loops: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                loops.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not loops, "\n".join(" -> ".join(loop) for loop in loops)


def test_the_layers_test_sees_imports() -> None:
    """The checks above cannot pass vacuously: the graph holds the imports every command makes."""
    graph = _imports()
    assert "esrt_lit.cli" in graph["esrt_lit.train"]
    assert "esrt_lit.models.checkpoint" in graph["esrt_lit.evaluation"]
