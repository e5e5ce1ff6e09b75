"""Small PyTorch models with dropout written the ways people write them, for the tests.

Each builder takes ``seed`` and returns a :class:`Case`: a float32 model with
reproducible weights (and batch norms with running statistics away from 0 and 1, so
that evaluation-mode batch normalisation matters), inputs ``X``, regression targets
``Y`` of the model's output shape, class labels ``labels`` (int64, shape (n,)) when the
output is (n, K) logits, and the model's dropout ``sites`` in the order its forward
meets them. Sizes are small so that a brute-force Monte Carlo takes about a second
(the resnets take several). Only the resnet builders import torchvision.

A :class:`Site` says how the reference of ``tests/_torch_reference.py`` switches that
one site on alone: the modules whose own ``training`` flag is set (everything else in
evaluation mode) and, for a module called more than once, which call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Site:
    """One dropout site: where the package's name starts, and how to switch it on alone.

    ``prefix`` is the start of the package's site name (the module's path then `` (``,
    or the functional's name). ``train`` names the modules whose own ``training`` flag
    turns the site on (for ``F.dropout(x, p, self.training)`` that is the owner, not a
    dropout module); ``call`` the call (1-based) of a module that runs more than once
    per forward, None for a module called once. ``train=None``: no way to switch it
    on alone from outside.
    """

    prefix: str | tuple[str, ...]
    train: tuple[str, ...] | None
    call: int | None = None


@dataclass(frozen=True)
class Case:
    """A model, its data and its dropout sites."""

    name: str
    model: nn.Module
    X: torch.Tensor
    Y: torch.Tensor
    labels: torch.Tensor | None
    sites: tuple[Site, ...]


def _data(model: nn.Module, shape: tuple[int, ...], n: int, seed: int, *, positive=False):
    """Inputs of ``shape``, regression targets near the clean output, labels if (n, K)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    X = torch.randn((n, *shape), generator=gen)
    if positive:
        X = X.abs() + 0.1
    model.eval()
    with torch.no_grad():
        out = model(X)
    Y = out + torch.randn(out.shape, generator=gen)
    labels = None
    if out.dim() == 2:
        labels = torch.randint(0, out.shape[1], (n,), generator=gen)
    return X, Y, labels


def _seed_weights(model: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """Reproducible weights: torch's default initialisation under ``seed``, times scale."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def _warm_batchnorm(model: nn.Module, shape: tuple[int, ...], seed: int) -> None:
    """Running statistics and affine parameters away from their initial 0 and 1.

    A few training-mode forwards on shifted, scaled inputs move the running means and
    variances; the affine weights and biases are drawn at random. The model is left in
    evaluation mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    gen = torch.Generator().manual_seed(20_000 + seed)
    with torch.no_grad():
        for m in norms:
            m.momentum = 0.5
            m.weight.copy_(1.0 + 0.3 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))
        model.train()
        for _ in range(3):
            model(1.5 * torch.randn((8, *shape), generator=gen) + 0.5)
    for m in norms:  # moved away from the initial statistics
        assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
    model.eval()


# ----------------------------------------------------------------------- plain networks


def make_lenet5(*, seed: int, size: int = 16) -> Case:
    """LeNet-5 on 1 x size x size: (Conv-ReLU-MaxPool) x2, Linear-ReLU-Dropout x2, Linear.

    28 is MNIST's size; the default 16 keeps the float64 brute force under a second.
    """
    side = (size // 2 - 4) // 2  # after conv 5x5 padding 2, pool, conv 5x5, pool
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(84, 10),
    )
    _seed_weights(model, seed, scale=2.0)
    X, Y, labels = _data(model, (1, size, size), 6, seed)
    sites = (Site("model[9] (", ("9",)), Site("model[12] (", ("12",)))
    return Case("lenet5", model, X, Y, labels, sites)


def make_strided_cnn(*, seed: int) -> Case:
    """Conv stride 2, ReLU, Dropout2d, Conv stride 2, ReLU, Flatten, Linear on 3x12x12."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Dropout2d(0.2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 4),
    )
    _seed_weights(model, seed, scale=1.5)
    X, Y, labels = _data(model, (3, 12, 12), 6, seed)
    return Case("strided_cnn", model, X, Y, labels, (Site("model[2] (", ("2",)),))


def make_gap_cnn(*, seed: int) -> Case:
    """Conv, ReLU, Dropout2d, Conv, global average pooling, Flatten, Linear on 3x8x8."""
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Dropout2d(0.25),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    _seed_weights(model, seed, scale=2.0)
    X, Y, labels = _data(model, (3, 8, 8), 6, seed)
    return Case("gap_cnn", model, X, Y, labels, (Site("model[2] (", ("2",)),))


class ResidualNet(nn.Module):
    """out = relu(conv2(drop(relu(conv1(x))))) + x, batch norm, pooling, a Linear head."""

    def __init__(self, channels: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(channels * 4 * 4, classes)

    def forward(self, x):
        out = F.relu(self.conv2(self.drop(F.relu(self.conv1(x))))) + x
        out = self.pool(self.bn(out))
        return self.head(torch.flatten(out, 1))


def make_residual(*, seed: int) -> Case:
    """A residual block as an nn.Module subclass, on 4x8x8."""
    model = _seed_weights(ResidualNet(), seed, scale=1.5)
    _warm_batchnorm(model, (4, 8, 8), seed)
    X, Y, labels = _data(model, (4, 8, 8), 6, seed)
    return Case("residual", model, X, Y, labels, (Site("model.drop (", ("drop",)),))


class PlainMLP(nn.Module):
    """An MLP as an nn.Module subclass; the flattening by ``x.view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.drop1 = nn.Dropout(0.2)
        self.fc2 = nn.Linear(8, 8)
        self.drop2 = nn.Dropout(0.4)
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = self.drop1(torch.tanh(self.fc1(x)))
        x = self.drop2(F.relu(self.fc2(x)))
        return self.fc3(x)


def make_plain_mlp(*, seed: int) -> Case:
    model = _seed_weights(PlainMLP(), seed, scale=2.0)
    X, Y, labels = _data(model, (2, 3), 8, seed)
    sites = (Site("model.drop1 (", ("drop1",)), Site("model.drop2 (", ("drop2",)))
    return Case("plain_mlp", model, X, Y, labels, sites)


class TwoBranch(nn.Module):
    """Two branches, each with its dropout, joined by ``torch.cat``."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Dropout(0.3))
        self.right = nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Dropout(0.5))
        self.head = nn.Linear(7, 3)

    def forward(self, x):
        return self.head(F.relu(torch.cat([self.left(x), self.right(x)], dim=1)))


def make_two_branch(*, seed: int) -> Case:
    model = _seed_weights(TwoBranch(), seed, scale=2.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    sites = (Site("model.left[2] (", ("left.2",)), Site("model.right[2] (", ("right.2",)))
    return Case("two_branch", model, X, Y, labels, sites)


# ------------------------------------------------------------------------- torchvision


def _small_resnet18(seed: int) -> nn.Module:
    import torchvision  # only here: the other models need torch alone

    model = torchvision.models.resnet18(num_classes=10)
    return _seed_weights(model, seed)


RESNET_INPUT = (3, 16, 16)


def make_resnet18_dropout(*, seed: int, p: float = 0.5) -> Case:
    """torchvision's resnet18 with ``nn.Dropout(p)`` before its ``fc``, on 3x16x16."""
    model = _small_resnet18(seed)
    model.fc = nn.Sequential(nn.Dropout(p), model.fc)
    _warm_batchnorm(model, RESNET_INPUT, seed)
    X, Y, labels = _data(model, RESNET_INPUT, 4, seed)
    return Case("resnet18_dropout", model, X, Y, labels, (Site("model.fc[0] (", ("fc.0",)),))


class StochasticDepthBlock(nn.Module):
    """A torchvision BasicBlock whose residual branch passes StochasticDepth(p, "row").

    out = relu(SD(bn2(conv2(relu(bn1(conv1(x)))))) + identity), identity = downsample(x)
    where the block has one, else x. The block's modules are kept under ``block``.
    """

    def __init__(self, block: nn.Module, p: float) -> None:
        from torchvision.ops import StochasticDepth

        super().__init__()
        self.block = block
        self.sd = StochasticDepth(p, "row")

    def forward(self, x):
        b = self.block
        identity = x if b.downsample is None else b.downsample(x)
        out = b.relu(b.bn1(b.conv1(x)))
        out = self.sd(b.bn2(b.conv2(out)))
        return b.relu(out + identity)


def make_resnet18_stochastic_depth(*, seed: int, p: float = 0.2) -> Case:
    """resnet18 with StochasticDepth(p, "row") on each BasicBlock's residual branch."""
    model = _small_resnet18(seed)
    sites = []
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, layer)
        for i in range(len(stage)):
            stage[i] = StochasticDepthBlock(stage[i], p)
            sites.append(Site(f"model.{layer}[{i}].sd (", (f"{layer}.{i}.sd",)))
    _warm_batchnorm(model, RESNET_INPUT, seed)
    X, Y, labels = _data(model, RESNET_INPUT, 4, seed)
    return Case("resnet18_stochastic_depth", model, X, Y, labels, tuple(sites))


