# ruff: noqa: C408  -- keyword dict() calls read as the torch calls they mirror
"""The one network description (regtheory.layers) against independent computations.

Each node's shape inference and forward against torch's functional ops; the graph's
joins against the same computation written out; a toy node defined only here, through
the forward, the Monte Carlo engine and the exact penalty, against enumeration of the
masks; and the proof that there is one description: no other module defines a layer
class, and the very node objects a caller builds reach the exact moments, the Monte
Carlo engine and the torch export.
"""

import ast
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import regtheory
from regtheory import InvalidParameterError, layers, masks, network, pytorch
from regtheory.layers import (
    AdaptiveAvgPool,
    Add,
    AvgPool,
    Concat,
    Conv,
    DropConnect,
    Dropout,
    Elementwise,
    Flatten,
    Graph,
    Linear,
    MaxPool,
    Multiply,
    Node,
    ReLU,
    Reshape,
)

N_SE = 4  # Monte Carlo checks: within 4 standard errors
rng = np.random.default_rng(2026)


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# ----------------------------------------------------------------------------- nodes vs torch


CONV_CASES = [
    # (input shape, weight shape, options, torch options)
    ((3, 9, 8), (4, 3, 3, 3), {}, dict(padding=1)),
    ((4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), pad=(1, 2), dilation=(1, 2), groups=2),
     dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    ((2, 7, 7), (3, 2, 2, 2), dict(stride=2, pad=0), dict(stride=2)),
    ((2, 11), (4, 1, 3), dict(groups=2, dilation=2, pad=3), dict(groups=2, dilation=2, padding=3)),
    ((3, 10), (3, 3, 4), dict(stride=3, pad=1), dict(stride=3, padding=1)),
]  # fmt: skip


