"""In CI (``CI=true``) a test skipped because an optional dependency is missing is a failure:
CI installs every extra the tests need (torch, dask), so such a skip means an install step
went missing, not that the test may be ignored."""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and "could not import" in str(report.longrepr)
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true: optional dependency missing, test would be skipped: {report.longrepr}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (``torch = pytest.importorskip(...)``)."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and "could not import" in str(report.longrepr)
    ):
        report.outcome = "failed"


# ----------------------------------------------------------------------------- test tiers
# `python -m pytest -m "not slow" -n 2` is the quick tier for the edit-and-test loop
# (under a minute on two cores); the README's command runs every test. A test is marked
# `slow` (pyproject.toml registers the mark) when it takes seconds: Monte Carlo coverage
# over many seeds, training runs, whole figures, notebooks, subprocesses that import the
# full stack. Each public module keeps quick tests, in the files named here: when a run
# collects all of these files and the quick tier leaves one module none, the run fails.
QUICK_TIER = {
    "regtheory": ("test_imports.py",),
    "regtheory.cli": ("test_cli.py", "test_cli_torch.py"),
    "regtheory.compare": ("test_compare.py",),
    "regtheory.conv": ("test_conv.py",),
    "regtheory.data": ("test_data.py",),
    "regtheory.diagnostics": ("test_diagnostics.py",),
    "regtheory.fc": ("test_fc.py",),
    "regtheory.figures": ("test_figures.py", "test_check.py"),
    "regtheory.glm": ("test_glm.py",),
    "regtheory.implied": ("test_implied.py", "test_implied_conv.py", "test_deep_induced.py"),
    "regtheory.masks": ("test_masks.py",),
    "regtheory.montecarlo": ("test_montecarlo.py", "test_mc_engine.py"),
    "regtheory.network": ("test_network.py", "test_network_exact.py"),
    "regtheory.pytorch": ("test_pytorch.py",),
    "regtheory.sweep": ("test_sweep.py",),
    "regtheory.training": ("test_training.py", "test_training_conv.py"),
}


def modules_without_quick_tests(collected: set[str], selected: set[str]) -> list[str]:
    """The modules of QUICK_TIER whose test files were all collected (file names) and none
    of whose tests was selected; empty when the run did not collect every file."""
    files = {name for names in QUICK_TIER.values() for name in names}
    if not files <= collected:  # a run of some files only: nothing to say
        return []
    return [module for module, names in QUICK_TIER.items() if not selected & set(names)]


_COLLECTED = pytest.StashKey[set]()  # the names of the test files collected


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    config.stash[_COLLECTED] = {item.path.name for item in items}


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    if not session.config.getoption("markexpr"):
        return
    collected = session.config.stash.get(_COLLECTED, set())
    bare = modules_without_quick_tests(collected, {item.path.name for item in session.items})
    if bare:
        raise pytest.UsageError(
            f"-m {session.config.getoption('markexpr')!r} leaves no test of {', '.join(bare)}: "
            "the quick tier must exercise every public module (tests/conftest.py, QUICK_TIER)"
        )
