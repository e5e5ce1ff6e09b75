"""The two test tiers.

``python -m pytest -m "not slow" -n 2`` is the quick tier for the edit-and-test loop (under
a minute on two cores); the README's command runs every test. A test is marked ``slow``
(pyproject.toml registers the mark) when it takes seconds: Monte Carlo coverage over many
seeds, training runs, whole figures, notebooks, subprocesses that import the full stack.
Each public module keeps quick tests, in the files named here: when a run collects all of
these files and its mark expression leaves one module none, ``tests/conftest.py`` fails it.

Whole test functions and files carry their mark in their source; the parametrised cases
and doctests that are slow where their siblings are quick are listed in ``SLOW_CASES``
(by node id), and tests/conftest.py marks them.
"""

QUICK_TIER = {
    "regtheory": ("test_imports.py",),
    "regtheory.cli": ("test_cli.py", "test_cli_torch.py"),
    "regtheory.compare": ("test_compare.py",),
    "regtheory.completion": ("test_completion.py",),
    "regtheory.conv": ("test_conv.py",),
    "regtheory.data": ("test_data.py",),
    "regtheory.diagnostics": ("test_diagnostics.py",),
    "regtheory.fc": ("test_fc.py",),
    "regtheory.figures": ("test_figures.py", "test_check.py"),
    "regtheory.glm": ("test_glm.py",),
    "regtheory.implied": ("test_implied.py", "test_implied_conv.py", "test_deep_induced.py"),
    "regtheory.layers": ("test_layers.py",),
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


# Single slow cases of parametrised tests, and slow doctests (their siblings are quick).
SLOW_CASES = frozenset(
    {
        "regtheory/figures/_check.py::regtheory.figures._check.check",
        "regtheory/pytorch.py::regtheory.pytorch.train_classifier",
        (
            "tests/test_conv.py::"
            "test_monte_carlo_draws_equal_direct_network_evaluation_across_batches[True-relu-circular]"
        ),
        (
            "tests/test_conv.py::"
            "test_monte_carlo_draws_equal_direct_network_evaluation_across_batches[True-relu-zeros]"
        ),
        (
            "tests/test_digits.py::"
            "test_last_layer_penalty_is_the_dense_formula_on_the_trained_model[Dropout-masks0]"
        ),
        "tests/test_figures.py::test_figure_data_reproducible[completion_study]",
        "tests/test_figures.py::test_figure_data_reproducible[digits_dropout]",
        "tests/test_figures.py::test_figure_data_reproducible[explicit_vs_dropout]",
        "tests/test_figures.py::test_figure_data_reproducible[fc_equalization]",
        "tests/test_figures.py::test_figure_data_reproducible[fc_spectrum]",
        "tests/test_figures.py::test_figure_data_reproducible[glm_adaptive_l2]",
        "tests/test_figures.py::test_figure_data_reproducible[mc_error_vs_n]",
        "tests/test_figures.py::test_figure_data_reproducible[padding_gap]",
        "tests/test_figures.py::test_figure_data_reproducible[penalty_vs_depth]",
        "tests/test_figures.py::test_figure_data_reproducible[penalty_vs_keep]",
        "tests/test_figures.py::test_figure_data_reproducible[trained_vs_implied]",
        "tests/test_glm.py::test_lbfgs_path_solves_the_same_problem_as_cvxpy[quadratic]",
        "tests/test_glm.py::test_lbfgs_path_solves_the_same_problem_as_cvxpy[saa]",
        (
            "tests/test_mc_engine.py::"
            "test_network_engine_against_the_exact_penalty[float32-2-D conv, DropBlock, zeros]"
        ),
        (
            "tests/test_mc_engine.py::"
            "test_network_engine_against_the_exact_penalty"
            "[float32-2-D conv, channel, circular, Linear head]"
        ),
        (
            "tests/test_mc_engine.py::"
            "test_network_engine_against_the_exact_penalty[float64-2-D conv, DropBlock, zeros]"
        ),
        (
            "tests/test_mc_engine.py::"
            "test_network_engine_against_the_exact_penalty"
            "[float64-2-D conv, channel, circular, Linear head]"
        ),
        (
            "tests/test_pytorch.py::"
            "test_the_torch_monte_carlo_agrees_with_the_exact_penalty_and_its_attribution[dtype0]"
        ),
    }
)


def stale_slow_cases(files: set[str], nodeids: set[str]) -> list[str]:
    """The ids of SLOW_CASES whose test file was collected (``files``: paths relative to
    the repository) but which no collected test has (``nodeids``): renamed or removed."""
    return sorted(c for c in SLOW_CASES if c.split("::")[0] in files and c not in nodeids)
