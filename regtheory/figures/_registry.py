"""The one registry of figures, used by the CLI, the tests and the notebooks.

A figure is two functions: ``compute(quick, seed) -> dict`` returns its data
(JSON-serialisable; the numbers a reader can re-plot or check), and
``plot(data) -> matplotlib.figure.Figure`` draws it and computes nothing.

Each figure also declares how its data are re-checked (``FigureSpec.checks``, the
rules of :mod:`regtheory.figures._check`): which fields must agree exactly, which to
rounding, to a solver's accuracy, within Monte Carlo error or to the stated
tolerance of a training run.

A figure whose data is a grid of independent runs (``FigureSpec.sweeps``) takes
one more argument, ``compute(quick, seed, sweep=None)``: a
:class:`regtheory.sweep.Sweep` that runs the grid serially (``None``), on local
processes or on a Dask cluster. Its data do not depend on which, so the record
does not name the backend.

A figure that solves implied problems with cvxpy (``FigureSpec.solves``) takes
``solver=None`` too: the cvxpy solver of those solves (default Clarabel). Its
numbers do depend on the solver (in the digits beyond the solver's tolerance),
so its record names it.

:func:`render` writes ``NAME.png``, ``NAME.pdf`` and ``NAME.json`` (the data,
the package version, the seed, the mode, the papers the figure's results come from and
the environment: versions of Python, the numerical packages and the solvers, the
platform and the BLAS) atomically:
each file is written to a temporary name and renamed, so an interrupted run
leaves no half file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import InvalidParameterError
from ..sweep import Sweep

if TYPE_CHECKING:  # matplotlib is imported by the plot functions, when they draw
    from matplotlib.figure import Figure

__all__ = [
    "REGISTRY",
    "FigureSpec",
    "compute",
    "environment",
    "missing_extras",
    "register",
    "render",
    "spec_of",
]


@dataclass(frozen=True)
class FigureSpec:
    """A registered figure: a name, one line of description, compute and plot.

    ``sweeps`` marks a figure whose ``compute`` takes ``sweep=`` (a
    :class:`regtheory.sweep.Sweep`) and runs its grid of independent runs on it;
    ``solves`` one whose ``compute`` takes ``solver=`` (a cvxpy solver name or None)
    for its implied problems. ``checks`` maps the fields of its data to the rules by
    which :func:`regtheory.figures.check` compares a regenerated record with a stored
    one (:mod:`regtheory.figures._check`); every field must have one. ``requires``
    names the modules the figure needs beyond the package's own dependencies and
    ``extra`` the optional dependency set of ``pip install "regtheory[EXTRA]"`` that
    brings them (:func:`missing_extras`). ``references`` names the papers whose results
    the figure computes, as the ``references`` of a result do (bibliography keys of
    ``regtheory/references.bib``, each with a theorem or equation where known); its
    record lists them and ``regtheory cite --figure NAME`` prints their BibTeX.
    """

    name: str
    description: str
    compute: Callable[..., dict]
    plot: Callable[[dict], Figure]
    sweeps: bool = False
    solves: bool = False
    checks: Mapping[str, object] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    extra: str | None = None
    references: tuple[str, ...] = ()


REGISTRY: dict[str, FigureSpec] = {}


def register(spec: FigureSpec) -> FigureSpec:
    """Add ``spec`` to :data:`REGISTRY` (each name once); returns it."""
    if spec.name in REGISTRY:
        raise InvalidParameterError(f"figure {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def _jsonable(obj: object) -> object:
    if isinstance(obj, Mapping):  # dicts, and the read-only mappings of results
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def spec_of(name: str) -> FigureSpec:
    """The registered figure ``name``; an InvalidParameterError listing the valid names."""
    if name not in REGISTRY:
        raise InvalidParameterError(
            f"unknown figure {name!r}; valid names: {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[name]


def missing_extras(names: Iterable[str]) -> dict[str, list[str]]:
    """The optional extras that the figures ``names`` need and that are not installed.

    Parameters
    ----------
    names : iterable of str
        Registered figure names.

    Returns
    -------
    dict
        Each missing extra (``"torch"``) mapped to the figures among ``names`` that need
        it, in the order given; empty when every figure can be computed here.

    Raises
    ------
    InvalidParameterError
        If a name is not a registered figure.
    """
    missing: dict[str, list[str]] = {}
    for name in names:
        spec = spec_of(name)
        if any(not _importable(module) for module in spec.requires):
            missing.setdefault(spec.extra or "", []).append(name)
    return missing


def _importable(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked installation
        return False


# The distributions whose versions a record names: the numerical stack and the solvers.
_PACKAGES = ("regtheory", "numpy", "scipy", "cvxpy", "clarabel", "scs")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Where a record was computed: Python, package versions, platform and the BLAS.

    Not data: two machines may differ here and still agree on every number, and when
    they do not, this says why (a different OpenBLAS kernel rounds differently).
    """
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "prefix", "version", "architecture", "num_threads")
    # numpy, scipy and scs each load their own OpenBLAS; sorted, so that the order in
    # which they were loaded does not change the record.
    blas = sorted(
        ({k: lib.get(k) for k in keys} for lib in threadpool_info() if lib["user_api"] == "blas"),
        key=lambda lib: json.dumps(lib, sort_keys=True),
    )
    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "blas": blas,
    }


