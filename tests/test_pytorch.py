"""regtheory.pytorch against PyTorch itself and against dense-matrix formulas.

Conversions are checked by running the torch model (eval mode) and the converted
layers on the same inputs; exact penalties against the closed forms written out with
matrices here; the Monte Carlo penalty against the loss gap of the torch model run in
train mode, with torch's own dropout masks.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

import regtheory
from regtheory import InvalidParameterError, network
from regtheory.masks import Bernoulli, Channel

torch = pytest.importorskip("torch")
nn = torch.nn

from regtheory import pytorch  # noqa: E402 (needs torch)

N_SE = 4  # Monte Carlo agreement is required within this many standard errors


def _seeded(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def _fc():
    return nn.Sequential(
        nn.Linear(5, 6, bias=False),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Sequential(nn.Linear(6, 4, bias=False), nn.ReLU()),
        nn.Linear(4, 2, bias=False),
    )


def _conv2d(same, mode):
    """Two same-size 2-D convs, the first 3x3, the second 1x5 (padding 'same' or k//2)."""
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding="same" if same else 1, padding_mode=mode, bias=False),
        nn.ReLU(),
        nn.Dropout2d(0.2),
        nn.Conv2d(3, 2, (1, 5), padding="same" if same else (0, 2), padding_mode=mode, bias=False),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(2 * 5 * 6, 3, bias=False),
    )


def _conv1d(same, mode):
    return nn.Sequential(
        nn.Dropout1d(0.4),
        nn.Conv1d(3, 4, 5, padding="same" if same else 2, padding_mode=mode, bias=False),
        nn.ReLU(),
        nn.Conv1d(4, 2, 3, padding="same" if same else 1, padding_mode=mode, bias=False),
        nn.Flatten(),
        nn.Linear(2 * 7, 2, bias=False),
    )


def _nets():
    yield "fc", _fc, (5,)
    for same in (True, False):
        for mode in ("zeros", "circular"):
            tag = f"{'same' if same else 'int'}-{mode}"
            yield f"conv2d-{tag}", lambda s=same, m=mode: _conv2d(s, m), (2, 5, 6)
            yield f"conv1d-{tag}", lambda s=same, m=mode: _conv1d(s, m), (3, 7)


NETS = list(_nets())


@pytest.mark.parametrize("name,build,shape", NETS, ids=[n[0] for n in NETS])
def test_conversion_equals_the_model_in_eval_mode(name, build, shape):
    model = _seeded(build().double(), 1).eval()
    x = np.random.default_rng(2).normal(size=(4, *shape))
    layers = pytorch.from_torch(model, shape)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    ours = network.forward(layers, x)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,build,shape", NETS[:3], ids=[n[0] for n in NETS[:3]])
def test_float32_models_are_converted_to_float64(name, build, shape):
    model = _seeded(build(), 3).eval()  # float32 parameters
    x = np.random.default_rng(4).normal(size=(4, *shape)).astype(np.float32)
    layers = pytorch.from_torch(model, shape)
    weights = [layer.weight for layer in layers if hasattr(layer, "weight")]
    assert all(w.dtype == np.float64 and not w.flags.writeable for w in weights)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    ours = network.forward(layers, x.astype(np.float64))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_mask_kinds_and_keeps():
    layers = pytorch.from_torch(_fc(), (5,))
    assert layers[2].masks == Bernoulli(0.7)
    layers = pytorch.from_torch(_conv1d(True, "zeros"), (3, 7))
    assert layers[0].masks == Channel(0.6)
    assert [type(layer).__name__ for layer in layers] == [
        "Dropout",
        "Conv",
        "ReLU",
        "Conv",
        "Linear",
    ]