@pytest.mark.parametrize("shape, wshape, ours, theirs", CONV_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_shape_and_forward_match_torch(shape, wshape, ours, theirs, bias):
    x = rng.normal(size=(2, *shape))
    w = rng.normal(size=wshape)
    b = rng.normal(size=wshape[0]) if bias else None
    node = Conv(w, bias=b, **ours)
    torch_conv = F.conv2d if len(shape) == 3 else F.conv1d
    expected = torch_conv(_t(x), _t(w), None if b is None else _t(b), **theirs).numpy()
    assert node.out_shape(shape) == expected.shape[1:]
    np.testing.assert_allclose(node.forward(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, pad", [(1, "same"), (2, 1), (1, 2)])
def test_circular_conv_matches_torch_wrapped_padding(stride, pad):
    x, w = rng.normal(size=(2, 2, 6, 7)), rng.normal(size=(3, 2, 3, 3))
    node = Conv(w, padding="circular", stride=stride, pad=pad)
    amount = 1 if pad == "same" else pad
    wrapped = F.pad(_t(x), (amount,) * 4, mode="circular")
    expected = F.conv2d(wrapped, _t(w), stride=stride).numpy()
    assert node.out_shape((2, 6, 7)) == expected.shape[1:]
    np.testing.assert_allclose(node.forward(x), expected, rtol=1e-12, atol=1e-12)


POOL_CASES = [
    (AvgPool(3, stride=2, pad=1), lambda x: F.avg_pool2d(x, 3, 2, 1)),
    (AvgPool((2, 3)), lambda x: F.avg_pool2d(x, (2, 3))),
    (MaxPool(2), lambda x: F.max_pool2d(x, 2)),
    (MaxPool(3, stride=1, pad=1), lambda x: F.max_pool2d(x, 3, 1, 1)),
    (AdaptiveAvgPool((3, 5)), lambda x: F.adaptive_avg_pool2d(x, (3, 5))),
    (AdaptiveAvgPool(1), lambda x: F.adaptive_avg_pool2d(x, 1)),
]


@pytest.mark.parametrize("node, theirs", POOL_CASES, ids=lambda v: getattr(v, "name", ""))
def test_pooling_matches_torch_on_maps_and_signals(node, theirs):
    x = rng.normal(size=(2, 3, 9, 8))
    expected = theirs(_t(x)).numpy()
    assert node.out_shape(x.shape[1:]) == expected.shape[1:]
    np.testing.assert_allclose(node.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_one_dimensional_pooling_matches_torch():
    x = rng.normal(size=(2, 3, 11))
    cases = [
        (AvgPool(3, stride=2, pad=1), F.avg_pool1d(_t(x), 3, 2, 1)),
        (MaxPool(2), F.max_pool1d(_t(x), 2)),
        (AdaptiveAvgPool(4), F.adaptive_avg_pool1d(_t(x), 4)),
    ]
    for node, expected in cases:
        assert node.out_shape(x.shape[1:]) == tuple(expected.shape[1:])
        np.testing.assert_allclose(node.forward(x), expected.numpy(), rtol=1e-12, atol=1e-12)


def test_elementwise_and_reshaping_nodes_match_their_definitions():
    x = rng.normal(size=(3, 2, 4, 5))
    w, b = rng.normal(size=(6, 40)), rng.normal(size=6)
    checks = [
        (Linear(w, bias=b), F.linear(_t(x).flatten(1), _t(w), _t(b)).numpy()),
        (ReLU(), F.relu(_t(x)).numpy()),
        (Elementwise(np.tanh, name="tanh"), torch.tanh(_t(x)).numpy()),
        (Flatten(), torch.flatten(_t(x), 1).numpy()),
        (Reshape((8, 5)), _t(x).reshape(3, 8, 5).numpy()),
        (Multiply(np.arange(20.0).reshape(4, 5)), x * np.arange(20.0).reshape(4, 5)),
        (DropConnect(w, 0.5), x.reshape(3, -1) @ w.T),  # the layer at its mean mask
        (Dropout(masks.Bernoulli(0.5)), x),  # the mask-free network
    ]
    for node, expected in checks:
        assert node.out_shape(x.shape[1:]) == expected.shape[1:], node.name
        np.testing.assert_allclose(node.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_joins_match_their_definitions():
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    assert Add().out_shape((3, 4), (3, 4), (3, 4)) == (3, 4)
    np.testing.assert_array_equal(Add().forward(a, a, 2 * a), 4 * a)
    assert Concat().out_shape((3, 4), (5, 4)) == (8, 4)
    np.testing.assert_array_equal(Concat().forward(a, b), torch.cat([_t(a), _t(b)], 1).numpy())


def test_random_nodes_draw_their_mask_law():
    z = np.ones((20000, 3))
    out = Dropout(masks.Bernoulli(0.25)).draw(z, np.random.default_rng(0))
    assert set(np.unique(out)) == {0.0, 4.0}  # inverted dropout: kept entries scaled by 1/keep
    kept = (out > 0).mean()
    assert abs(kept - 0.25) < N_SE * np.sqrt(0.25 * 0.75 / out.size)
    # DropConnect: each draw is unbiased for the layer at its mean mask
    w = rng.normal(size=(2, 3))
    node = DropConnect(w, 0.5)
    draws = node.draw(np.ones((20000, 3)), np.random.default_rng(1))
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - w.sum(axis=1)) < N_SE * se)
    assert node.mask_law((3,)) == (masks.Bernoulli(0.5), (2, 3))


# ----------------------------------------------------------------------------- checks


def test_nodes_are_checked_once_when_built():
    cases = [
        (lambda: Linear(np.ones((2, 3)), bias=np.ones(3)), r"`bias` must have one entry"),
        (lambda: Conv(np.ones((3, 1, 3, 3)), groups=2), r"`groups` = 2 must divide"),
        (lambda: Conv(np.ones((1, 1, 2, 2))), r"pad='same'` needs an odd kernel"),
        (lambda: Conv(np.ones((1, 1, 3)), padding="reflect"), r"`padding` must be one of"),
        (lambda: Conv(np.ones((1, 1, 3)), stride=0), r"`stride` must be"),
        (lambda: AvgPool(2, pad=2), r"`pad` must be at most half the kernel"),
        (lambda: Dropout(0.5), r"`masks` must be a regtheory.masks distribution"),
        (lambda: DropConnect(np.ones((2, 2)), 1.5), r"keep"),
        (lambda: Elementwise(3.0), r"`function` must be callable"),
        (lambda: Multiply(np.array([np.nan])), r"`factor` must contain only finite"),
    ]
    for build, message in cases:
        with pytest.raises(InvalidParameterError, match=message):
            build()


def test_a_graph_is_checked_once_and_names_the_node_that_does_not_fit():
    with pytest.raises(InvalidParameterError, match=r"`layers\[1\]` must be a regtheory"):
        Graph([ReLU(), "relu"])
    with pytest.raises(InvalidParameterError, match=r"`layers\[2\]` \(Add\) takes two or more"):
        Graph([ReLU(), ReLU(), Add()])
    with pytest.raises(InvalidParameterError, match=r"`inputs\[1\]` must name earlier nodes"):
        Graph([ReLU(), Add()], inputs={1: (0, 1)})
    graph = Graph([Conv(np.ones((2, 1, 3, 3))), Flatten(), Linear(np.ones((1, 5)))])
    with pytest.raises(InvalidParameterError, match=r"`X` does not fit `layers\[2\]` \(Linear\)"):
        graph.shapes((1, 4, 4))
    with pytest.raises(InvalidParameterError, match=r"`x` does not fit `layers\[0\]` \(Conv\)"):
        network.forward(graph, np.ones((2, 3, 4, 4)))


def test_a_residual_block_runs_as_written_out():
    w1, w2 = rng.normal(size=(3, 3, 3, 3)), rng.normal(size=(3, 3, 1, 1))
    graph = Graph(
        [Conv(w1), ReLU(), Conv(w2), Add(), Concat(), AvgPool(2)],
        inputs={3: (2, -1), 4: (3, 0)},
    )
    x = rng.normal(size=(2, 3, 6, 6))
    t = _t(x)
    h = F.conv2d(_t(x), _t(w1), padding=1)
    y = F.conv2d(F.relu(h), _t(w2)) + t
    expected = F.avg_pool2d(torch.cat([y, h], 1), 2).numpy()
    assert not graph.is_chain and graph.out_shape((3, 6, 6)) == (6, 3, 3)
    np.testing.assert_allclose(graph.forward(x), expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- a toy node


@dataclass(frozen=True)
class Scale(Node):
    """z -> c z: a node defined here only, with the protocol's flags."""

    linear: ClassVar[bool] = True
    elementwise: ClassVar[bool] = True

    c: float

    def forward(self, *zs):
        return self.c * zs[0]


@dataclass(frozen=True)
class Cube(Node):
    """z -> z³: a non-linear toy node."""

    elementwise: ClassVar[bool] = True

    def forward(self, *zs):
        return zs[0] ** 3


def _enumerated_penalty(graph, X, Y):
    """E_r L(r) − L(1) by enumerating every mask of the graph's Bernoulli and Channel
    dropout layers, for each sample (independent masks per sample and layer)."""
    shapes = graph.shapes(X.shape[1:])
    at = graph.random_positions
    ins = [X.shape[1:] if graph.inputs[i][0] < 0 else shapes[graph.inputs[i][0]] for i in at]
    channel = [isinstance(graph[i].masks, masks.Channel) for i in at]
    sizes = [s[0] if c else int(np.prod(s)) for s, c in zip(ins, channel)]
    keeps = [graph[i].masks.keep for i in at]
    total = 0.0
    for k in range(len(X)):
        x, y = X[k : k + 1], Y[k : k + 1]
        clean = np.sum((graph.forward(x) - y) ** 2)
        expected = 0.0
        for bits in itertools.product([0, 1], repeat=sum(sizes)):
            chunks = np.split(np.array(bits, dtype=float), np.cumsum(sizes)[:-1])
            prob = np.prod(
                [q ** b.sum() * (1 - q) ** (len(b) - b.sum()) for q, b in zip(keeps, chunks)]
            )
            mask = {}
            for i, b, q, shape, c in zip(at, chunks, keeps, ins, channel):
                m = np.repeat(b, int(np.prod(shape[1:]))) if c else b
                mask[i] = m.reshape(shape) / q

            def step(i, node, inputs, mask=mask):
                return inputs[0] * mask[i] if i in mask else node.forward(*inputs)

            expected += prob * np.sum((graph.evaluate(x, step=step) - y) ** 2)
        total += expected - clean
    return total / len(X)


def test_a_toy_node_runs_through_forward_monte_carlo_and_the_exact_penalty():
    c = -1.7
    # on maps, after the dropout and between two same-size convolutions (the conv phase;
    # 9 masked units, enumerable), and on vectors (the fully connected phase)
    conv_net = Graph(
        [Conv(rng.normal(size=(1, 1, 3, 3)) / 2), Dropout(masks.Bernoulli(0.6)), Scale(c),
         Conv(rng.normal(size=(2, 1, 3, 3)) / 2), Linear(rng.normal(size=(2, 18)) / 3)]
    )  # fmt: skip
    fc_net = Graph(
        [Linear(rng.normal(size=(5, 3))), Dropout(masks.Bernoulli(0.5)), Scale(c),
         Linear(rng.normal(size=(2, 5)))]
    )  # fmt: skip
    for graph, x in ((conv_net, rng.normal(size=(4, 1, 3, 3))), (fc_net, rng.normal(size=(6, 3)))):
        plain = Graph([node for node in graph if not isinstance(node, Scale)])
        np.testing.assert_allclose(graph.forward(x), c * plain.forward(x), rtol=1e-12)
        Y = rng.normal(size=graph.forward(x).shape)
        exact = network.dropout_penalty(graph, x, Y=Y)
        assert exact == pytest.approx(_enumerated_penalty(graph, x, Y), rel=1e-10)
        est = network.dropout_penalty(graph, x, Y=Y, method="mc", n_masks=4000, rng=3)
        assert abs(est.value - exact) < N_SE * est.stderr


def test_a_non_linear_toy_node_is_estimated_and_refused_by_the_exact_penalty():
    graph = Graph(
        [Linear(rng.normal(size=(4, 3))), Dropout(masks.Bernoulli(0.5)), Cube(),
         Linear(rng.normal(size=(1, 4)))]
    )  # fmt: skip
    X = rng.normal(size=(5, 3))
    Y = rng.normal(size=(5, 1))
    with pytest.raises(
        InvalidParameterError, match=r"feeds a non-linearity \(the elementwise layer 'Cube'"
    ):
        network.dropout_penalty(graph, X, Y=Y, method="exact")
    est = network.dropout_penalty(graph, X, Y=Y, method="mc", n_masks=4000, rng=4)
    assert abs(est.value - _enumerated_penalty(graph, X, Y)) < N_SE * est.stderr


# ----------------------------------------------------------------------------- the paths


def test_linear_nodes_after_the_dropout_on_vectors_are_exact():
    # a Reshape to maps, a strided convolution, pooling and a Flatten in the fully connected
    # phase, against the closed form λ Σ_i ‖B e_i‖² mean(h_i²) of the linear map B after it
    W = rng.normal(size=(8, 3))
    tail = [Reshape((2, 4)), Conv(rng.normal(size=(3, 2, 2)), stride=2, pad=0), AvgPool(1),
            Flatten(), Linear(rng.normal(size=(2, 6)))]  # fmt: skip
    graph = Graph([Linear(W), Dropout(masks.Bernoulli(0.4)), *tail])
    X = rng.normal(size=(7, 3))
    B = Graph(tail).forward(np.eye(8)).T  # column i: the response to unit i
    h = X @ W.T
    lam = 0.6 / 0.4
    closed = lam * np.sum(np.sum(B**2, axis=0) * np.mean(h**2, axis=0))
    assert network.dropout_penalty(graph, X) == pytest.approx(closed, rel=1e-10)


def test_anything_before_the_first_dropout_is_read_through_its_forward():
    # a residual block, strided conv and max pooling feed a dropout before the last layer:
    # the explicit regularizer λ Σ_i u_i² mean(h_i²) for the features h they compute
    w1, w2 = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 2, 3, 3))
    prefix = Graph(
        [Conv(w1), ReLU(), Conv(w2, stride=2, pad=1), MaxPool(2), Conv(w2, pad=0, padding="zeros",
         stride=1, dilation=1), Add(), Flatten()],
        inputs={5: (4, 4)},
    )  # fmt: skip
    U = rng.normal(size=(1, 2))
    graph = Graph([*prefix, Dropout(masks.Bernoulli(0.5)), Linear(U)], inputs=prefix.inputs)
    X = rng.normal(size=(3, 1, 12, 12))
    h = prefix.forward(X)
    assert h.shape == (3, 2)
    closed = 1.0 * np.sum(U[0] ** 2 * np.mean(h**2, axis=0))
    assert network.dropout_penalty(graph, X) == pytest.approx(closed, rel=1e-10)
    est = network.dropout_penalty(graph, X, method="mc", n_masks=2000, rng=5)
    assert abs(est.value - closed) < N_SE * est.stderr


def test_pooling_and_strides_after_the_dropout_are_exact():
    # the conv phase ends at a linear node it does not stream (pooling, a strided conv),
    # read through its matrix; against enumeration of every mask
    def w(*shape):
        return rng.normal(size=shape) / 2

    cases = [
        (
            Graph([Conv(w(2, 1, 3)), Dropout(masks.Bernoulli(0.6)), Conv(w(2, 2, 3)),
                   AvgPool(2), Linear(w(2, 4))]),
            rng.normal(size=(3, 1, 5)),
        ),
        (
            Graph([Conv(w(3, 1, 3)), ReLU(), Dropout(masks.Bernoulli(0.7)),
                   Conv(w(3, 3, 3), stride=2, pad=1), Dropout(masks.Channel(0.5)),
                   AdaptiveAvgPool(1), Linear(w(2, 3))]),
            rng.normal(size=(3, 1, 3)),
        ),
        (
            Graph([Conv(w(1, 1, 3, 3)), Dropout(masks.Bernoulli(0.5)), Conv(w(2, 1, 3, 3)),
                   AdaptiveAvgPool(1), Flatten(), Dropout(masks.Channel(0.6)),
                   Linear(w(1, 2))]),
            rng.normal(size=(2, 1, 3, 3)),
        ),
    ]  # fmt: skip
    for graph, X in cases:
        Y = rng.normal(size=graph.forward(X).shape)
        exact = network.dropout_penalty(graph, X, Y=Y)
        assert exact == pytest.approx(_enumerated_penalty(graph, X, Y), rel=1e-10)


def test_paths_refuse_a_node_they_cannot_take_by_position_and_name_what_they_take():
    X = rng.normal(size=(3, 1, 4, 4))
    conv = Conv(rng.normal(size=(2, 1, 3, 3)))
    pooled = [conv, Dropout(masks.Bernoulli(0.5)), MaxPool(2), Flatten(),
              Linear(rng.normal(size=(1, 8)))]  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"cannot pass `layers\[2\]` \(MaxPool\)"):
        network.dropout_penalty(pooled, X, method="exact")
    with pytest.raises(InvalidParameterError, match=r"engine cannot run `layers\[2\]` \(MaxPool\)"):
        network.dropout_penalty(pooled, X, Y=np.zeros((3, 1)), method="mc", n_masks=1000)
    blocked = [conv, Dropout(masks.Bernoulli(0.5)), AvgPool(1), Dropout(masks.DropBlock(0.8, 2)),
               Linear(rng.normal(size=(1, 32)))]  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"DropBlock masks\) once the maps are read"):
        network.dropout_penalty(blocked, X, method="exact")
    residual = Graph(
        [conv, Dropout(masks.Bernoulli(0.5)), Conv(rng.normal(size=(2, 2, 3, 3))), Add()],
        inputs={3: (2, 0)},
    )
    # a mask-free skip joins the masked path exactly; Monte Carlo runs chains only
    assert network.dropout_penalty(residual, X, method="exact").is_exact
    with pytest.raises(InvalidParameterError, match=r"runs a chain after the first random"):
        network.dropout_penalty(residual, X, method="mc", n_masks=1000)
    two_masked = Graph(
        [*residual, Dropout(masks.Bernoulli(0.5)), Add()], inputs={3: (2, 0), 5: (4, 2)}
    )
    with pytest.raises(
        InvalidParameterError,
        match=r"`layers\[5\]` \(Add\) after .*`layers\[4\]` and `layers\[2\]` both depend on masks",
    ):
        network.dropout_penalty(two_masked, X, method="exact")


