"""The installed package's import graph has no cycles, and no public name is both a
module and a callable.

The graph is read from the source with ``ast``, so an import written inside a
function (the usual way a cycle is kept alive) counts as much as one at the top.
Every ``import`` / ``from ... import`` statement is an edge to the pysparse module
it names: relative imports are resolved against the importing module's package,
``from . import x`` is an edge to the submodule ``x`` when there is one (else to
the package), and imports of anything outside pysparse are ignored. Parent
packages are not counted as edges (importing ``pysparse.prune.masks`` runs
``pysparse.prune``'s ``__init__``, but every package would then be a cycle with
its own submodules).

``KNOWN_CYCLES`` / ``KNOWN_CLASHES`` list what today's tree still has. The tests
assert that what is found equals them exactly: a new cycle fails, and so does a
known one that has gone (delete it from the set in the change that removes it).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import types
from pathlib import Path

import pytest

# Each cycle is written from its smallest module name, in import order.
KNOWN_CYCLES: set[tuple[str, ...]] = set()  # C1-C3 are gone; keep it empty
# Names that are both a submodule and a callable (C4, ps.convert, is gone too).
KNOWN_CLASHES: set[str] = set()


def package_root() -> Path:
    spec = importlib.util.find_spec("pysparse")
    assert spec is not None and spec.submodule_search_locations, "pysparse is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def module_files(root: Path) -> dict[str, Path | None]:
    """{module name: its .py file (None for a compiled extension)} for the whole package."""
    out: dict[str, Path | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if path.suffix == ".py":
            parts = rel.with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        else:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                if path.name.endswith(suffix):
                    out[".".join(rel.parts)[: -len(suffix)]] = None
                    break
    return out


def _owner(name: str, modules: dict[str, Path | None]) -> str:
    """The deepest known module that ``name`` is or is inside of."""
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def _without_type_checking(tree: ast.AST) -> ast.AST:
    """The tree less its ``if TYPE_CHECKING:`` blocks: imports there never run."""

    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt]:
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                return [self.visit(n) for n in node.orelse]
            return self.generic_visit(node)

    return Strip().visit(tree)


def imports_of(module: str, path: Path, modules: dict[str, Path | None], nodes: list[ast.AST] | None = None) -> set[str]:
    """The pysparse modules ``module`` imports, anywhere in its source (or in ``nodes`` of it)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if nodes is None:
        nodes = [_without_type_checking(ast.parse(path.read_text(), str(path)))]
    out: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            out |= {_owner(a.name, modules) for a in node.names if a.name.split(".")[0] == "pysparse"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pysparse":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.add(sub if sub in modules else _owner(target, modules))
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = module_files(package_root())
    return {m: imports_of(m, p, modules) for m, p in modules.items() if p is not None}


def simple_cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Every elementary cycle, each written from its smallest node (the graph is small)."""
    found: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        while stack:
            node, nexts = stack[-1]
            for nxt in nexts:
                if nxt == start:
                    found.add(tuple(path))
                elif nxt > start and nxt not in path and nxt in graph:
                    path.append(nxt)
                    stack.append((nxt, iter(sorted(graph[nxt]))))
                    break
            else:
                stack.pop()
                path.pop()
    return found


def _show(cycles: set[tuple[str, ...]]) -> str:
    return "\n".join("  " + " -> ".join((*c, c[0])) for c in sorted(cycles)) or "  (none)"


def test_resolver_reads_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "pysparse"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\nfrom .sub import b as _b\n")
    (pkg / "a.py").write_text("import numpy\ndef f():\n    from .sub.b import g\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a, VERSION\nimport pysparse.sub.b.x\n")
    modules = module_files(pkg)
    assert set(modules) == {"pysparse", "pysparse.a", "pysparse.sub", "pysparse.sub.b"}
    got = {m: imports_of(m, p, modules) for m, p in modules.items()}
    assert got == {
        "pysparse": {"pysparse.a", "pysparse.sub.b"},
        "pysparse.a": {"pysparse.sub.b"},  # inside a function, still an edge
        "pysparse.sub": set(),
        "pysparse.sub.b": {"pysparse.a", "pysparse"},  # VERSION is no module: the package
    }
    assert simple_cycles(got) == {
        ("pysparse", "pysparse.sub.b"),
        ("pysparse", "pysparse.a", "pysparse.sub.b"),
        ("pysparse.a", "pysparse.sub.b"),
    }


def test_no_import_cycles_beyond_the_known_ones():
    assert "pysparse._core" in module_files(package_root())  # the walk sees compiled modules too
    graph = import_graph()
    assert "pysparse.prune.pruner" in graph and "pysparse._core" in graph["pysparse"]
    found = simple_cycles(graph)
    new, gone = found - KNOWN_CYCLES, KNOWN_CYCLES - found
    assert not new and not gone, (
        f"import cycles in pysparse:\n{_show(found)}\n"
        f"new (break them):\n{_show(new)}\ngone (delete them from KNOWN_CYCLES):\n{_show(gone)}"
    )


def _clashes() -> set[str]:
    clashes = set()
    modules = module_files(package_root())
    for name in sorted(modules):
        parent, _, leaf = name.rpartition(".")
        if not parent or leaf.startswith("_"):
            continue
        module = importlib.import_module(name)
        package = importlib.import_module(parent)
        exported = leaf in getattr(package, "__all__", ())
        if callable(module) or callable(getattr(package, leaf, None)) or (
            exported and not isinstance(getattr(package, leaf), types.ModuleType)
        ):
            clashes.add(name)
    return clashes


def test_no_public_name_is_both_a_module_and_a_callable():
    pytest.importorskip("torch")  # the torch-side modules are imported to look at them
    found = _clashes()
    assert found == KNOWN_CLASHES, (
        f"names that are both a module and a callable: {sorted(found)}; "
        f"new (rename the module, e.g. to _name.py): {sorted(found - KNOWN_CLASHES)}; "
        f"gone (delete them from KNOWN_CLASHES): {sorted(KNOWN_CLASHES - found)}"
    )


def test_prune_masks_imports_nothing_from_prune():
    """The mask is the bottom of prune/: the criteria and the pruner import it, never the reverse."""
    graph = import_graph()
    assert graph["pysparse.prune.importance"] >= {"pysparse.prune.masks"}
    assert not {m for m in graph["pysparse.prune.masks"] if m.startswith("pysparse.prune")}


def _function_level_imports(module: str, path: Path, modules: dict[str, Path | None]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return imports_of(module, path, modules, functions)


def test_training_side_imports_its_package_modules_at_the_top():
    """prune/, distill/ and fold.py import other pysparse modules only at module level."""
    modules = module_files(package_root())
    training = ("pysparse.prune", "pysparse.distill", "pysparse.fold")
    inside = {
        name: _function_level_imports(name, path, modules)
        for name, path in modules.items()
        if path is not None and ".".join(name.split(".")[:2]) in training
    }
    assert "pysparse.prune.importance" in inside
    assert not any(inside.values()), {k: v for k, v in inside.items() if v}