# ---------------------------------------------------------------- the awkward models


class TwiceSequential(nn.Sequential):
    """An nn.Sequential subclass whose forward returns twice the chain."""

    def forward(self, x):
        return 2 * super().forward(x)


def make_twice_sequential(*, seed: int) -> Case:
    model = TwiceSequential(
        nn.Linear(5, 6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)
    )
    _seed_weights(model, seed, scale=2.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    return Case("twice_sequential", model, X, Y, labels, (Site("model[2] (", ("2",)),))


class ReluSkipSequential(nn.Sequential):
    """An nn.Sequential subclass whose forward is relu(chain(x)) + x."""

    def forward(self, x):
        return F.relu(super().forward(x)) + x


def make_relu_skip_sequential(*, seed: int) -> Case:
    model = ReluSkipSequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.4), nn.Linear(6, 4))
    _seed_weights(model, seed, scale=2.0)
    X, Y, labels = _data(model, (4,), 8, seed)
    return Case("relu_skip_sequential", model, X, Y, labels, (Site("model[2] (", ("2",)),))


class DropoutTwice(nn.Module):
    """One nn.Dropout module called at two places of the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(5, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(self.drop(x)))))


def make_dropout_twice(*, seed: int) -> Case:
    model = _seed_weights(DropoutTwice(), seed, scale=2.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    sites = (Site("model.drop (", ("drop",), call=1), Site("model.drop (", ("drop",), call=2))
    return Case("dropout_twice", model, X, Y, labels, sites)


class FunctionalDropout(nn.Module):
    """``F.dropout(x, 0.2, self.training)`` in the forward, and an nn.Dropout module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 6)
        self.drop = nn.Dropout(0.4)
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x):
        x = F.dropout(F.relu(self.fc1(x)), 0.2, self.training)
        x = self.drop(torch.tanh(self.fc2(x)))
        return self.fc3(x)


