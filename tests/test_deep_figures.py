"""The data of the deep-network figures (k), (l) against independent computations.

References used here: the end-to-end map multiplied out from the recorded factors (dense
matrices from :func:`regtheory.conv.conv_matrix` for the conv layers); the total penalty
propagated as one dense second moment, E[z zᵀ] ← W E[z zᵀ] Wᵀ through a layer and
∘ E[m mᵀ] at a mask, without the expansion into subsets; the terms of the attribution by
Möbius inversion of such totals over the subsets of dropout layers switched on; and Monte
Carlo over real sampled masks. Rendering is covered by tests/test_figures.py.
"""

import itertools

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from regtheory import conv, network
from regtheory.masks import Bernoulli

N_SE = 4  # Monte Carlo agreement within this many standard errors


def lam(keep):
    return (1 - keep) / keep


@pytest.fixture(scope="module")
def depth_data(quick_record):
    return quick_record("penalty_vs_depth", 0)["data"]


@pytest.fixture(scope="module")
def attribution_data(quick_record):
    return quick_record("penalty_attribution", 1)["data"]


def propagate(matrices, X, masks):
    """(1/n) Σ_k E‖f_m(x_k) − f(x_k)‖² of z ↦ A_L m_{L−1} ∘ ⋯ m_1 ∘ A_1 z, dense.

    ``masks[i]`` is E[m mᵀ] of the mask after matrix i (None: no mask there).
    """
    S, clean = X.T @ X / len(X), X.T
    for i, A in enumerate(matrices):
        S, clean = A @ S @ A.T, A @ clean
        if i < len(masks) and masks[i] is not None:
            S = S * masks[i]
    return np.trace(S) - np.sum(clean**2) / len(X)


# ----------------------------------------------------------------------------- (k)


def dense_layers(panel, weights):
    if panel["layer"] == "fc":
        return [np.asarray(W) for W in weights]
    n = len(panel["map"])
    return [conv.conv_matrix(np.asarray(k), (n,), padding="circular") for k in weights]


def test_depth_factors_keep_the_map_and_are_balanced(depth_data):
    d = depth_data
    for panel in d["panels"]:
        n = len(panel["map"])
        if panel["layer"] == "fc":
            target = np.asarray(panel["map"])
            assert target.shape == (d["fc_width"], d["fc_width"])
        else:
            assert n == d["signal_length"]
            kernel = np.asarray(panel["map"]).reshape(1, 1, n)
            target = conv.conv_matrix(kernel, (n,), padding="circular")
        s = np.linalg.svd(target, compute_uv=False)
        for L, weights in zip(d["depths"], panel["weights"]):
            assert len(weights) == L
            Ws = dense_layers(panel, weights)
            np.testing.assert_allclose(
                np.linalg.multi_dot(Ws[::-1]), target, atol=1e-12 * np.abs(target).max()
            )
            for i, W in enumerate(Ws):
                # every layer carries the L-th root of the map's singular values ...
                np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), s ** (1 / L))
                # ... and neighbours are balanced: W_{i+1}ᵀ W_{i+1} = W_i W_iᵀ
                if i + 1 < L:
                    np.testing.assert_allclose(Ws[i + 1].T @ Ws[i + 1], W @ W.T, atol=1e-12)


def test_depth_exact_penalty_is_the_dense_second_moment(depth_data):
    d = depth_data
    for panel in d["panels"]:
        X = np.asarray(panel["X"]).reshape(d["n_samples"], -1)
        for series in panel["series"]:
            keep = series["keep"]
            for L, weights, exact in zip(d["depths"], panel["weights"], series["exact"]):
                Ws = dense_layers(panel, weights)
                width = Ws[0].shape[0]
                mask = np.ones((width, width)) + lam(keep) * np.eye(width)
                dense = propagate(Ws, X, [mask] * (L - 1))
                assert exact == pytest.approx(dense, rel=1e-10)
        # at every keep the penalty grows with depth: more noisy layers, same map
        for series in panel["series"]:
            assert np.all(np.diff(series["exact"]) > 0)


