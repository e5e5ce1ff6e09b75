"""Every registered figure renders in quick mode, with its data and provenance."""

import json
import os
import sys

import cvxpy
import numpy as np
import pytest
import scipy

import regtheory
from regtheory.figures import REGISTRY, compute, render

# the figures use the package's current spellings: none of its deprecation warnings
CURRENT_SPELLINGS = pytest.mark.filterwarnings(
    "error:.*in a future minor release:DeprecationWarning"
)
# Figures whose quick data take seconds: the render test below, which computes them
# anyway, checks that they are reproducible against the session's separate computation.
SLOW_TO_COMPUTE = {
    "arora_completion",
    "cavazza_factorization",
    "completion_study",
    "deep_linear_dropout",
    "digits_dropout",
    "explicit_vs_dropout",
    "fc_equalization",
    "fc_spectrum",
    "glm_adaptive_l2",
    "mc_error_vs_n",
    "mianjy_equalization",
    "padding_gap",
    "penalty_vs_depth",
    "penalty_vs_keep",
    "srivastava_ridge",
    "trained_vs_implied",
    "wager_simulation",
}


# The seed of the quick records the session shares with tests/test_check.py.
RENDER_SEED = 2


@pytest.mark.slow
@CURRENT_SPELLINGS
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_figure_renders_png_pdf_and_data(name, tmp_path, quick_record):
    paths = render(name, tmp_path, quick=True, seed=RENDER_SEED)
    assert sorted(p.suffix for p in paths) == [".json", ".pdf", ".png"]
    assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    text = (tmp_path / f"{name}.json").read_text()
    record = json.loads(text)
    assert record["figure"] == name
    assert record["regtheory_version"] == regtheory.__version__
    assert record["seed"] == RENDER_SEED and record["quick"] is True
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary file left"
    # reproducible: computed apart (once per session, perhaps by another worker), the same
    # record to the last digit
    again = quick_record(name, RENDER_SEED)
    assert json.dumps(again, indent=1, sort_keys=True) + "\n" == text


@CURRENT_SPELLINGS
@pytest.mark.parametrize("name", sorted(set(REGISTRY) - SLOW_TO_COMPUTE))
def test_figure_data_reproducible(name):
    assert compute(name, quick=True, seed=5) == compute(name, quick=True, seed=5)


def test_the_slow_figures_are_registered():
    assert SLOW_TO_COMPUTE < set(REGISTRY)


@pytest.mark.slow
def test_fc_spectrum_data_agree_three_ways():
    """The figure's own numbers: cvxpy = closed form (1e-8), training close to both."""
    for panel in compute("fc_spectrum", quick=True, seed=0)["data"]["panels"]:
        assert panel["rel_gap_cvxpy"] < 1e-8
        assert panel["rel_gap_trained"] < 0.1
        np.testing.assert_allclose(panel["cvxpy"], panel["closed_form"], atol=1e-7)


def test_record_names_its_environment(monkeypatch):
    record = compute("conv_matrix_seed", quick=True)
    assert set(record) == {
        "figure",
        "description",
        "regtheory_version",
        "seed",
        "quick",
        "environment",
        "references",
        "data",
    }
    assert record["references"] == list(REGISTRY["conv_matrix_seed"].references)
    env = record["environment"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["machine"] == os.uname().machine
    packages = env["packages"]
    assert packages["regtheory"] == regtheory.__version__
    assert (packages["numpy"], packages["scipy"]) == (np.__version__, scipy.__version__)
    assert packages["cvxpy"] == cvxpy.__version__
    assert packages["clarabel"] and packages["scs"]
    assert env["blas"], "no BLAS found"
    for lib in env["blas"]:
        assert set(lib) == {"internal_api", "prefix", "version", "architecture", "num_threads"}
        assert isinstance(lib["num_threads"], int) and lib["num_threads"] >= 1
    # a solver that is not installed is recorded as null
    from regtheory.figures import _registry

    monkeypatch.setattr(_registry, "_PACKAGES", (*_registry._PACKAGES, "no-such-solver-x"))
    assert (
        compute("conv_matrix_seed", quick=True)["environment"]["packages"]["no-such-solver-x"]
        is None
    )


def test_unknown_figure_name():
    with pytest.raises(ValueError, match="valid names"):
        compute("no_such_figure")