def make_functional_dropout(*, seed: int) -> Case:
    model = _seed_weights(FunctionalDropout(), seed, scale=2.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    # the functional site follows the owner's own flag: the root, its children in eval
    sites = (Site("dropout", ("",)), Site("model.drop (", ("drop",)))
    return Case("functional_dropout", model, X, Y, labels, sites)


def make_shared_dropout_sequential(*, seed: int) -> Case:
    """One nn.Dropout instance at two positions of an nn.Sequential (indices 2 and 5)."""
    drop = nn.Dropout(0.3)
    model = nn.Sequential(
        nn.Linear(5, 6), nn.ReLU(), drop, nn.Linear(6, 6), nn.ReLU(), drop, nn.Linear(6, 3)
    )
    _seed_weights(model, seed, scale=2.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    # named_modules() keeps the first name of a shared module; the package may name the
    # second position "5" or "2 ... call 2": the name check takes either
    sites = (Site("model[2] (", ("2",), call=1), Site(("model[5] (", "model[2] ("), ("2",), call=2))
    return Case("shared_dropout_sequential", model, X, Y, labels, sites)


def make_log_softmax_classifier(*, seed: int) -> Case:
    """A classifier ending in nn.LogSoftmax."""
    model = nn.Sequential(
        nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 4), nn.LogSoftmax(dim=1)
    )
    _seed_weights(model, seed, scale=2.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    return Case("log_softmax_classifier", model, X, Y, labels, (Site("model[2] (", ("2",)),))


def make_softmax_classifier(*, seed: int) -> Case:
    """A classifier ending in nn.Softmax (cross-entropy then reads probabilities as logits)."""
    model = nn.Sequential(
        nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 4), nn.Softmax(dim=1)
    )
    _seed_weights(model, seed, scale=3.0)
    X, Y, labels = _data(model, (5,), 8, seed)
    return Case("softmax_classifier", model, X, Y, labels, (Site("model[2] (", ("2",)),))


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.fx cannot trace it. A batch norm.

    The branch reads the sum of the whole input batch; every sample of the data has a
    positive sum (``positive=True``), so any batch of them, or the data repeated, takes
    the same branch as the data itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.35)
        self.fc2 = nn.Linear(6, 3)
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x):
        h = self.drop(F.relu(self.bn(self.fc1(x))))
        if x.sum() > 0:
            return self.fc2(h)
        return self.fc3(h)


def make_data_dependent(*, seed: int) -> Case:
    model = _seed_weights(DataDependent(), seed, scale=2.0)
    _warm_batchnorm(model, (4,), seed)  # its own forward too keeps the batch norm in eval
    X, Y, labels = _data(model, (4,), 8, seed, positive=True)
    return Case("data_dependent", model, X, Y, labels, (Site("model.drop (", ("drop",)),))


# the traceable models, cheap first; the resnets take seconds
TRACEABLE = {
    "lenet5": make_lenet5,
    "strided_cnn": make_strided_cnn,
    "gap_cnn": make_gap_cnn,
    "residual": make_residual,
    "plain_mlp": make_plain_mlp,
    "two_branch": make_two_branch,
    "twice_sequential": make_twice_sequential,
    "relu_skip_sequential": make_relu_skip_sequential,
    "dropout_twice": make_dropout_twice,
    "functional_dropout": make_functional_dropout,
    "shared_dropout_sequential": make_shared_dropout_sequential,
    "log_softmax_classifier": make_log_softmax_classifier,
    "softmax_classifier": make_softmax_classifier,
    "resnet18_dropout": make_resnet18_dropout,
    "resnet18_stochastic_depth": make_resnet18_stochastic_depth,
}
RESNETS = ("resnet18_dropout", "resnet18_stochastic_depth")


def as_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()
