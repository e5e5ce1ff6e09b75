"""The package's layout keeps the rules that make it readable, checked on its source.

* Helpers shared between modules live in private modules (``_validation``, ``_linalg``,
  ``_convops``, ``_sgd``, ...) and are imported by their public names; no module
  reaches into another public module for an underscore name.
* No function is longer than 100 lines, ``def`` to last line.
* Every public dataclass is frozen: results and layers are values.
"""

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest
from _public_api import PUBLIC_MODULES

import regtheory

PACKAGE = Path(regtheory.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 100


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_module(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_public(module: str) -> bool:
    return module.startswith("regtheory") and not any(
        part.startswith("_") for part in module.split(".")
    )


def test_the_source_tree_is_found():
    assert len(SOURCES) > 20


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_underscore_names_from_public_modules(path):
    here = _module_name(path)
    tree = ast.parse(path.read_text())
    crossings, public_modules = [], set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _imported_module(node, here, path.name == "__init__.py")
        if not _is_public(source) or source == here:
            continue
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if _is_module(submodule):
                if _is_public(submodule):  # `from . import conv`: watch conv._name below
                    public_modules.add(alias.asname or alias.name)
            elif _private(alias.name):
                crossings.append(submodule)
    crossings += [
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in public_modules
        and _private(node.attr)
    ]
    assert not crossings, f"{here} uses private names of public modules: {crossings}"


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative).is_dir()


MODULES = PUBLIC_MODULES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_100_lines(path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert not long, f"{path.name}: {long}"


def test_public_dataclasses_are_frozen():
    thawed = [
        f"{module.__name__}.{name}"
        for module in MODULES
        for name in module.__all__
        if inspect.isclass(obj := getattr(module, name))
        and dataclasses.is_dataclass(obj)
        and not obj.__dataclass_params__.frozen
    ]
    assert not thawed, f"mutable public results: {thawed}"