def compute(
    name: str,
    *,
    quick: bool = False,
    seed: int = 0,
    sweep: Sweep | None = None,
    solver: str | None = None,
) -> dict:
    """The data of figure ``name`` with the provenance record, without drawing it.

    ``sweep`` runs the grid of a sweeping figure (serially when ``None``); the other
    figures ignore it. The data are the same whatever it is. ``solver`` is the cvxpy
    solver of a figure that solves implied problems (default Clarabel), named in its
    record; the other figures ignore it.
    """
    from .. import __version__

    spec = spec_of(name)
    options: dict[str, Any] = {}
    if spec.sweeps:
        options["sweep"] = sweep
    if spec.solves:
        options["solver"] = solver
    data = spec.compute(quick, seed, **options)
    record = {
        "figure": name,
        "description": REGISTRY[name].description,
        "regtheory_version": __version__,
        "seed": seed,
        "quick": quick,
        "environment": environment(),
        "references": list(spec.references),
        "data": _jsonable(data),
    }
    if spec.solves:
        record["solver"] = solver
    return record


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``.

    A reader (or a run that was killed) sees the old file or the new one, never half of one.
    The bytes reach the disk before the rename, and the file gets the permissions of any
    new file (the umask's; mkstemp's would be private to the owner).
    """
    tmp = str(path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        with open(tmp, "rb+") as done:
            os.fsync(done.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render(
    name: str,
    out_dir: str | os.PathLike[str],
    *,
    quick: bool = False,
    seed: int = 0,
    sweep: Sweep | None = None,
    solver: str | None = None,
) -> list[Path]:
    """Compute, draw and save figure ``name`` into ``out_dir``; returns the written paths.

    ``sweep`` and ``solver`` as in :func:`compute`.
    """
    record = compute(name, quick=quick, seed=seed, sweep=sweep, solver=solver)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig = spec_of(name).plot(record["data"])
    stamp = f"regtheory {record['regtheory_version']}, seed {seed}{', quick' if quick else ''}"
    paths = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        # Provenance in the file's own metadata; fixed dates keep PDFs byte-stable.
        meta = {"Title": name, "Subject": record["description"], "Creator": stamp}
        if ext == "pdf":
            meta["CreationDate"] = None

        def save(tmp: str, ext: str = ext, meta: dict = meta) -> None:
            fig.savefig(tmp, format=ext, dpi=150, metadata=meta)

        _atomic_write(path, save)
        paths.append(path)
    path = out / f"{name}.json"
    text = json.dumps(record, indent=1, sort_keys=True)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
    paths.append(path)
    return paths
