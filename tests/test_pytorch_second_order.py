"""The second-order (delta-method) approximation of a PyTorch model's dropout penalty.

Checked three independent ways: it equals the exact penalty where the second-order
expansion is exact (squared error, one dropout site, linear layers after it); it equals
the closed form of Wager, Wang & Liang (2013) for dropout on the input of a softmax
regression, written out in NumPy; and on a small ReLU network with cross-entropy it is
the same formula computed by finite differences, and it approaches the expectation over
every mask pattern (enumerated) as each unit's effect on the logits shrinks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from regtheory.pytorch import dropout_penalty  # noqa: E402


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.7)
    return model.double()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_squared_error_after_one_site_and_linear_layers_is_exact(seed):
    # dropout then linear maps: the output is affine in the mask, so the expansion is exact
    model = _seeded(
        nn.Sequential(
            nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 5), nn.Linear(5, 3)
        ),
        seed,
    )
    X = np.random.default_rng(seed).normal(size=(9, 4))
    Y = np.random.default_rng(seed + 10).normal(size=(9, 3))
    report = dropout_penalty(model, X, Y=Y)
    assert report.method == "exact"
    assert report.second_order == pytest.approx(report.value, rel=1e-10)


def test_channel_dropout_on_maps_then_linear_is_exact_too():
    model = _seeded(
        nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.25), nn.Flatten(),
            nn.Linear(3 * 5 * 5, 2),
        ),
        3,
    )  # fmt: skip
    X = np.random.default_rng(3).normal(size=(6, 2, 5, 5))
    report = dropout_penalty(model, X)
    assert report.method == "exact"
    assert report.second_order == pytest.approx(report.value, rel=1e-10)


@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_cross_entropy_of_softmax_regression_is_the_glm_closed_form(keep):
    # dropout on the input of softmax regression: ½ λ Σ_j x_j² w_jᵀ (diag p − p pᵀ) w_j per
    # sample (Wager, Wang & Liang 2013), averaged over the data
    rng = np.random.default_rng(4)
    W, b = rng.normal(size=(4, 6)), rng.normal(size=4)
    X = rng.normal(size=(11, 6))
    labels = rng.integers(0, 4, size=11)
    linear = nn.Linear(6, 4).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(W))
        linear.bias.copy_(torch.from_numpy(b))
    model = nn.Sequential(nn.Dropout(1 - keep), linear)
    report = dropout_penalty(model, X, Y=labels, loss="cross_entropy", n_masks=2000)
    logits = X @ W.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lam = (1 - keep) / keep
    want = 0.0
    for x, q in zip(X, p):
        H = np.diag(q) - np.outer(q, q)
        want += 0.5 * lam * sum(x[j] ** 2 * W[:, j] @ H @ W[:, j] for j in range(6))
    want /= len(X)
    assert report.loss == "cross_entropy" and report.method == "mc"
    assert report.second_order == pytest.approx(want, rel=1e-10)
    assert report.own_second_order[0] == pytest.approx(want, rel=1e-10)


def _enumerated(model: nn.Sequential, X: np.ndarray, labels: np.ndarray, p: float) -> float:
    """E over every mask of the hidden layer of the mean cross-entropy, minus the clean one."""
    first, last = model[:2], model[3]
    keep = 1 - p
    with torch.no_grad():
        h = first(torch.from_numpy(X))
        y = torch.from_numpy(labels)
        clean = nn.functional.cross_entropy(last(h), y).item()
        total = 0.0
        for bits in itertools.product([0, 1], repeat=h.shape[1]):
            r = torch.tensor(bits, dtype=torch.float64)
            weight = float(np.prod([keep if b else 1 - keep for b in bits]))
            total += weight * nn.functional.cross_entropy(last(h * r / keep), y).item()
    return total - clean


def _by_finite_differences(model: nn.Sequential, X, labels, keep: float) -> float:
    """½ λ mean_k Σ_j g_jᵀ H g_j with g_j and H by central differences, in NumPy terms."""
    first, last = model[:2], model[3]
    W = last.weight.detach().numpy()
    b = last.bias.detach().numpy()
    with torch.no_grad():
        H_all = first(torch.from_numpy(X)).numpy()
    lam, eps, total = (1 - keep) / keep, 1e-4, 0.0

    def loss(z, y):
        z = z - z.max()
        return np.log(np.exp(z).sum()) - z[y]

    for h, y in zip(H_all, labels):
        f = W @ h + b
        K = len(f)
        H = np.zeros((K, K))
        for i in range(K):
            for j in range(K):
                ei, ej = np.eye(K)[i] * eps, np.eye(K)[j] * eps
                H[i, j] = (
                    loss(f + ei + ej, y)
                    - loss(f + ei - ej, y)
                    - loss(f - ei + ej, y)
                    + loss(f - ei - ej, y)
                ) / (4 * eps * eps)
        for j in range(len(h)):
            m = np.ones(len(h))
            up, down = m.copy(), m.copy()
            up[j] += eps
            down[j] -= eps
            g = (W @ (h * up) - W @ (h * down)) / (2 * eps)
            total += 0.5 * lam * g @ H @ g
    return total / len(X)


def test_cross_entropy_through_a_relu_net_is_the_formula_by_finite_differences():
    model = _seeded(nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3)), 5)
    X = np.random.default_rng(5).normal(size=(7, 3))
    labels = np.random.default_rng(6).integers(0, 3, size=7)
    report = dropout_penalty(model, X, Y=labels, loss="cross_entropy", n_masks=2000)
    assert report.second_order == pytest.approx(
        _by_finite_differences(model, X, labels, 0.7), rel=1e-5
    )


def test_the_approximation_error_falls_with_the_size_of_the_perturbation():
    # a dropped unit is a jump, not a small move, so the expansion is not exact as p -> 0;
    # it is as each unit's effect on the logits shrinks: scaling the last layer by s makes
    # the third-order error relative to the second-order term O(s)
    model = _seeded(nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3)), 5)
    X = np.random.default_rng(5).normal(size=(7, 3))
    labels = np.random.default_rng(6).integers(0, 3, size=7)
    errors = []
    for scale in (1.0, 0.1):
        if scale != 1.0:
            with torch.no_grad():
                model[3].weight.mul_(scale)
        truth = _enumerated(model, X, labels, 0.3)
        approx = dropout_penalty(model, X, Y=labels, loss="cross_entropy", n_masks=2000)
        errors.append(abs(approx.second_order - truth) / truth)
    assert errors[1] < errors[0] / 5
    assert errors[1] < 0.05


def test_the_shares_add_up_and_dropblock_has_none():
    model = _seeded(
        nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Dropout(0.2), nn.Linear(5, 5), nn.ReLU(),
                      nn.Dropout(0.4), nn.Linear(5, 2)),
        7,
    )  # fmt: skip
    X = np.random.default_rng(7).normal(size=(5, 4))
    report = dropout_penalty(model, X, n_masks=2000)
    assert report.second_order == pytest.approx(float(np.sum(report.own_second_order)), rel=1e-12)
    assert np.all(report.own_second_order > 0)