def test_depth_monte_carlo_within_its_standard_errors(depth_data):
    d = depth_data
    seeds = []
    for panel in d["panels"]:
        for series in panel["series"]:
            for exact, est in zip(series["exact"], series["mc"]):
                seeds.append(est["seed"])
                assert est["n_samples"] == d["n_masks"]
                lo, hi = est["ci95"]
                assert lo < est["mean"] < hi
                assert abs(est["mean"] - exact) < N_SE * est["stderr"], (panel["layer"], exact)
    assert len(set(seeds)) == len(seeds), "every Monte Carlo run has its own recorded seed"


def test_depth_monte_carlo_reproducible_from_recorded_seed(depth_data):
    d = depth_data
    panel = d["panels"][1]  # conv
    series = panel["series"][0]
    i = 2
    L, weights, est = d["depths"][i], panel["weights"][i], series["mc"][i]
    layers = [network.Conv(np.asarray(weights[0]), padding="circular")]
    for w in weights[1:]:
        layers += [
            network.Dropout(Bernoulli(series["keep"])),
            network.Conv(np.asarray(w), padding="circular"),
        ]
    assert len(layers) == 2 * L - 1
    X = np.asarray(panel["X"])
    again = network.dropout_penalty_mc(
        layers, X, network.forward(layers, X), n_masks=d["n_masks"], seed=est["seed"]
    )
    assert again.mean == est["mean"] and again.stderr == est["stderr"]


# ----------------------------------------------------------------------------- (l)


def second_moment(kind, keep, channels, positions):
    """E[m mᵀ] of a mask on a (channels, positions) map, flattened channel first."""
    n = channels * positions
    if kind == "element":
        return np.ones((n, n)) + lam(keep) * np.eye(n)
    same_channel = np.kron(np.eye(channels), np.ones((positions, positions)))
    return np.ones((n, n)) + lam(keep) * same_channel


def test_attribution_terms_are_the_moebius_inversion_of_dense_totals(attribution_data):
    d = attribution_data
    image = tuple(d["image_shape"])
    positions = image[0] * image[1]
    Ws = [conv.conv_matrix(np.asarray(w), image, padding=d["padding"]) for w in d["weights"]]
    X = np.asarray(d["X"]).reshape(d["n_samples"], -1)
    hidden = d["channels"][1:-1]
    assert len(d["panels"]) == 4
    for panel in d["panels"]:
        moments = [second_moment(panel["masks"], panel["keep"], c, positions) for c in hidden]

        # the penalty with dropout at the layers of A only, for every subset A of {1, 2, 3};
        # one BLAS thread: 256×256 products gain nothing from more, and on a busy machine
        # the threads' contention made them 30 times slower
        with threadpool_limits(limits=1, user_api="blas"):
            total = {
                a: propagate(Ws, X, [m if j + 1 in a else None for j, m in enumerate(moments)])
                for r in range(4)
                for a in itertools.combinations((1, 2, 3), r)
            }
        assert panel["subsets"] == [[1], [2], [3], [1, 2], [1, 3], [2, 3], [1, 2, 3]]
        for subset, term in zip(panel["subsets"], panel["terms"]):
            moebius = sum(
                (-1) ** (len(subset) - r) * total[a]
                for r in range(len(subset) + 1)
                for a in itertools.combinations(subset, r)
            )
            assert term == pytest.approx(moebius, rel=1e-9, abs=1e-12 * panel["total"])
        assert total[()] == pytest.approx(0.0, abs=1e-12 * panel["total"])
        assert panel["total"] == pytest.approx(total[1, 2, 3], rel=1e-10)


def test_attribution_parts_add_up_and_interactions_are_not_small(attribution_data):
    for panel in attribution_data["panels"]:
        terms = np.asarray(panel["terms"])
        assert np.all(terms > 0)  # traces of positive semidefinite moments
        own, interaction = terms[:3].sum(), terms[3:].sum()
        assert panel["own_sum"] == pytest.approx(own, rel=1e-12)
        assert panel["interaction"] == pytest.approx(interaction, rel=1e-12)
        assert panel["mean_shift"] == pytest.approx(0.0, abs=1e-12 * panel["total"])
        assert panel["total"] == pytest.approx(own + interaction + panel["mean_shift"], rel=1e-12)
        # not additive: the layers' own penalties miss a visible part of the total
        assert interaction > 0.1 * panel["total"]
