"""regtheory.pytorch.to_torch: stochastic depth, round trips of joins, Function nodes.

A graph exported and read back (``from_torch(to_torch(graph), input_shape)``) must
compute what the graph computes, to 1e-12 in float64. A ``PerSample`` dropout
(stochastic depth) is exported as torchvision's ``StochasticDepth(1 - keep, "row")``:
its penalty, estimated here by running the exported module in training mode with
torchvision's own masks, must agree with the exact penalty of the graph.
"""

import sys

import numpy as np
import pytest

from regtheory import InvalidParameterError, network
from regtheory.layers import Add, Concat, Conv, Dropout, Graph, Linear, ReLU
from regtheory.masks import Bernoulli, Channel, PerSample

torch = pytest.importorskip("torch")
nn = torch.nn

from regtheory import pytorch  # noqa: E402 (needs torch)

N_SE = 4  # Monte Carlo agreement is required within this many standard errors

rng = np.random.default_rng(26)


def normal(*shape):
    return rng.normal(size=shape)


def round_trip(graph: Graph, x: np.ndarray) -> Graph:
    back = pytorch.from_torch(pytorch.to_torch(graph), x.shape[1:])
    np.testing.assert_allclose(back.forward(x), graph.forward(x), rtol=1e-12, atol=1e-12)
    return back


def dropouts(graph: Graph) -> list:
    return [node.masks for node in graph if isinstance(node, Dropout)]


def depth_block(keep: float = 0.7) -> Graph:
    """h = relu(W x); out = V (h + stochastic_depth(U h)) + c: a residual branch dropped
    per sample, linear after the mask, so that its penalty is exact."""
    return Graph(
        [Linear(normal(5, 4), bias=normal(5)), ReLU(),  # 0, 1
         Linear(normal(5, 5)), Dropout(PerSample(keep)),  # 2, 3: the branch
         Add(),  # 4: h + branch
         Linear(normal(2, 5), bias=normal(2))],
        inputs={4: (3, 1)},
    )  # fmt: skip


def test_a_residual_graph_round_trips():
    graph = Graph(
        [Conv(normal(2, 2, 3, 3), bias=normal(2)), ReLU(), Dropout(Channel(0.8)),
         Conv(normal(2, 2, 3, 3)), Add(), ReLU(), Linear(normal(3, 2 * 5 * 5))],
        inputs={4: (3, -1)},
    )  # fmt: skip
    back = round_trip(graph, normal(4, 2, 5, 5))
    assert any(isinstance(node, Add) for node in back)
    assert [type(m) for m in dropouts(back)] == [Channel]
    assert dropouts(back)[0].keep == pytest.approx(0.8, abs=1e-15)


def test_a_concat_graph_round_trips():
    graph = Graph(
        [Conv(normal(3, 2, 3)), ReLU(), Dropout(Bernoulli(0.6)),  # 0-2: one branch
         Conv(normal(2, 2, 1), bias=normal(2)),  # 3: another, from the input
         Concat(),  # 4: 3 + 2 channels
         Conv(normal(1, 5, 3), pad=1)],
        inputs={3: (-1,), 4: (2, 3)},
    )  # fmt: skip
    back = round_trip(graph, normal(3, 2, 6))
    assert any(isinstance(node, Concat) for node in back)


@pytest.mark.slow  # importing torchvision takes seconds
def test_stochastic_depth_is_exported_as_torchvision_and_read_back():
    ops = pytest.importorskip("torchvision.ops")
    graph = depth_block(keep=0.7)
    model = pytorch.to_torch(graph)
    depth = dict(model.named_children())["3"]
    assert type(depth) is ops.StochasticDepth and depth.mode == "row"
    assert depth.p == pytest.approx(0.3, abs=1e-15)
    back = round_trip(graph, normal(6, 4))
    (masks,) = dropouts(back)
    assert type(masks) is PerSample and masks.keep == pytest.approx(0.7, abs=1e-15)


@pytest.mark.slow  # importing torchvision takes seconds
@pytest.mark.parametrize("seed", [0, 1])
def test_stochastic_depth_of_the_export_against_the_exact_penalty(seed):
    pytest.importorskip("torchvision")
    graph = depth_block(keep=0.7)
    X = normal(10, 4)
    exact = network.dropout_penalty(graph, X, method="exact")
    # torchvision's own masks: the exported module in training mode on 4000 copies of
    # the data at once, each copy with masks of its own
    model = pytorch.to_torch(graph)
    x = torch.from_numpy(X)
    passes = 4000
    with torch.no_grad():
        clean = model.eval()(x)
        torch.manual_seed(seed)
        out = model.train()(x.repeat(passes, 1))
    gaps = torch.sum((out - clean.repeat(passes, 1)) ** 2, dim=1).reshape(passes, len(X))
    draws = gaps.mean(dim=1).numpy()
    mean, se = np.mean(draws), np.std(draws, ddof=1) / np.sqrt(passes)
    assert se > 0 and abs(float(exact) - mean) < N_SE * se, (float(exact), mean, se)
    assert se < 0.05 * float(exact)  # a test that can fail


def test_stochastic_depth_without_torchvision_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` fails
    monkeypatch.setitem(sys.modules, "torchvision.ops", None)
    with pytest.raises(InvalidParameterError, match=r"`layers\[3\]`.*regtheory\[vision\]"):
        pytorch.to_torch(depth_block())


def test_a_function_node_is_refused_by_position():
    # from_torch makes a step it has no node for (here LayerNorm) a layers.Function
    torch.manual_seed(3)
    source = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Dropout(0.5), nn.Linear(3, 2))
    graph = pytorch.from_torch(source.double(), (4,))
    with pytest.raises(InvalidParameterError, match=r"`layers\[1\]` \(Function 'LayerNorm'\)"):
        pytorch.to_torch(graph)
