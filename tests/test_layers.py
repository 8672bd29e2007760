"""The import graph (module and function level, read with ast) has no cycles and flows one way:

    app  >  training  >  composition (core.cli, core.pipeline.cli, core.batch.cli)  >  trackers  >  core

A module may import its own layer or a lower one. ``core.cli`` is the composition root (command
dispatch, ``build_post_steps``); ``core.pipeline.cli`` (the ``run`` command) sits with it because
it runs the composed pipeline; ``core.batch.cli`` (the ``batch`` command) for the same reason. A
package importing its own submodules through its ``__init__`` (re-exports) is not a cycle.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from core import PROJECT_ROOT

PACKAGES = ("core", "trackers", "training", "app")
COMPOSITION = {"core.cli", "core.pipeline.cli", "core.batch.cli"}
RANK = {"core": 0, "trackers": 1, "composition": 2, "training": 3, "app": 4}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                hit = resolve(target)
                if hit and hit != mod:
                    graph[mod].add(hit)
    return graph


def _layer(mod: str) -> str:
    return "composition" if mod in COMPOSITION else mod.split(".")[0]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _benign(comp: list[str]) -> bool:
    top = min(comp, key=len)
    return all(m == top or m.startswith(top + ".") for m in comp)


def test_the_walk_sees_the_known_edges():
    graph = _graph(_modules())
    assert "core.poses" in graph["trackers.tracker"]  # module level
    assert "trackers" in graph["core.cli"]  # function level, inside build_post_steps


def test_no_import_cycles():
    cycles = [c for c in _cycles(_graph(_modules())) if not _benign(c)]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_layers_import_only_downwards():
    graph = _graph(_modules())
    upward = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                    if RANK[_layer(t)] > RANK[_layer(m)])
    assert not upward, "imports against the layer order app > training > composition > trackers > core: " \
        + ", ".join(upward)


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
