"""The two test tiers.

``python -m pytest -m "not slow" -n 2`` is the quick tier for the edit-and-test loop (under
a minute on two cores); the README's command runs every test. A test is marked ``slow``
(pyproject.toml registers the mark) when it takes seconds: Monte Carlo coverage over many
seeds, training runs, whole figures, notebooks, subprocesses that import the full stack.
Each public module keeps quick tests, in the files named here: when a run collects all of
these files and its mark expression leaves one module none, ``tests/conftest.py`` fails it.
"""

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
