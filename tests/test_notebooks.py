"""The notebooks in ``notebooks/`` run top to bottom and are stored clean.

Each notebook is executed with nbclient in a fresh temporary working directory,
on the native ``python3`` kernel of the interpreter running the tests (no
kernelspec has to be installed: user- or system-wide kernelspecs are ignored, so
a stale global ``python3`` kernel of another Python cannot be picked up), with
figures drawn inline as in Jupyter. Any cell that raises, while running or while
drawing its figures, fails the test. The stored files must carry no outputs or
execution counts, and their code may use only the public API of regtheory.
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import default

pytestmark = pytest.mark.slow  # every test here takes seconds: not in the quick tier

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Per-cell limit: a guard against a hung kernel, far above the ~60 s a whole notebook takes.
CELL_TIMEOUT = 300

notebook_params = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebooks_are_found():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@notebook_params
def test_stored_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(_code_cells(nb))
        if cell.get("outputs") or cell.get("execution_count") is not None
    ]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs or execution counts"


def _private_names(source: str) -> list[str]:
    """Underscore names reached through regtheory imports or attributes (dunders allowed)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("regtheory"):
            parts = node.module.split(".") + [alias.name for alias in node.names]
            found += [p for p in parts if p.startswith("_") and not p.endswith("__")]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("regtheory"):
                    found += [p for p in alias.name.split(".") if p.startswith("_")]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.endswith("__")
        ):
            found.append(node.attr)
    return found


@notebook_params
def test_uses_only_public_api(path):
    source = "\n".join(cell.source for cell in _code_cells(_read(path)))
    private = _private_names(source)
    assert not private, f"{path.name} uses private names {private}"


class NativeKernelManager(AsyncKernelManager):
    """The ``python3`` kernel of this interpreter, whatever kernelspecs are installed.

    With no kernel directories only the native kernel shipped with ipykernel is
    found, and its command runs ``sys.executable``: the Python (and venv) of this
    test run.
    """

    @default("kernel_spec_manager")
    def _no_installed_kernelspecs(self) -> KernelSpecManager:
        return KernelSpecManager(kernel_dirs=[])


def test_kernel_is_this_interpreter():
    km = NativeKernelManager(kernel_name="python3")
    assert km.format_kernel_cmd()[0] == sys.executable


@notebook_params
def test_notebook_runs(path, tmp_path, monkeypatch):
    # Draw figures as Jupyter does (inline PNGs), even where MPLBACKEND=Agg is exported (CI):
    # under Agg nothing is drawn, and an error at drawing time (bad mathtext) would pass.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = _read(path)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=NativeKernelManager,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
