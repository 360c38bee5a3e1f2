"""Legibility rules the project holds itself to (DESIGN.md, Conventions):
no function over 100 lines, and no function that shares its name with its own
module (so ``import sajax`` never hides a submodule behind a function)."""
import ast
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
    import importlib

    import sajax  # noqa: F401  (the package import is what could shadow the module)

    module = importlib.import_module(name)
    parent, _, attr = name.rpartition(".")
    assert getattr(importlib.import_module(parent), attr) is module