def test_exact_report_equals_the_last_layer_formula():
    # dropout on the input of the last layer: lambda sum_i ||u_i||^2 mean_k h_i(x_k)^2
    model = _seeded(
        nn.Sequential(nn.Linear(5, 4, bias=False), nn.Dropout(0.3), nn.Linear(4, 2, bias=False)), 5
    )
    X = np.random.default_rng(6).normal(size=(7, 5))
    V, U = (m.weight.detach().double().numpy() for m in (model[0], model[2]))
    H = X @ V.T
    expected = 0.3 / 0.7 * np.sum(np.sum(U**2, axis=0) * np.mean(H**2, axis=0))
    report = pytorch.dropout_penalty(model, torch.from_numpy(X).float().requires_grad_())
    assert report.method == "exact" and report.stderr == 0.0
    assert report.terms is not None and report.terms.value == report.value
    np.testing.assert_allclose(report.value, expected, rtol=1e-6)  # X passed as float32
    report = pytorch.dropout_penalty(model, X, Y=np.zeros((7, 2)))
    np.testing.assert_allclose(report.value, expected, rtol=1e-10)


def test_exact_report_equals_the_channel_formula():
    # Dropout1d on the input of a flattening linear layer W: channel c of x_k feeds the
    # columns W_c, so the penalty is lambda sum_c mean_k ||W_c x_k[c]||^2
    model = _seeded(
        nn.Sequential(nn.Dropout1d(0.25), nn.Flatten(), nn.Linear(12, 2, bias=False)), 7
    )
    X = np.random.default_rng(8).normal(size=(5, 3, 4))
    W = model[2].weight.detach().double().numpy().reshape(2, 3, 4)
    per_channel = np.einsum("ocl,kcl->kco", W, X)
    expected = 0.25 / 0.75 * np.sum(np.mean(np.sum(per_channel**2, axis=2), axis=0))
    report = pytorch.dropout_penalty(model, X)
    np.testing.assert_allclose(report.value, expected, rtol=1e-10)


def _torch_gap(model, X, Y, n_draws, seed):
    """Mean and standard error of L(r) - L(1) over torch's own masks (train mode)."""
    torch.manual_seed(seed)
    n = len(X)
    with torch.no_grad():
        base = torch.mean(torch.sum((Y - model.eval()(X)) ** 2, dim=1))
        out = model.train()(X.repeat(n_draws, *[1] * (X.dim() - 1))).reshape(n_draws, n, -1)
        draws = torch.mean(torch.sum((Y[None] - out) ** 2, dim=2), dim=1) - base
    return draws.mean().item(), draws.std().item() / np.sqrt(n_draws)


def test_monte_carlo_report_agrees_with_torch_in_train_mode():
    model = _seeded(
        nn.Sequential(
            nn.Linear(4, 6, bias=False), nn.Dropout(0.4), nn.ReLU(), nn.Linear(6, 2, bias=False)
        ),
        9,
    ).double()
    rng = np.random.default_rng(10)
    X, Y = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    report = pytorch.dropout_penalty(model, X, Y=torch.from_numpy(Y), n_masks=4000, seed=11)
    assert report.method == "mc" and report.terms is None and report.stderr > 0
    mean, se = _torch_gap(model, torch.from_numpy(X), torch.from_numpy(Y), 20000, seed=12)
    assert abs(report.value - mean) < N_SE * np.hypot(report.stderr, se)


@pytest.mark.parametrize(
    "model,shape,message",
    [
        (
            nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2, track_running_stats=False)),
            (3,),
            r"model\[1\] \(BatchNorm1d\) has no running statistics",
        ),
        (
            nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(3)),
            (3,),
            r"does not fit the model at model\[1\] \(BatchNorm1d\)",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), pytorch.DropBlock2d(0.1, 5)),
            (1, 4, 4),
            r"model\[1\] \(DropBlock2d, p=0.1\): it has block_size 5",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1, bias=False)),
            (2, 4, 4),
            r"`input_shape` \(2, 4, 4\) does not fit the model at model\[0\] \(Conv2d\)",
        ),
        (
            nn.Sequential(nn.Conv1d(1, 2, 5, padding=0, bias=False)),
            (1, 4),
            r"`input_shape` \(1, 4\) does not fit the model at model\[0\] \(Conv1d\)",
        ),
        (
            nn.Sequential(nn.Flatten(), nn.Dropout2d(0.5), nn.Linear(16, 1, bias=False)),
            (1, 4, 4),
            r"model\[1\] \(Dropout2d, p=0.5\): it needs 3 feature axes",
        ),
        (
            nn.Sequential(nn.Linear(3, 2, bias=False), nn.Dropout(0.5)),
            (4,),
            r"does not fit the model at model\[0\] \(Linear\)",
        ),
    ],
)
def test_unsupported_modules_are_refused_by_position_and_type(model, shape, message):
    with pytest.raises(InvalidParameterError, match=message):
        pytorch.from_torch(model, shape)


