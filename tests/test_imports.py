"""What importing regtheory loads: the heavy dependencies come with the first module that
uses them, not with ``import regtheory``.

Each case runs in a fresh interpreter, where nothing has been imported yet, and reads
``sys.modules`` after the statement: which modules are loaded, not how long it took.
"""

import importlib
import json
import subprocess
import sys
from types import ModuleType

import pytest
from _public_api import PUBLIC_MODULES

import regtheory

# Slow to import, and needed only by some modules: cvxpy (implied problems, glm, compare),
# matplotlib (drawing figures), torch and scikit-learn (the torch extra), dask (the dask
# extra), joblib and tqdm (sweeps and the progress bar), SciPy's statistics and optimizers.
HEAVY = (
    "cvxpy",
    "matplotlib",
    "torch",
    "sklearn",
    "dask",
    "distributed",
    "joblib",
    "tqdm",
    "scipy.stats",
    "scipy.optimize",
)

# The modules that compute penalties and train networks with NumPy alone.
NUMPY_MODULES = (
    "completion",
    "conv",
    "data",
    "diagnostics",
    "fc",
    "masks",
    "montecarlo",
    "network",
    "sweep",
    "training",
)


def loaded_after(code: str) -> set[str]:
    """The modules of HEAVY (and ``scipy``, ``numpy``) that a fresh interpreter has loaded
    after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps([m for m in {[*HEAVY, 'scipy', 'numpy']!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_regtheory_loads_nothing_heavy():
    assert loaded_after("import regtheory") == set()


def test_top_level_names_load_nothing_heavy():
    code = (
        "import regtheory\n"
        "regtheory.Estimate, regtheory.InvalidParameterError, regtheory.__version__\n"
        "assert regtheory.dropout_lambda(0.25) == 3.0"
    )
    assert not loaded_after(code) & set(HEAVY)


def test_numpy_modules_load_no_solver_plotting_or_torch():
    # one interpreter imports them in turn, recording what each one adds
    code = (
        "import importlib, json, sys\n"
        "added = {}\n"
        f"for name in {list(NUMPY_MODULES)!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module('regtheory.' + name)\n"
        "    added[name] = sorted({m.split('.')[0] for m in set(sys.modules) - before})\n"
        "print(json.dumps(added))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    added = json.loads(out)
    assert "numpy" in added[NUMPY_MODULES[0]]  # the probe sees what a module loads
    forbidden = {"cvxpy", "matplotlib", "torch", "sklearn", "dask", "joblib", "tqdm"}
    assert {name: sorted(set(mods) & forbidden) for name, mods in added.items()} == {
        name: [] for name in NUMPY_MODULES
    }


def test_help_loads_nothing_heavy():
    code = (
        "from regtheory.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
    )
    assert not loaded_after(code) & {*HEAVY, "scipy"}


def test_a_module_that_solves_loads_cvxpy():
    # the probe detects a heavy import where one is expected
    assert "cvxpy" in loaded_after("import regtheory.implied")


def test_lazy_names_are_the_modules_objects():
    from regtheory import _validation, glm, masks, montecarlo

    assert regtheory.glm is glm
    assert regtheory.Estimate is montecarlo.Estimate
    assert regtheory.dropout_lambda is masks.dropout_lambda
    assert regtheory.InvalidParameterError is _validation.InvalidParameterError
    assert isinstance(regtheory.__version__, str)


def test_every_name_of_all_resolves_and_dir_lists_it():
    for name in regtheory.__all__:
        assert getattr(regtheory, name) is not None
    assert set(regtheory.__all__) <= set(dir(regtheory))
    namespace: dict = {}
    exec("from regtheory import *", namespace)
    assert set(regtheory.__all__) <= set(namespace)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        regtheory.not_a_name  # noqa: B018
    assert not hasattr(regtheory, "fc_penalty")


# ----------------------------------------------------------------------------- namespaces

FIGURE_MODULES = [
    "conv_figures",
    "deep_figures",
    "fc_figures",
    "glm_figures",
    "implied_figures",
    "torch_figures",
]
# Every public module: the API modules, the package, the command line, the figure modules.
NAMESPACES = [
    *PUBLIC_MODULES,
    regtheory,
    importlib.import_module("regtheory.cli"),
    *(importlib.import_module(f"regtheory.figures.{name}") for name in FIGURE_MODULES),
]


def merely_imported(module: ModuleType) -> list[str]:
    """The names ``dir(module)`` shows that are neither defined in the module (or in its
    package's own submodules) nor listed in its ``__all__``."""
    own = module.__name__ + "."
    found = []
    for name in dir(module):
        if name.startswith("_") or name in module.__all__:
            continue
        obj = getattr(module, name)
        if isinstance(obj, ModuleType):
            home = obj.__name__ + "."  # a submodule of the package is its own
        else:
            home = getattr(obj, "__module__", None)
            if not isinstance(home, str):  # a number, a tuple, a mapping: defined here
                continue
            home += "."
        if not home.startswith(own) and home != own:
            found.append(name)
    return found


@pytest.mark.parametrize("module", NAMESPACES, ids=lambda m: m.__name__)
def test_dir_shows_only_what_the_module_defines_or_re_exports(module):
    assert merely_imported(module) == []


@pytest.mark.parametrize("module", NAMESPACES, ids=lambda m: m.__name__)
def test_all_names_resolve_once(module):
    names = module.__all__
    assert len(set(names)) == len(names)
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == []


def test_the_probe_finds_a_merely_imported_name():
    fake = ModuleType("regtheory.fake")
    fake.__all__ = ["kept"]
    exec("import numpy as np\nfrom regtheory.masks import Bernoulli\nkept = 1", vars(fake))
    assert merely_imported(fake) == ["Bernoulli", "np"]
