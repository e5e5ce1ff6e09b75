"""regtheory.pytorch.to_torch: every node type as torch modules, chains and graphs with joins.

The exported module runs in evaluation mode (every dropout module off) on the inputs the
NumPy graph runs on, in float64, and must give the graph's mask-free output to 1e-12;
the residual block is also checked against the block written out here with
``torch.nn.functional`` on the same weights.
"""

import numpy as np
import pytest

from regtheory import InvalidParameterError
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
    ReLU,
    Reshape,
)
from regtheory.masks import Bernoulli, Channel, DropBlock, Gaussian

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from regtheory import pytorch  # noqa: E402 (needs torch)

rng = np.random.default_rng(2026)


def normal(*shape):
    return rng.normal(size=shape)


def run(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def agrees(graph, x):
    model = pytorch.to_torch(graph)
    np.testing.assert_allclose(run(model, x), graph.forward(x), rtol=1e-12, atol=1e-12)
    return model


def tanh():
    # an Elementwise node as from_torch makes it: evaluated by a copy of the torch module
    return pytorch.from_torch(nn.Sequential(nn.Tanh()), (3,))[0]


# ----------------------------------------------------------------------------- chains


def test_a_chain_of_every_node_type_is_an_nn_sequential():
    graph = Graph(
        [Dropout(Channel(0.9)), Conv(normal(4, 2, 3, 3), bias=normal(4)), ReLU(),
         Dropout(DropBlock(0.8, 3)), Multiply(normal(4, 1, 1)), MaxPool(2),
         AvgPool(3, stride=1, pad=1), Reshape((2, 2, 2, 2)), Flatten(), Reshape((4, 4)),
         Conv(normal(3, 4, 3), pad=1), tanh(), AdaptiveAvgPool(2), Dropout(Channel(0.7)),
         Flatten(), Dropout(Bernoulli(0.6)), Linear(normal(5, 6), bias=normal(5)),
         Multiply(normal(5)), Reshape((5, 1))]
    )  # fmt: skip
    model = agrees(graph, normal(3, 2, 4, 4))
    assert type(model) is nn.Sequential
    kinds = [type(m).__name__ for m in model]
    assert kinds[:7] == [
        "Dropout2d", "Conv2d", "ReLU", "DropBlock2d", "FixedFactor", "MaxPool2d", "AvgPool2d"
    ]  # fmt: skip
    # a Reshape of maps flattens first; one of vectors only unflattens
    assert kinds[7:11] == ["Flatten", "Unflatten", "Flatten", "Unflatten"]
    assert kinds[-4:] == ["Dropout", "Linear", "FixedFactor", "Unflatten"]
    assert "Dropout1d" in kinds  # the channel mask on the maps of the Conv1d


def test_a_reshape_of_the_input_of_any_rank():
    for shape, to in [((12,), (3, 4)), ((2, 6), (3, 2, 2)), ((2, 3, 2), (12,))]:
        agrees(Graph([Reshape(to), Flatten(), Linear(normal(2, 12))]), normal(2, *shape))


def test_a_fixed_factor_is_a_buffer_that_follows_the_dtype():
    factor = normal(3, 1)
    model = pytorch.to_torch([Multiply(factor), Flatten(), Linear(normal(2, 12))])
    assert [name for name, _ in model.named_buffers()] == ["0.factor"]
    assert "0.factor" in model.state_dict() and "0.factor" not in dict(model.named_parameters())
    np.testing.assert_array_equal(model[0].factor.numpy(), factor)
    assert model.float()[0].factor.dtype == torch.float32
    assert pytorch.to_torch([Multiply(factor)], dtype="float32")[0].factor.dtype == torch.float32


# ----------------------------------------------------------------------------- joins


def residual_block():
    """relu(conv2(relu(conv1(x))) + x), 2 channels, with channel dropout in the branch."""
    w1, w2, b2 = normal(2, 2, 3, 3), normal(2, 2, 3, 3), normal(2)
    graph = Graph(
        [Conv(w1), ReLU(), Dropout(Channel(0.8)), Conv(w2, bias=b2), Add(), ReLU()],
        inputs={4: (3, -1)},
    )
    return graph, (w1, w2, b2)


def test_a_residual_block_round_trips_and_is_the_block_written_out():
    graph, (w1, w2, b2) = residual_block()
    x = normal(4, 2, 5, 5)
    model = agrees(graph, x)
    assert isinstance(model, torch.fx.GraphModule)
    # independently, with torch's functional ops on the same weights
    t = torch.from_numpy(x)
    h = F.relu(F.conv2d(t, torch.from_numpy(w1), padding=1))
    out = F.relu(F.conv2d(h, torch.from_numpy(w2), torch.from_numpy(b2), padding=1) + t)
    np.testing.assert_allclose(run(model, x), out.numpy(), rtol=1e-12, atol=1e-12)
    # node i is submodule "i": the dropout site keeps its position in the graph
    children = dict(model.named_children())
    assert sorted(children, key=int) == ["0", "1", "2", "3", "5"]
    assert type(children["2"]) is nn.Dropout2d and children["2"].p == pytest.approx(0.2)


def test_a_fresh_graph_module_trains_its_dropout():
    graph, _ = residual_block()
    model = pytorch.to_torch(graph)
    assert model.training
    x = torch.from_numpy(normal(64, 2, 5, 5))
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.allclose(model(x), model.eval()(x))


def test_graphs_with_concat_sums_of_three_and_the_input_read_twice():
    graph = Graph(
        [Conv(normal(3, 2, 3)), ReLU(), Dropout(Bernoulli(0.7)),  # 0-2: a branch
         Conv(normal(2, 2, 1)),  # 3: another branch, from the input
         Concat(),  # 4: (3 + 2) channels
         Conv(normal(2, 5, 3), pad=1, bias=normal(2)), tanh(),  # 5, 6
         Add(),  # 7: three inputs, summed in order
         Multiply(normal(2, 1)), Flatten(), Dropout(Bernoulli(0.9)), Linear(normal(3, 14)),
         Reshape((3, 1))],
        inputs={3: (-1,), 4: (2, 3), 7: (6, -1, 3)},
    )  # fmt: skip
    model = agrees(graph, normal(5, 2, 7))
    assert isinstance(model, torch.fx.GraphModule)
    assert type(dict(model.named_children())["11"]) is nn.Linear  # reads vectors: no Flatten


def test_two_residual_blocks_with_a_flatten_into_a_linear_in_float32():
    w = [normal(2, 2, 3, 3) for _ in range(2)]
    graph = Graph(
        [Conv(w[0]), ReLU(), Add(), Dropout(Channel(0.9)), Conv(w[1]), Add(), ReLU(),
         AvgPool(2), Linear(normal(3, 8), bias=normal(3))],
        inputs={2: (1, -1), 5: (4, 2)},
    )  # fmt: skip
    x = normal(3, 2, 4, 4)
    model = agrees(graph, x)
    # a Linear that reads maps is an nn.Sequential(Flatten, Linear), submodule "8"
    last = dict(model.named_children())["8"]
    assert [type(m) for m in last] == [nn.Flatten, nn.Linear]
    single = pytorch.to_torch(graph, dtype="float32")
    assert {p.dtype for p in single.parameters()} == {torch.float32}
    with torch.no_grad():
        out = single.eval()(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(out, graph.forward(x), rtol=1e-4, atol=1e-4)


def test_an_exported_graph_is_saved_and_loaded(tmp_path):
    graph, _ = residual_block()
    x = normal(2, 2, 5, 5)
    torch.save(pytorch.to_torch(graph), tmp_path / "block.pt")
    loaded = torch.load(tmp_path / "block.pt", weights_only=False)
    np.testing.assert_allclose(run(loaded, x), graph.forward(x), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "node, what",
    [
        (Dropout(Gaussian(0.5)), "Dropout"),
        (DropConnect(normal(2, 2), 0.5), "DropConnect"),
        (Elementwise(np.tanh), r"Elementwise\) has no PyTorch module here \(a NumPy function"),
    ],
)
def test_nodes_without_a_module_are_refused_by_position_in_a_graph(node, what):
    graph = Graph([Linear(normal(2, 2)), node, Add()], inputs={2: (1, -1)})
    with pytest.raises(InvalidParameterError, match=rf"`layers\[1\]` \({what}"):
        pytorch.to_torch(graph)