@pytest.mark.parametrize(
    "model, shape",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True)), (1, 5, 5)),
        (nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=1)), (3,)),
        (nn.Sequential(nn.Conv1d(1, 2, 2, padding="same")), (1, 6)),
        (nn.Sequential(nn.Conv1d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 6)),
        (nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2)), (4,)),
    ],
)
def test_modules_without_a_node_are_evaluated_by_torch(model, shape):
    # steps the package has no node for (a ceil-mode pool, softmax, reflect padding, an
    # even 'same' kernel, LayerNorm) are kept as torch functions: the graph's forward is
    # still the model's, to float64 rounding
    model = _seeded(model.double(), 5)
    X = np.random.default_rng(6).normal(size=(7, *shape))
    graph = pytorch.from_torch(model, shape)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(graph.forward(X), want, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_monte_carlo_report_without_targets_is_the_perturbation_energy():
    # Y=None: the targets are the model's own mask-free output
    model = _seeded(
        nn.Sequential(
            nn.Conv1d(2, 3, 3, padding=1, padding_mode="circular", bias=False),
            nn.Dropout1d(0.3),
            nn.ReLU(),
            nn.Conv1d(3, 1, 1, padding="valid", bias=False),
        ),
        13,
    ).double()
    X = torch.from_numpy(np.random.default_rng(14).normal(size=(6, 2, 5)))
    report = pytorch.dropout_penalty(model, X, seed=15)
    with torch.no_grad():
        Y = model.eval()(X).reshape(6, -1)
    flat = nn.Sequential(model, nn.Flatten())
    mean, se = _torch_gap(flat, X, Y, 20000, seed=16)
    assert report.method == "mc"
    assert abs(report.value - mean) < N_SE * np.hypot(report.stderr, se)


def test_a_model_without_dropout_is_refused():
    with pytest.raises(InvalidParameterError, match="`model` has no dropout"):
        pytorch.dropout_penalty(nn.Sequential(nn.Linear(3, 1, bias=False)), np.ones((2, 3)))


@pytest.mark.slow
def test_only_the_pytorch_module_imports_torch():
    package = Path(regtheory.__file__).resolve().parent
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "torch" for name in names):
                importers.add(str(path.relative_to(package).parent))
    assert importers == {"pytorch"}  # the files of the regtheory.pytorch package


@pytest.mark.slow
def test_dropblock2d_samples_the_exact_mask_moments():
    # first and second moments of torch-sampled masks against the brute-force cover sets
    from _dropblock import dropblock_mask_moments

    keep, block, image, n = 0.6, 3, (5, 6), 40000
    first, second = dropblock_mask_moments(keep, image, block)
    drop = pytorch.DropBlock2d(1 - keep, block).train()
    torch.manual_seed(17)
    m = drop(torch.ones(n, 1, *image, dtype=torch.float64)).reshape(n, -1).numpy()
    se = m.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(m.mean(axis=0) - first) < N_SE * se)
    pairs = m[:, :, None] * m[:, None, :]
    se2 = pairs.std(axis=0) / np.sqrt(n)
    # 465 distinct pairs: 5 standard errors keeps the family-wise false alarm below 1e-3
    assert np.all(np.abs(pairs.mean(axis=0) - second) <= 5 * se2 + 1e-12)
    assert torch.equal(drop.eval()(torch.ones(2, 1, *image)), torch.ones(2, 1, *image))
    layers = pytorch.from_torch(nn.Sequential(drop), (1, *image))
    assert layers[0].masks == regtheory.masks.DropBlock(keep, block)


@pytest.mark.parametrize(
    "args,message",
    [((1.0, 3), r"`p` must be a probability"), ((0.1, 0), r"`block_size`")],
)
def test_dropblock2d_refuses_bad_settings(args, message):
    with pytest.raises(InvalidParameterError, match=message):
        pytorch.DropBlock2d(*args)
    drop = pytorch.DropBlock2d(0.1, 4)
    with pytest.raises(InvalidParameterError, match="block_size"):
        drop(torch.ones(1, 1, 3, 8))


