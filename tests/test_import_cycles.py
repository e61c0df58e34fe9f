"""No import cycle inside the package: walk every module's top-level imports (the ones
that run at import time) and look for a cycle. Imports inside functions are how cycles
used to hide (the structure review's C1-C4); test_format_registry checks that the
formats / ops / nn / conversion / export side has none."""

from __future__ import annotations

import ast
import pathlib

import pysparse

ROOT = pathlib.Path(pysparse.__file__).parent


def module_name(path: pathlib.Path) -> str:
    parts = ["pysparse", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def extensions() -> set[str]:
    """Compiled modules (``_core``): leaves of the graph."""
    return {module_name(p.with_name(p.name.split(".")[0] + ".py")) for p in ROOT.rglob("*.so")} | {"pysparse._core"}


def top_level_imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports when it is imported (module-level statements,
    including those inside module-level if/try blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop(0)
        if isinstance(node, (ast.If, ast.Try)):
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
                continue
            body += node.body + getattr(node, "orelse", []) + [s for h in getattr(node, "handlers", []) for s in h.body]
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    return out - {name}


def test_walker_resolves_relative_imports():
    known = set(modules()) | extensions()
    got = top_level_imports("pysparse.formats.csr", ROOT / "formats" / "csr.py", known)
    assert {"pysparse._checks", "pysparse._core", "pysparse.formats.base", "pysparse._arrays"} <= got
    assert "pysparse" not in got  # `from .. import _core` is an edge to _core, not to the package
    got = top_level_imports("pysparse", ROOT / "__init__.py", known)
    assert {"pysparse.formats", "pysparse.ops"} <= got


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    mods = modules()
    known = set(mods) | extensions()
    graph = {name: top_level_imports(name, path, known) for name, path in mods.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
