"""The comparison entry point against the solvers and closed forms it is built from."""

import json

import numpy as np
import pytest

from regtheory import fc, implied
from regtheory.cli import main
from regtheory.compare import METHODS, circulant_spectrum, compare
from regtheory.conv import conv_matrix
from regtheory.data import conv_task

TEACHER = np.array([0.15, -0.4, 1.0, 0.5, -0.2])


@pytest.fixture(scope="module")
def task():
    return conv_task(12, TEACHER, n_train=120, n_test=300, noise=0.3, rng=0)


def test_implied_results_match_their_solvers(task):
    res = compare(task, 0.5, channels=3, kernel_size=3, train=False).results
    assert set(res) == set(METHODS)
    X, Y = task.X[:, 0], task.Y[:, 0]
    T, cov = Y.T @ X / len(X), X.T @ X / len(X)
    # FC: the closed form (3) on the whitened problem, independent of cvxpy
    np.testing.assert_allclose(
        res["fc"].operator, fc.global_optimum(T, 0.5, 36, cov=cov), atol=1e-6
    )
    conv = implied.solve_conv(task.X, task.Y, 0.5, 3, 3)
    assert res["element"].objective == pytest.approx(conv.objective, rel=1e-9)
    np.testing.assert_allclose(
        res["element"].operator, conv_matrix(conv.w, (12,), padding="circular")
    )
    # test risk is the plain mean squared error of the operator on the test set
    Xt, Yt = task.X_test[:, 0], task.Y_test[:, 0]
    M = res["channel"].operator
    assert res["channel"].test_risk == pytest.approx(np.mean(np.sum((Yt - Xt @ M.T) ** 2, axis=1)))
    # blocks of n units: the k-support norm with k = n >= rank is the Frobenius norm, so the
    # block problem is a ridge on M with G = 3 groups: M = T / (1 + λ/G) (white inputs)
    np.testing.assert_allclose(res["block"].operator, T / (1 + 1.0 / 3), atol=1e-5)


def test_solver_is_the_one_that_solves(task):
    """Another solver (first-order SCS) lands on the same closed form (3), to its accuracy."""
    result = compare(
        task, 0.5, channels=3, kernel_size=3, methods=["fc"], train=False, solver="scs"
    )
    assert result.settings["solver"] == "SCS"
    X, Y = task.X[:, 0], task.Y[:, 0]
    T, cov = Y.T @ X / len(X), X.T @ X / len(X)
    closed = fc.global_optimum(T, 0.5, 36, cov=cov)
    np.testing.assert_allclose(result.results["fc"].operator, closed, atol=1e-5)


def test_circulant_spectrum_of_a_convolution_is_its_dft():
    w = np.array([0.3, -1.0, 2.0, 0.5, 0.1])
    M = conv_matrix(w.reshape(1, 1, -1), (8,), padding="circular")
    # kernel by displacement d = -2..2, placed at d mod 8
    c = np.zeros(8)
    c[np.arange(-2, 3) % 8] = w
    np.testing.assert_allclose(circulant_spectrum(M), np.abs(np.fft.fft(c)), atol=1e-12)
    np.testing.assert_allclose(
        np.sort(circulant_spectrum(M)), np.sort(np.linalg.svd(M, compute_uv=False))
    )


@pytest.mark.slow
def test_training_lands_near_the_implied_solutions(task):
    res = compare(task, 0.5, channels=3, kernel_size=3, rng=1).results
    for name, r in res.items():
        assert r.gap < 0.08, (name, r.gap)
        assert r.trained_test_risk == pytest.approx(r.test_risk, rel=0.1)


def test_bad_arguments(task):
    with pytest.raises(ValueError, match="methods"):
        compare(task, 0.5, 3, 3, methods=["dropconnect"])
    with pytest.raises(TypeError, match="task"):
        compare({"X": 1}, 0.5, 3, 3)
    with pytest.raises(ValueError, match="keep"):
        compare(task, 1.5, 3, 3)


def test_cli_compare_json(capsys):
    code = main(["compare", "--n", "8", "--no-train", "--json", "--methods", "fc", "element"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in out["results"]] == ["fc", "element"]
    row = out["results"][0]
    assert set(row) >= {"objective", "test_risk", "rank", "singular_values", "fourier_magnitudes"}
    assert len(row["singular_values"]) == 8 and row["gap_trained_vs_implied"] is None


def test_cli_compare_user_error_exits_2(capsys):
    assert main(["compare", "--kernel-size", "4", "--no-train"]) == 2
    err = capsys.readouterr().err
    assert "kernel_size" in err and "Traceback" not in err


def test_rng_seeds_the_training_and_seed_still_works(task):
    short = {"fc_training": {"steps": 3, "lr": 0.001}, "methods": ["fc"]}
    new = compare(task, 0.5, 3, 3, rng=4, **short)
    with pytest.warns(DeprecationWarning, match="rng="):
        old = compare(task, 0.5, 3, 3, seed=4, **short)
    np.testing.assert_array_equal(
        old.results["fc"].trained_operator, new.results["fc"].trained_operator
    )
    assert new.seed == 4
    # method i trains with seed rng + i, as train_fc would with that seed
    from regtheory.training import train_fc

    X, Y = task.X[:, 0], task.Y[:, 0]
    alone = train_fc(X, Y, 0.5, 3 * 12, steps=3, lr=0.001, rng=4)
    np.testing.assert_array_equal(alone.final_map, new.results["fc"].trained_operator)
    from_stream = compare(task, 0.5, 3, 3, rng=np.random.default_rng(4), **short)
    assert from_stream.seed is None and from_stream.results["fc"].trained_operator is not None
