"""Figure (t) ``cavazza_factorization``: its claims, numbers recomputed another way, its seed."""

import numpy as np
import pytest
from scipy.optimize import minimize

from regtheory.figures.reproductions import _fc_runs
from regtheory.figures.reproductions import cavazza_factorization as fig

NAME, SEED = "cavazza_factorization", 2
# every test reads the quick record, a training run of seconds: not in the quick tier
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(quick_record):
    return quick_record(NAME, SEED)["data"]


def test_quick_claims_are_reproduced_in_shape(data):
    assert [c["verdict"] for c in data["claims"]] == ["reproduced in shape"] * 3
    assert all(c["theirs"] == "not read" for c in data["claims"])
    k, d = data["sizes"]["signal_rank"], data["sizes"]["rows"]
    assert data["rank_target"] == d  # the noise makes the matrix full rank
    # inside the claims' tests with margin (checked on seeds 0..5)
    for run in data["runs"]:
        assert run["final_gap"] < fig.GAP_BOUND / 3  # seeds 0..5: ≤ 1.2e-3
        assert run["rank_trained"] == run["rank_optimum"] == k
        assert run["sv_next_trained"] < fig.RANK_THRESHOLD / 10
        assert run["spread_start"] > 2 * _fc_runs.SPREAD_FACTOR * run["spread_end"]
        assert run["spread_end"] < _fc_runs.SPREAD_BOUND / 2


def test_matrix_is_the_stated_signal_plus_noise(data):
    k, d = data["sizes"]["signal_rank"], data["sizes"]["rows"]
    Z = fig._matrix(d, k, SEED)
    sv = np.linalg.svd(Z, compute_uv=False)
    np.testing.assert_allclose(sv[:k], np.linspace(2.0, 1.0, k), atol=20 * fig.NOISE)
    assert sv[k] < 3 * fig.NOISE * np.sqrt(d)  # the noise's spectral edge, 2σ√d


def test_closed_form_spectrum_agrees_with_a_direct_minimization(data):
    # min over m ≥ 0 of Σ(σ−m)² + (λ/w)(Σm)², the dropout objective over equalized
    # factorizations aligned with Z's singular vectors, solved by L-BFGS-B
    sigma, width = np.asarray(data["sv_target"]), data["sizes"]["width"]
    for run in data["runs"]:
        lam = (1 - run["keep"]) / run["keep"]

        def f(m, lam=lam):
            r = sigma - m
            return r @ r + lam / width * m.sum() ** 2, -2 * r + 2 * lam / width * m.sum()

        res = minimize(f, sigma / 2, jac=True, bounds=[(0, None)] * len(sigma),
                       method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
        assert run["optimal_value"] == pytest.approx(res.fun, rel=1e-7)
        np.testing.assert_allclose(run["sv_optimum"], res.x, atol=1e-5)