# ----------------------------------------------------------------------------- biases, norms


def _randomise_norms(model, seed):
    """Give every batch norm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g, dtype=m.running_mean.dtype))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=m.running_var.dtype))
            if m.weight is not None:
                with torch.no_grad():
                    m.weight.copy_(1 + 0.3 * torch.randn(c, generator=g))
                    m.bias.copy_(torch.randn(c, generator=g))
    return model


def _rich_conv():
    """Biases, batch norms (folded after a conv, inserted after a GELU), a Tanh, all dropouts."""
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.GELU(),
        nn.BatchNorm2d(3, affine=False),
        pytorch.DropBlock2d(0.3, 2),
        nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"),
        nn.Dropout2d(0.2),
        nn.Identity(),
        nn.Conv2d(3, 2, 1),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(2 * 5 * 5, 3),
        nn.BatchNorm1d(3),
    )


def _rich_fc():
    return nn.Sequential(
        nn.Linear(5, 6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 4), nn.BatchNorm1d(4),
        nn.Dropout(0.4), nn.LeakyReLU(0.1), nn.Linear(4, 2),
    )  # fmt: skip


def test_biases_norms_and_activations_convert_to_the_model_in_eval_mode():
    for build, shape in ((_rich_conv, (2, 5, 5)), (_rich_fc, (5,))):
        model = _randomise_norms(_seeded(build().double(), 20), 21).eval()
        x = np.random.default_rng(22).normal(size=(4, *shape))
        layers = pytorch.from_torch(model, shape)
        assert not any(isinstance(m, nn.BatchNorm1d) for m in layers)
        with torch.no_grad():
            theirs = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(network.forward(layers, x), theirs, rtol=1e-12, atol=1e-12)
    names = [type(layer).__name__ for layer in pytorch.from_torch(_rich_conv(), (2, 5, 5))]
    # the first norm folds into its conv, the second (after the GELU) is a 1-wide conv
    assert names == ["Conv", "Elementwise", "Conv", "Dropout", "Conv", "Dropout", "Conv",
                     "Dropout", "Linear"]  # fmt: skip


def test_exact_report_with_biases_and_a_folded_norm_equals_the_dense_formula():
    # Tanh features h (with bias), dropout, then Linear + BatchNorm: the last map is
    # z -> s * (U z + b) + t, so the penalty is lambda sum_i ||(s * U)_i||^2 mean_k h_i^2
    model = _randomise_norms(
        _seeded(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Dropout(0.35), nn.Linear(4, 3),
                              nn.BatchNorm1d(3)), 23), 24)  # fmt: skip
    model = model.eval()  # float32 parameters: the formula below reads the same float32 values
    X = np.random.default_rng(25).normal(size=(9, 5))
    V, c, U = (
        t.detach().double().numpy() for t in (model[0].weight, model[0].bias, model[3].weight)
    )
    bn = model[4]
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    H = np.tanh(X @ V.T + c)
    expected = 0.35 / 0.65 * np.sum(np.sum((s[:, None] * U) ** 2, axis=0) * np.mean(H**2, axis=0))
    report = pytorch.dropout_penalty(model, X, Y=np.ones((9, 3)))
    assert report.method == "exact"
    np.testing.assert_allclose(report.value, expected, rtol=1e-6)  # BN's float32 scale
    np.testing.assert_allclose(report.own, [report.value], rtol=1e-12)


@pytest.mark.slow
def test_the_torch_monte_carlo_agrees_with_the_numpy_engine_on_a_rich_net():
    # two independent samplers: torch's modules in train mode, NumPy masks on the layers
    model = _randomise_norms(_seeded(_rich_conv().double(), 26), 27)
    model[6] = nn.Sequential(nn.Dropout2d(0.2), nn.ReLU())  # a ReLU after a dropout
    X = np.random.default_rng(28).normal(size=(5, 2, 5, 5))
    Y = np.random.default_rng(29).normal(size=(5, 3))
    report = pytorch.dropout_penalty(model, X, Y=Y, n_masks=3000, seed=30)
    assert report.method == "mc" and len(report.dropouts) == 3
    est = network.dropout_penalty_mc(report.layers, X, Y, n_masks=3000, seed=31)
    assert abs(report.value - est.value) < N_SE * np.hypot(report.stderr, est.stderr)
    assert model.training  # modes restored


def _linear_model(dtype):
    return _seeded(
        nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Dropout(0.4),
                      nn.Conv1d(3, 2, 3, padding=1), nn.Dropout1d(0.3), nn.Flatten(),
                      nn.Linear(12, 2)), 32).to(dtype)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_torch_monte_carlo_agrees_with_the_exact_penalty_and_its_attribution(dtype):
    model = _linear_model(dtype)
    X = np.random.default_rng(33).normal(size=(6, 2, 6))
    Y = np.random.default_rng(34).normal(size=(6, 2))
    exact = pytorch.dropout_penalty(model, X, Y=Y)
    assert exact.method == "exact" and exact.terms is not None
    # each layer alone: for masks of mean one, the single-layer terms of the split
    np.testing.assert_allclose(exact.own, exact.terms.own, rtol=1e-10)
    np.testing.assert_allclose(exact.interaction, exact.terms.interaction, rtol=1e-8, atol=1e-12)
    forced = pytorch.dropout_penalty(model, X, Y=Y, method="mc", n_masks=4000, rng=35)
    assert abs(forced.value - exact.value) < N_SE * forced.stderr
    assert np.all(np.abs(forced.own - exact.own) < N_SE * forced.own_stderr)


@pytest.mark.slow
def test_monte_carlo_is_reproducible_and_leaves_torch_random_state_alone():
    model = _seeded(_fc().double(), 36)
    X = np.random.default_rng(37).normal(size=(4, 5))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a = pytorch.dropout_penalty(model, X, n_masks=1500, seed=38)
    assert torch.equal(torch.get_rng_state(), state)
    b = pytorch.dropout_penalty(model, X, n_masks=1500, seed=38)
    assert (a.value, a.stderr, tuple(a.own)) == (b.value, b.stderr, tuple(b.own))
    c = pytorch.dropout_penalty(model, X, n_masks=1500, seed=39)
    assert c.value != a.value
    d = pytorch.dropout_penalty(model, X, n_masks=1500, seed=38, by_layer=False)
    assert d.value == a.value and np.all(np.isnan(d.own))
    assert "nan" not in str(d) and "alone" not in str(d) and "model[2] (Dropout" in str(d)


def test_the_report_prints_and_serialises():
    model = _linear_model(torch.float64)
    X = np.random.default_rng(40).normal(size=(3, 2, 6))
    report = pytorch.dropout_penalty(model, X)
    text = str(report)
    assert "exact" in text and "model[2] (Dropout, p=0.4)" in text
    assert "model[4] (Dropout1d, p=0.3)" in text and "together" in text
    data = report.to_dict()
    assert data["method"] == "exact" and data["value"] == report.value
    assert [d["own"] for d in data["dropouts"]] == list(report.own)
    import json

    json.dumps(data)
    with pytest.raises(ValueError):
        report.own[0] = 1.0


# ----------------------------------------------------------------------------- to_torch


def test_to_torch_inverts_from_torch():
    for build, shape in ((_rich_conv, (2, 5, 5)), (_rich_fc, (5,)), (_fc, (5,))):
        model = _randomise_norms(_seeded(build().double(), 41), 42).eval()
        layers = pytorch.from_torch(model, shape)
        back = pytorch.to_torch(layers).eval()
        x = torch.from_numpy(np.random.default_rng(43).normal(size=(3, *shape)))
        with torch.no_grad():
            np.testing.assert_allclose(back(x).numpy(), model(x).numpy(), rtol=1e-12, atol=1e-12)
        again = pytorch.from_torch(back, shape)
        assert [type(a) for a in again] == [type(b) for b in layers]
        for a, b in zip(again, layers):
            if hasattr(a, "masks"):
                assert a.masks == b.masks


def test_to_torch_picks_the_channel_module_by_rank_and_refuses_what_torch_lacks():
    from regtheory.masks import Gaussian

    conv1 = network.Conv(np.ones((2, 2, 3)))
    kinds = [type(m) for m in pytorch.to_torch([network.Dropout(Channel(0.5)), conv1])]
    assert kinds == [nn.Dropout1d, nn.Conv1d]
    flat = [network.Linear(np.ones((2, 3))), network.Dropout(Channel(0.5))]
    assert type(pytorch.to_torch(flat)[-1]) is nn.Dropout
    with pytest.raises(InvalidParameterError, match=r"`layers\[1\]` \(Dropout\)"):
        pytorch.to_torch([conv1, network.Dropout(Gaussian(0.5))])
    with pytest.raises(InvalidParameterError, match=r"`layers\[0\]` \(Elementwise\)"):
        pytorch.to_torch([network.Elementwise(np.tanh), conv1])
    with pytest.raises(InvalidParameterError, match="`dtype`"):
        pytorch.to_torch([conv1], dtype=torch.int64)


def test_torchvision_dropblock_is_refused_with_the_reason():
    # a module of the same qualified name stands in for it (only its name and module path
    # are read), so the test runs where torchvision is not installed
    stand_in = type("DropBlock2d", (nn.Module,), {"forward": lambda self, x: x})
    stand_in.__module__ = "torchvision.ops.drop_block"
    with pytest.raises(
        InvalidParameterError, match=r"model\[1\] \(DropBlock2d\).*approximate rate"
    ):
        pytorch.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), stand_in()), (1, 5, 5))


def test_one_penalty_function_for_a_model_takes_method_and_rng():
    model = _seeded(_fc().double(), 62)  # dropout before a non-linearity: no exact form
    X = np.random.default_rng(63).normal(size=(4, 5))
    with pytest.raises(InvalidParameterError, match="method='mc'"):
        pytorch.dropout_penalty(model, X, method="exact")
    auto = pytorch.dropout_penalty(model, X, n_masks=1200, rng=64, by_layer=False)
    assert auto.method == "mc" and auto.n_masks == 1200
    with pytest.warns(DeprecationWarning, match="seed"):
        old = pytorch.dropout_penalty(model, X, n_masks=1200, seed=64, by_layer=False)
    assert (old.value, old.stderr) == (auto.value, auto.stderr)
    linear = _linear_model(torch.float64)
    X1 = np.random.default_rng(65).normal(size=(6, 2, 6))
    exact = pytorch.dropout_penalty(linear, X1)
    assert exact.method == "exact" and exact.n_masks is None
    forced = pytorch.dropout_penalty(linear, X1, method="mc", n_masks=3000, rng=66)
    assert forced.method == "mc" and abs(forced.value - exact.value) < N_SE * forced.stderr
    with pytest.warns(DeprecationWarning, match="PenaltyReport.total"):
        assert exact.total == exact.value


def test_a_callable_loss_gets_integer_labels_as_torch_takes_them():
    # a callable loss gets class indices as int64, so torch's own cross-entropy works in it
    # and measures what loss="cross_entropy" does, on the same masks
    net = _seeded(
        nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.3), nn.Linear(4, 3)).double(), 70
    )
    X = np.random.default_rng(71).normal(size=(8, 3))
    y = np.arange(8) % 3

    def nll(out, target):
        return nn.functional.cross_entropy(out, target, reduction="none")

    mine = pytorch.dropout_penalty(net, X, Y=y, loss=nll, n_masks=1000, rng=72)
    theirs = pytorch.dropout_penalty(net, X, Y=y, loss="cross_entropy", n_masks=1000, rng=72)
    assert mine.loss == "nll" and theirs.loss == "cross_entropy"
    assert mine.value == pytest.approx(theirs.value, rel=1e-12)


def test_why_a_penalty_is_not_exact_names_the_site():
    net = _seeded(
        nn.Sequential(
            nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.3), nn.Linear(4, 4),
            nn.ReLU(), nn.Dropout(0.3), nn.Linear(4, 3),
        ).double(),
        73,
    )  # fmt: skip
    report = pytorch.dropout_penalty(net, np.ones((4, 3)), n_masks=1000)
    assert report.method == "mc" and "`model[3]`" in report.reason
    with pytest.raises(InvalidParameterError, match=r"`model\[3\]`"):
        pytorch.dropout_penalty(net, np.ones((4, 3)), method="exact")