def test_torch_round_trip_of_the_new_nodes():
    graph = Graph(
        [Conv(rng.normal(size=(4, 1, 3, 3)), stride=2, pad=1, bias=rng.normal(size=4)),
         ReLU(), Dropout(masks.Channel(0.8)),
         Conv(rng.normal(size=(4, 2, 3, 3)), groups=2, dilation=2, pad=2, padding="circular"),
         MaxPool(2), AvgPool(3, stride=1, pad=1), AdaptiveAvgPool((2, 1)), Flatten(),
         Dropout(masks.Bernoulli(0.7)), Linear(rng.normal(size=(3, 8)))]
    )  # fmt: skip
    x = rng.normal(size=(2, 1, 9, 9))
    model = pytorch.to_torch(graph).eval()
    with torch.no_grad():
        theirs = model(_t(x)).numpy()
    np.testing.assert_allclose(graph.forward(x), theirs, rtol=1e-12, atol=1e-12)
    again = pytorch.from_torch(model, (1, 9, 9))
    # the Flatten before (an elementwise mask and) a Linear is dropped: a Linear flattens
    assert [node.name for node in again] == [n.name for n in graph if n.name != "Flatten"]
    np.testing.assert_allclose(again.forward(x), theirs, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- one description


PACKAGE = Path(regtheory.__file__).resolve().parent
# the layer classes that _layers and _moments each used to define
OLD_NAMES = {"Op", "Mask", "Connect", "Gate", "Layer"}


def test_no_other_module_defines_a_layer_class():
    names = {n.lstrip("_") for n in layers.__all__} | OLD_NAMES
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "layers.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.lstrip("_") in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert not found, found
    # and at run time no class outside regtheory.layers is a node
    import regtheory.cli
    import regtheory.diagnostics  # noqa: F401

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    outside = {
        f"{c.__module__}.{c.__name__}"
        for c in subclasses(Node)
        if c.__module__.startswith("regtheory") and c.__module__ != "regtheory.layers"
    }
    assert not outside, outside


def test_the_same_node_objects_reach_the_moments_the_engine_and_the_export(monkeypatch):
    import regtheory.network._moments as moments
    import regtheory.network._penalty as penalty
    import regtheory.pytorch._export as export

    seen = {}

    def spy(name, original):
        def wrapper(graph, *args, **kwargs):
            seen[name] = graph
            return original(graph, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        moments, "dropout_penalty_terms", spy("moments", moments.dropout_penalty_terms)
    )
    monkeypatch.setattr(penalty, "Engine", spy("engine", penalty.Engine))
    exported = []
    original_layer = export._torch_layer

    def export_spy(layer, *args):
        exported.append(layer)
        return original_layer(layer, *args)

    monkeypatch.setattr(export, "_torch_layer", export_spy)
    graph = Graph(
        [Conv(rng.normal(size=(2, 1, 3, 3))), ReLU(), Dropout(masks.Bernoulli(0.5)),
         Linear(rng.normal(size=(1, 18)))]
    )  # fmt: skip
    X = rng.normal(size=(4, 1, 3, 3))
    network.dropout_penalty(graph, X)
    network.dropout_penalty(graph, X, Y=np.zeros((4, 1)), method="mc", n_masks=1000)
    pytorch.to_torch(graph)
    assert seen["moments"] is graph and seen["engine"] is graph
    assert all(a is b for a, b in zip(exported, graph, strict=True))
    # a PyTorch model: the graph of its report is the one the moments read
    model = pytorch.to_torch(graph).double().eval()
    report = pytorch.dropout_penalty(model, X, by_layer=False)
    assert seen["moments"] is report.layers


def test_a_torch_model_is_checked_once(monkeypatch):
    # every weight array of a model is checked once on its way to the exact penalty
    calls = []
    original = layers.check_array

    def counting(x, name, *args, **kwargs):
        calls.append(name)
        return original(x, name, *args, **kwargs)

    monkeypatch.setattr(layers, "check_array", counting)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Dropout2d(0.3),
        torch.nn.Conv2d(2, 2, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(18, 1),
    ).double()
    graph_count = []
    original_init = Graph.__post_init__

    def counting_init(self):
        graph_count.append(self)
        original_init(self)

    monkeypatch.setattr(Graph, "__post_init__", counting_init)
    report = pytorch.dropout_penalty(model, rng.normal(size=(4, 1, 3, 3)), by_layer=False)
    assert report.method == "exact"
    assert calls == ["weight"] * 3  # the three weight layers, each once
    assert graph_count == [report.layers]  # one graph, built once
