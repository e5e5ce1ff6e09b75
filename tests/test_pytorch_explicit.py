"""The differentiable explicit dropout regularizer of a PyTorch model.

Checked against independent computations: the second-order approximation and the exact
penalty of :func:`dropout_penalty` (computed without a graph, in float64, from the
Hessian by autograd); central finite differences of the value in the parameters; the
gradient of the dropout penalty itself, averaged over masks drawn by torch's own
dropout in training mode, where the expansion is exact; and the mean of the sampled
value over many seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from regtheory import InvalidParameterError  # noqa: E402
from regtheory.pytorch import DropBlock2d, dropout_penalty, explicit_regularizer  # noqa: E402


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    return model.double()


def _mlp(seed: int = 0) -> nn.Module:
    return _seeded(
        nn.Sequential(
            nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 5), nn.Tanh(),
            nn.Dropout(0.2), nn.Linear(5, 3),
        ),
        seed,
    )  # fmt: skip


def _cnn(seed: int = 0) -> nn.Module:
    return _seeded(
        nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.25), nn.MaxPool2d(2),
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            nn.Dropout(0.4), nn.Linear(4 * 3 * 3, 3),
        ),
        seed,
    )  # fmt: skip


def _linear_after(seed: int = 0) -> nn.Module:
    return _seeded(
        nn.Sequential(
            nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 5), nn.Linear(5, 3)
        ),
        seed,
    )


def _data(model_name: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    shape = (4,) if model_name == "mlp" else (2, 6, 6)
    return rng.normal(size=(7, *shape)), rng.integers(0, 3, size=7), rng.normal(size=(7, 3))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_value_is_the_second_order_term_of_dropout_penalty(name, loss):
    model = _mlp() if name == "mlp" else _cnn()
    if name == "cnn":
        with torch.no_grad():
            model[5].running_mean.uniform_(-0.5, 0.5)
            model[5].running_var.uniform_(0.5, 2.0)
    X, labels, Y = _data(name)
    target = labels if loss == "cross_entropy" else Y
    want = dropout_penalty(model, X, Y=target, loss=loss, n_masks=1000).second_order
    model.train()
    reg = explicit_regularizer(model, X, Y=target, loss=loss)
    assert reg.value.dtype == torch.float64 and reg.value.dim() == 0
    assert reg.value.requires_grad
    assert reg.value.item() == pytest.approx(want, rel=1e-9)
    assert reg.method == "second order"
    assert model.training and model[2].training  # modes restored


def test_callable_loss_takes_the_hessian_by_autograd():
    model = _mlp()
    X, labels, _ = _data("mlp")
    want = dropout_penalty(model, X, Y=labels, loss="cross_entropy", n_masks=1000).second_order

    def ce(out, target):
        return F.cross_entropy(out, target, reduction="none")

    assert explicit_regularizer(model, X, Y=labels, loss=ce).value.item() == pytest.approx(
        want, rel=1e-9
    )
    with pytest.raises(InvalidParameterError, match="sampled"):
        explicit_regularizer(model, X, Y=labels, loss=ce, hessian="sampled")


def test_where_dropout_penalty_is_exact_the_regularizer_is_the_penalty():
    model = _linear_after()
    X, _, Y = _data("mlp")
    report = dropout_penalty(model, X, Y=Y)
    assert report.method == "exact"
    reg = explicit_regularizer(model, X, Y=Y)
    assert reg.method == "exact"
    assert reg.value.item() == pytest.approx(report.value, rel=1e-9)


def _grads(value, model):
    """Gradients in every parameter, zero where the value does not depend on one."""
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_gradients_are_finite_differences_of_the_value(loss):
    model = _cnn(2)
    X, labels, Y = _data("cnn", 3)
    target = labels if loss == "cross_entropy" else Y
    reg = explicit_regularizer(model, X, Y=target, loss=loss)
    params = list(model.parameters())
    grads = _grads(reg.value, model)
    eps = 1e-6
    for which, index in [(0, (1, 0, 2, 1)), (2, (2, 1, 0, 0)), (4, (1,)), (6, (1, 5))]:
        p = params[which]
        values = []
        for step in (eps, -2 * eps):
            with torch.no_grad():
                p[index] += step
            values.append(explicit_regularizer(model, X, Y=target, loss=loss).value.item())
        with torch.no_grad():
            p[index] += eps
        up, down = values
        assert grads[which][index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5)


def _mc_gradient(model, X, Y, coords, n_draws, seed):
    """Mean and standard error over torch's own dropout masks of the gradient of
    (masked loss − clean loss), per coordinate, by autograd through the model."""
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    model.eval()
    clean = _grads(((model(x) - y) ** 2).sum(dim=1).mean(), model)
    model.train()
    torch.manual_seed(seed)
    rows = []
    for _ in range(n_draws):
        g = _grads(((model(x) - y) ** 2).sum(dim=1).mean(), model)
        rows.append([(g[w][i] - clean[w][i]).item() for w, i in coords])
    model.eval()
    rows = np.array(rows)
    return rows.mean(axis=0), rows.std(axis=0, ddof=1) / np.sqrt(n_draws)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_is_the_mean_gradient_of_the_dropout_penalty_where_exact(seed):
    model = _linear_after(seed)
    X, _, Y = _data("mlp", seed + 5)
    coords = [(0, (2, 1)), (1, (3,)), (2, (1, 4)), (4, (2, 0)), (5, (1,))]
    reg = explicit_regularizer(model, X, Y=Y)
    assert reg.method == "exact"
    grads = _grads(reg.value, model)
    mean, se = _mc_gradient(model, X, Y, coords, 4000, seed)
    for (w, i), m, s in zip(coords, mean, se):
        assert abs(grads[w][i].item() - m) < 4 * s, (w, i, grads[w][i].item(), m, s)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_sampled_hessian_is_unbiased(loss):
    model = _mlp(4)
    X, labels, _ = _data("mlp", 6)
    want = explicit_regularizer(model, X, loss=loss).value.item()
    values = np.array(
        [
            explicit_regularizer(model, X, loss=loss, hessian="sampled", rng=s).value.item()
            for s in range(300)
        ]
    )
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - want) < 4 * se
    assert se > 0


def test_the_value_lives_on_the_model_in_its_dtype_and_trains():
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4))
    X = torch.randn(5, 3)
    labels = torch.randint(4, (5,))
    for hessian in ("exact", "sampled"):
        model.zero_grad()
        reg = explicit_regularizer(model, X, loss="cross_entropy", hessian=hessian, rng=0)
        assert reg.value.dtype == torch.float32 and reg.value.shape == ()
        assert reg.hessian == hessian and reg.dropouts == ("model[2] (Dropout, p=0.5)",)
        (F.cross_entropy(model(X), labels) + reg.value).backward()
        assert all(p.grad is not None for p in model.parameters())
        assert torch.allclose(reg.own.sum(), reg.value)


def test_refusals_name_the_site_or_the_argument():
    X = np.ones((2, 1, 8, 8))
    blocks = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), DropBlock2d(0.2, 3))
    with pytest.raises(InvalidParameterError, match=r"model\[1\] \(DropBlock2d"):
        explicit_regularizer(blocks, X)
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 1))
    with pytest.raises(InvalidParameterError, match="hessian"):
        explicit_regularizer(model, np.ones((2, 2)), hessian="diagonal")
    with pytest.raises(InvalidParameterError, match="no dropout"):
        explicit_regularizer(nn.Linear(2, 1), np.ones((2, 2)))


def test_output_is_the_models_clean_output_with_its_graph():
    model = _cnn(3)
    X, labels, _ = _data("cnn", 3)
    reg = explicit_regularizer(model, X, loss="cross_entropy")
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(X))
    assert torch.allclose(reg.output, want, rtol=1e-12, atol=1e-12)
    assert reg.output.requires_grad and reg.noise is None


def _noise_by_hand(model, X, Y, keep):
    """∂L/∂m of Dropout(p) → Linear(u) under mse, by hand: -2/n (y - f)ᵀ u_j x_j."""
    u = model[1].weight.detach().numpy()
    f = X @ u.T
    return -2.0 / len(X) * ((Y - f) @ u) * X  # (n, d): one entry per mask entry


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_has_mean_zero_and_dropouts_first_order_variance(seed):
    rng = np.random.default_rng(seed)
    keep = 0.7
    model = nn.Sequential(nn.Dropout(1 - keep), nn.Linear(5, 2, bias=False)).double()
    torch.manual_seed(seed)
    X, Y = rng.standard_normal((6, 5)), rng.standard_normal((6, 2))
    g = _noise_by_hand(model, X, Y, keep)
    want_var = (1 - keep) / keep * (g * g).sum()  # Var ⟨g, m - 1⟩, independent entries
    draws = np.array(
        [explicit_regularizer(model, X, Y=Y, noise=True, rng=s).noise.item() for s in range(1500)]
    )
    se_mean = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean()) < 4 * se_mean
    second = draws**2
    se_var = second.std(ddof=1) / np.sqrt(len(draws))
    assert abs(second.mean() - want_var) < 4 * se_var, (second.mean(), want_var, se_var)


def test_noise_gradient_flows_and_needs_targets():
    model = _mlp(1)
    X, _, Y = _data("mlp", 1)
    reg = explicit_regularizer(model, X, Y=Y, noise=True, rng=0)
    (reg.value + reg.noise).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    again = explicit_regularizer(model, X, Y=Y, noise=True, rng=0)
    assert again.noise.item() == reg.noise.item()  # same seed, same masks
    with pytest.raises(InvalidParameterError, match="noise=True"):
        explicit_regularizer(model, X, noise=True)


def test_the_trace_is_kept_until_the_model_changes():
    model = _linear_after(2)
    X, _, _ = _data("mlp", 2)
    first = explicit_regularizer(model, X).value.item()
    model[2].p = 0.6  # a new rate: λ from 3/7 to 3/2, the value scales with it
    second = explicit_regularizer(model, X).value.item()
    assert second == pytest.approx(first * (0.6 / 0.4) / (0.3 / 0.7), rel=1e-12)
    model[4] = nn.Linear(5, 3).double()  # a module swapped: traced anew
    third = explicit_regularizer(model, X).value.item()
    want = dropout_penalty(model, X, method="exact").value
    assert third == pytest.approx(want, rel=1e-9)


# ------------------------------------------------------------- training with the regularizer
def _linear_classifier(drop: float | None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Dropout(drop) if drop is not None else nn.Identity(), nn.Linear(4, 3)]
    return nn.Sequential(*layers).double()


def test_training_with_dropout_off_is_training_without_dropout():
    from regtheory.pytorch import train_classifier

    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    off = train_classifier(
        _linear_classifier(0.4), X, labels, epochs=20, batch_size=8, dropout_as="off"
    )
    plain = train_classifier(_linear_classifier(None), X, labels, epochs=20, batch_size=8)
    for a, b in zip(off.parameters(), plain.parameters()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_training_on_the_explicit_regularizer_reaches_the_dropout_ridge_solution():
    """Squared error, dropout on the input of a linear map: the explicit objective is the
    dropout objective, ‖Y − XWᵀ − b‖²/n + λ Σ_j ‖W_:j‖² mean(x_j²), minimised in closed
    form by a ridge solve with the data-dependent diagonal (bias not penalised)."""
    from regtheory.pytorch import train_classifier

    rng = np.random.default_rng(1)
    keep = 0.6
    X = rng.standard_normal((60, 4)) * np.array([1.0, 2.0, 0.5, 1.5])
    labels = rng.integers(0, 3, 60)
    trained = train_classifier(
        _linear_classifier(1 - keep), X, labels, epochs=1500, lr=0.02, loss="mse",
        dropout_as="explicit",
    )  # fmt: skip
    Y = np.eye(3)[labels]
    A = np.hstack([X, np.ones((60, 1))])
    lam = (1 - keep) / keep
    penalty = np.diag(np.append(lam * (X**2).sum(axis=0), 0.0))
    solution = np.linalg.solve(A.T @ A + penalty, A.T @ Y)  # (5, 3): W^T and b
    W = trained[1].weight.detach().numpy()
    b = trained[1].bias.detach().numpy()
    np.testing.assert_allclose(W, solution[:4].T, atol=1e-4)  # reached: 1e-8 over 5 seeds
    np.testing.assert_allclose(b, solution[4], atol=1e-4)


def test_training_with_noise_is_reproducible_and_differs_from_without():
    from regtheory.pytorch import train_classifier

    X, labels, _ = _data("mlp", 0)
    model = _mlp(0).float()
    kwargs = dict(epochs=3, batch_size=4, loss="cross_entropy", hessian="sampled", rng=3)
    a = train_classifier(model, X, labels, dropout_as="explicit+noise", **kwargs)
    b = train_classifier(model, X, labels, dropout_as="explicit+noise", **kwargs)
    c = train_classifier(model, X, labels, dropout_as="explicit", **kwargs)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb) and torch.isfinite(pa).all()
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_training_options_are_checked():
    from regtheory.pytorch import train_classifier

    X, labels = np.ones((4, 4)), np.array([0, 1, 2, 0])
    model = _linear_classifier(0.5)
    with pytest.raises(InvalidParameterError, match="dropout_as"):
        train_classifier(model, X, labels, dropout_as="implicit")
    with pytest.raises(InvalidParameterError, match="weight_decay"):
        train_classifier(model, X, labels, weight_decay=-1.0)
    with pytest.raises(InvalidParameterError, match="loss"):
        train_classifier(model, X, labels, loss="hinge")
