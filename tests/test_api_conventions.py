"""The public API keeps one set of conventions, checked over every public function.

* Options are keyword-only: every parameter with a default comes after ``*``, so a call
  reads as ``conv.dropout_penalty(u, v, keep, shape, mode="channel")`` and options can be
  added or reordered without silently shifting a positional call.
* The same option means the same thing everywhere: a parameter name shared by several
  functions has one default (the exceptions are listed with their reason).
* Every public function is fully annotated, and ``mypy`` (configured in pyproject.toml)
  finds no error in the package, so the annotations that ship with ``py.typed`` hold.
"""

import inspect
from collections import defaultdict
from pathlib import Path

import pytest
from _public_api import PUBLIC_MODULES

import regtheory

MODULES = PUBLIC_MODULES

# Same name, different defaults, on purpose: the quantity differs between the functions.
DIFFERENT_DEFAULTS = {
    # tolerance of an equality test (fc.is_equalized) vs target relative error of a
    # Monte Carlo estimate
    "rtol",
    # each function's own natural count: masks of a penalty estimate, samples of a generic
    # estimator, restarts of a non-convex solve
    "n_masks",
    "starts",
    # network.forward: no seed runs the mask-free network; elsewhere a seed is a stream
    "seed",
    # train_conv trains the circular net whose implied problem solve_conv solves; the
    # layer-level functions default to PyTorch's zero padding
    "padding",
    # figures.check: None keeps each record's own setting; compute/render: full size
    "quick",
    # scale of a trainer's random initial weights vs a factored solve's random starts
    "init_scale",
    # solve_fc's default solves by singular values; glm's default is the exact expectation
    "method",
    # pytorch.explicit_regularizer is called at every training step: None draws fresh
    # directions each call; a penalty estimate's seed 0 makes it reproducible
    "rng",
    # a penalty's default loss is squared error (where it is exact); a classifier's
    # trainer defaults to the loss classifiers train on, cross-entropy
    "loss",
}


def public_callables():
    seen = {}
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                seen[f"{module.__name__}.{name}"] = obj
            elif inspect.isclass(obj):
                for meth_name, meth in vars(obj).items():
                    if inspect.isfunction(meth) and not meth_name.startswith("_"):
                        seen[f"{module.__name__}.{name}.{meth_name}"] = meth
    return seen


CALLABLES = public_callables()


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_options_are_keyword_only(name):
    params = inspect.signature(CALLABLES[name]).parameters.values()
    positional_options = [
        p.name
        for p in params
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert not positional_options, f"{name}: options {positional_options} must follow `*`"


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_public_functions_are_annotated(name):
    fn = CALLABLES[name]
    missing = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")
    ]
    if "return" not in fn.__annotations__:
        missing.append("return")
    assert not missing, f"{name}: no type hint for {missing}"


def test_shared_option_names_share_defaults():
    defaults = defaultdict(dict)
    for name, fn in CALLABLES.items():
        for p in inspect.signature(fn).parameters.values():
            if p.default is not inspect.Parameter.empty and p.name not in DIFFERENT_DEFAULTS:
                defaults[p.name][name] = p.default
    clashes = {
        option: where
        for option, where in defaults.items()
        if len({repr(v) for v in where.values()}) > 1
    }
    assert not clashes, f"one option name, several defaults: {clashes}"


def test_package_ships_its_type_information():
    assert (Path(regtheory.__file__).parent / "py.typed").is_file()


@pytest.mark.slow
def test_mypy_finds_no_error():
    api = pytest.importorskip("mypy.api")  # a test dependency: installed by the test command
    root = Path(regtheory.__file__).resolve().parents[1]
    stdout, stderr, status = api.run(
        ["--config-file", str(root / "pyproject.toml"), str(root / "regtheory")]
    )
    assert status == 0, stdout + stderr
