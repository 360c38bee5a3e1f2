"""Legibility rules the project holds itself to (DESIGN.md, Conventions):
no function over 100 lines, and no function that shares its name with its own
module (so ``import sajax`` never hides a submodule behind a function)."""
import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "sajax"
FILES = sorted(SRC.rglob("*.py"))
MAX_LINES = 100


def _functions(path):
    tree = ast.parse(path.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_functions_are_short(path):
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(path)
            if f.end_lineno - f.lineno + 1 > MAX_LINES]
    assert not long, f"{path.name}: split {', '.join(long)}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_no_function_shares_its_module_name(path):
    module = path.stem.lstrip("_")
    clash = [f.name for f in _functions(path) if f.name == path.stem or (path.stem == module and f.name == module)]
    assert not clash, f"{path}: function {clash[0]!r} shares the module's name"


PUBLIC_MODULES = sorted(
    ".".join(("sajax",) + p.relative_to(SRC).with_suffix("").parts)
    for p in FILES if p.name != "__init__.py" and not any(part.startswith("_") for part in p.relative_to(SRC).parts))


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_submodules_are_not_shadowed(name):
    """After ``import sajax``, ``sajax.pkg.mod`` is the module, not a function re-exported over it."""
    import sajax  # noqa: F401  (the package import is what could shadow the module)

    module = importlib.import_module(name)
    parent, _, attr = name.rpartition(".")
    assert getattr(importlib.import_module(parent), attr) is module


def test_the_package_loads_its_names_on_first_use():
    """``import sajax`` and the light commands (``sajax list``, ``sajax launch``) import no JAX;
    every name in ``sajax.__all__`` then resolves to the object its home module defines."""
    import subprocess
    import sys

    import sajax

    code = "import sys, sajax, sajax.cli; print(sorted(m for m in ('jax', 'flax', 'distrax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import sajax loaded {out.strip()}"
    assert set(sajax.__all__) == set(sajax._SUBMODULES) | set(sajax._HOMES)
    for name in sajax.__all__:
        home = sajax._HOMES.get(name)
        value = getattr(sajax, name)
        assert value is (getattr(importlib.import_module(home), name) if home else importlib.import_module(f"sajax.{name}"))
        assert name in dir(sajax)
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        sajax.fitt  # noqa: B018


# --------------------------------------------------------------------------
# The import graph: no cycle among sajax modules, and kernels a leaf.

KERNEL_FORBIDDEN = ("sajax.models", "sajax.estimators", "sajax.sa", "sajax.evaluate", "sajax.diagnostics",
                    "sajax.recipes", "sajax.cli")


def package_modules(root=SRC):
    """``{dotted module name: path}`` of every module under the package directory ``root``."""
    def name(path):
        parts = path.relative_to(root).with_suffix("").parts
        return ".".join((root.name,) + (parts[:-1] if parts[-1] == "__init__" else parts))

    return {name(p): p for p in sorted(root.rglob("*.py"))}


def _under(name, package):
    return name == package or name.startswith(package + ".")


def _owner(name, modules):
    """The module that ``name`` (a dotted import target) loads: its longest known prefix."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node, module, path, modules):
    """Dotted names an ``import`` / ``from ... import`` node loads, as seen from ``module``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1 packages
        package = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
        package = ".".join(package[:len(package) - node.level + 1])
        base = f"{package}.{base}" if base else package
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph(modules):
    """``{module: {modules of the package it imports}}``, from module- AND function-level imports.

    ``from pkg import name`` counts as an import of the submodule ``pkg.name``
    when there is one, else of ``pkg`` itself.
    """
    graph = {}
    for module, path in modules.items():
        nodes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]
        owners = {_owner(t, modules) for n in nodes for t in _targets(n, module, path, modules)}
        graph[module] = owners - {None, module}
    return graph


def strongly_connected(graph):
    """Tarjan's strongly connected components of ``{node: successors}`` with more than one node."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:  # v is the root of a component: pop it off the stack
            component = set()
            while v not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_strongly_connected_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": set(), "f": {"f"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_graph_finds_a_cycle_through_a_function_level_import(tmp_path):
    """A tiny package: ``pkg.a`` imports ``pkg.b`` inside a function (``from pkg import b``, a
    submodule), ``pkg.b`` imports a name of ``pkg.a`` at module level; ``pkg`` imports both."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg import a\nfrom pkg.sub import c\n")
    (pkg / "a.py").write_text("import jax\n\n\ndef f():\n    from pkg import b\n    return b.g\n")
    (pkg / "b.py").write_text("from pkg.a import f\nfrom . import sub\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..a import f\n")
    graph = import_graph(package_modules(pkg))
    assert graph == {"pkg": {"pkg.a", "pkg.sub.c"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a", "pkg.sub"},
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.a"}}
    assert strongly_connected(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_among_sajax_modules():
    cycles = strongly_connected(import_graph(package_modules()))
    assert not cycles, "import cycles (each a set of modules that import one another): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_kernels_are_a_leaf():
    """``sajax.kernels`` imports no model, estimator, driver, evaluation, recipe or CLI module."""
    graph = import_graph(package_modules())
    bad = sorted(f"{m} imports {d}" for m, deps in graph.items() if _under(m, "sajax.kernels")
                 for d in deps if d == "sajax" or any(_under(d, f) for f in KERNEL_FORBIDDEN))
    assert not bad, "; ".join(bad)


RECIPE_LAYER = ("recipes.py", "_recipe_build.py", "_recipe_eval.py", "_pieces.py", "cli.py")
_NAME_VARS = {"name", "model", "estimator", "factory_name"}


def _is_name_of_piece(node) -> bool:
    """``cfg["model"]`` / ``cfg.get("estimator")`` / a variable called ``name``, ``model``, ..."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value in ("model", "estimator")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
        return isinstance(node.args[0], ast.Constant) and node.args[0].value in ("model", "estimator")
    return isinstance(node, ast.Name) and node.id in _NAME_VARS


def _is_string_literal(node) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_is_string_literal(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def name_dispatches(source: str) -> list:
    """Lines that compare a model's or an estimator's name with a literal (``if name == "pcd"``)."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Compare)
                  and any(_is_name_of_piece(a) and _is_string_literal(b) or _is_name_of_piece(b) and _is_string_literal(a)
                          for a, b in zip([n.left] + n.comparators[:-1], n.comparators)))


def test_name_dispatch_check_catches_the_old_if_chains():
    old = ('if cfg["model"] == "flow-vae":\n    pass\nif name in ("gan", "ns-gan"):\n    pass\n'
           'if cfg.get("estimator") != "jsa":\n    pass\nif entry.latent == "continuous":\n    pass\n')
    assert name_dispatches(old) == [1, 3, 5]


@pytest.mark.parametrize("name", RECIPE_LAYER)
def test_recipe_layer_has_no_name_dispatch(name):
    """Every family, model and estimator is a table entry: no ``if name == "..."`` in the recipe layer."""
    lines = name_dispatches((SRC / name).read_text())
    assert not lines, f"{name}: lines {lines} branch on a model's or estimator's name; make it a table field"
