"""Cross-checks of regtheory.conv and regtheory.network against PyTorch itself (float64, CPU).

CI installs the ``torch`` extra (README's test command), so these run there; the
importorskip only guards a bare checkout. Independent references: PyTorch's own
``F.conv2d``/``F.conv1d``, its own dropout masks (``F.dropout`` for
``nn.Dropout``, ``F.dropout2d`` for ``nn.Dropout2d``), and torchvision's
DropBlock placement (seed region, zero pad, stride-1 max-pool) rebuilt in torch;
for the networks, ``nn.Sequential`` modules run in train mode. The torch Monte
Carlo runs entirely in torch: nothing of regtheory but the closed form (and
DropBlock's seed rate) is used.
"""

import numpy as np
import pytest

from regtheory import conv, network
from regtheory.masks import Bernoulli, Channel, DropBlock
from regtheory.montecarlo import estimate

pytestmark = pytest.mark.slow  # every test here takes seconds: not in the quick tier

torch = pytest.importorskip("torch")
F = torch.nn.functional

N_SE = 4  # Monte Carlo agreement is required within this many standard errors
PADDINGS = ["zeros", "circular"]
IMAGE = (6, 6)


def torch_conv(x, w, padding):
    """Same-size conv in torch: padding=k//2, or circular F.pad then an unpadded conv."""
    ks = w.shape[2:]
    if padding == "zeros":
        op = F.conv2d if w.dim() == 4 else F.conv1d
        return op(x, w, padding=tuple(k // 2 for k in ks))
    pads = [p for k in reversed(ks) for p in (k // 2, k // 2)]  # last axis first
    op = F.conv2d if w.dim() == 4 else F.conv1d
    return op(F.pad(x, pads, mode="circular"), w)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "x_shape,w_shape",
    [
        ((4, 3, 8, 7), (5, 3, 3, 3)),
        ((2, 6, 9, 9), (2, 6, 5, 3)),
        ((3, 16, 6, 6), (16, 16, 1, 5)),
        ((5, 2, 11), (3, 2, 5)),
        ((2, 4, 5, 5), (3, 4, 5, 5)),
    ],
)
def test_conv2d_equals_torch(padding, x_shape, w_shape):
    rng = np.random.default_rng(sum(x_shape))
    x, w = rng.normal(size=x_shape), rng.normal(size=w_shape)
    ours = conv.conv2d(x, w, padding=padding)
    theirs = torch_conv(torch.from_numpy(x), torch.from_numpy(w), padding).numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_conv_matrix_applies_torch_conv(padding):
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(3, 2, 5, 6)), rng.normal(size=(4, 2, 3, 5))
    M = conv.conv_matrix(w, (5, 6), padding=padding)
    theirs = torch_conv(torch.from_numpy(x), torch.from_numpy(w), padding).numpy()
    np.testing.assert_allclose(x.reshape(3, -1) @ M.T, theirs.reshape(3, -1), atol=1e-12)


def torch_penalty_mc(u, v, masks, padding, n_masks, x=None, activation=None, seed=0):
    """E‖u∗(m∘h) − u∗h‖² with torch masks ``masks(ones) -> masked ones`` and torch convs."""
    torch.manual_seed(seed)
    ut, vt = torch.from_numpy(u), torch.from_numpy(v)
    act = torch.relu if activation == "relu" else (lambda t: t)
    c_hid = v.shape[0]
    image = IMAGE if x is None else x.shape[2:]
    h_data = None if x is None else act(torch_conv(torch.from_numpy(x), vt, padding))

    def draw(_rng, size):
        with torch.no_grad():
            if h_data is None:  # one fresh standard normal input per mask: E[xxᵀ] = I
                xs = torch.randn((size, v.shape[1], *image), dtype=torch.float64)
                h = act(torch_conv(xs, vt, padding))
                m = masks(torch.ones((size, c_hid, *image), dtype=torch.float64))
                y = torch_conv((m - 1) * h, ut, padding)
                return y.pow(2).sum(dim=(1, 2, 3)).numpy()
            n = h_data.shape[0]
            m = masks(torch.ones((size, c_hid, *image), dtype=torch.float64))
            z = ((m - 1)[:, None] * h_data[None]).reshape(size * n, c_hid, *image)
            y = torch_conv(z, ut, padding).reshape(size, n, -1)
            return (y.pow(2).sum(dim=2).mean(dim=1)).numpy()

    return estimate(draw, n_masks=n_masks, rng=seed, batch_size=500)


def small_net(seed=21):
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(2, 3, 3, 3)), rng.normal(size=(3, 2, 3, 3))
    x = rng.normal(size=(6, 2, *IMAGE))
    return u, v, x


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "mode,data,activation",
    [
        ("element", False, None),
        ("element", True, None),
        ("element", True, "relu"),
        ("channel", False, None),
        ("channel", True, None),
    ],
)
def test_closed_form_matches_torch_dropout_masks(padding, mode, data, activation):
    u, v, x = small_net()
    keep = 0.6
    drop = {"element": F.dropout, "channel": F.dropout2d}[mode]

    def masks(ones):  # torch's own inverted masks: 0 or 1/keep, p = 1 − keep
        return drop(ones, p=1 - keep, training=True)

    x = x if data else None
    closed = conv.dropout_penalty(
        u, v, keep, IMAGE, padding=padding, mode=mode, x=x, activation=activation
    )
    est = torch_penalty_mc(u, v, masks, padding, 4000, x=x, activation=activation, seed=22)
    assert abs(est.zscore(closed)) < N_SE, (closed, est)
    assert est.rel_stderr < 0.02


def test_torch_masks_are_what_regtheory_assumes():
    keep, ones = 0.3, torch.ones((4000, 3, 4, 4), dtype=torch.float64)
    torch.manual_seed(23)
    element = F.dropout(ones, p=1 - keep, training=True).numpy()
    channel = F.dropout2d(ones, p=1 - keep, training=True).numpy()
    for m in (element, channel):
        np.testing.assert_allclose(np.unique(m), [0.0, 1 / keep], rtol=1e-15)
    assert np.all(channel == channel[:, :, :1, :1])
    assert abs(element.mean() - 1) < N_SE * element.std() / np.sqrt(element.size)


def torchvision_block_masks(keep, block_size, gamma):
    """torchvision.ops.drop_block2d's placement (odd block_size), with the given seed rate,
    scaled by 1/keep (regtheory's "ideal" normalisation)."""

    def masks(ones):
        n, c, H, W = ones.shape
        b = block_size
        seeds = torch.bernoulli(torch.full((n, c, H - b + 1, W - b + 1), gamma, dtype=ones.dtype))
        seeds = F.pad(seeds, [b // 2] * 4, value=0)
        dropped = F.max_pool2d(seeds, stride=(1, 1), kernel_size=(b, b), padding=b // 2)
        return ones * (1 - dropped) / keep

    return masks


@pytest.mark.parametrize("padding", PADDINGS)
def test_dropblock_penalty_matches_torchvision_placement(padding):
    u, v, _ = small_net()
    keep, b = 0.7, 3
    gamma = DropBlock(keep, b).gamma(IMAGE)
    theirs = torch_penalty_mc(u, v, torchvision_block_masks(keep, b, gamma), padding, 4000, seed=24)
    ours = conv.dropout_penalty_mc(
        u, v, keep, IMAGE, padding=padding, mode="block", block_size=b, n_masks=4000, seed=25
    )
    assert abs(ours.mean - theirs.mean) < N_SE * np.hypot(ours.stderr, theirs.stderr)


def test_dropblock_kept_fraction_matches_torchvision_placement():
    keep, b, image = 0.8, 3, (7, 9)
    gamma = DropBlock(keep, b).gamma(image)
    torch.manual_seed(26)
    ones = torch.ones((20_000, 1, *image), dtype=torch.float64)
    theirs = (torchvision_block_masks(keep, b, gamma)(ones).numpy()[:, 0] > 0).mean(axis=0)
    ours = (DropBlock(keep, b).sample((1, *image), 20_000, seed=27)[:, 0] > 0).mean(axis=0)
    se = np.sqrt((theirs * (1 - theirs) + ours * (1 - ours)) / 20_000)
    assert np.all(np.abs(theirs - ours) < N_SE * se + 1e-12)  # position by position
    assert abs(theirs.mean() - keep) < 0.01


# ------------------------------------------------ the exact network penalty against torch modules
#
# regtheory.network.dropout_penalty (exact, moment propagation) against nn.Sequential nets
# built from the same float64 weights and run in train() mode: nn.Conv2d / nn.Conv1d
# (padding="same", padding_mode "zeros" or "circular"), nn.Linear behind nn.Flatten,
# nn.ReLU, and torch's own masks: nn.Dropout (element), nn.Dropout2d / nn.Dropout1d
# (channel) and torchvision's DropBlock placement with the ideal normaliser 1/keep (the
# one the exact penalty covers; torchvision's own random normaliser numel/sum(kept) has
# no exact form). Each Monte Carlo draw is one train-mode forward pass over the data
# repeated along the batch axis, so every copy of every sample gets its own masks, as in
# training. network.dropout_penalty_mc, over regtheory's own masks, must agree with both.


class TorchDropBlock(torch.nn.Module):
    """DropBlock of torchvision's placement with seed rate ``gamma``, scaled by 1/keep;
    the identity in eval mode, like nn.Dropout."""

    def __init__(self, keep, block_size, gamma):
        super().__init__()
        self.masks = torchvision_block_masks(keep, block_size, gamma)

    def forward(self, z):
        return z * self.masks(torch.ones_like(z)) if self.training else z


def torch_sequential(layers, x_shape):
    """nn.Sequential with the weights and mask laws of regtheory ``layers`` (float64)."""
    nn, modules = torch.nn, []
    z = torch.zeros((1, *x_shape[1:]), dtype=torch.float64)  # tracks the map's rank
    for layer in layers:
        if isinstance(layer, network.Conv):
            w = torch.from_numpy(layer.weight)
            conv = {4: nn.Conv2d, 3: nn.Conv1d}[w.dim()]
            module = conv(
                w.shape[1],
                w.shape[0],
                tuple(w.shape[2:]),
                bias=False,
                padding="same",
                padding_mode=layer.padding,
                dtype=torch.float64,
            )
            with torch.no_grad():
                module.weight.copy_(w)
        elif isinstance(layer, network.Linear):
            linear = nn.Linear(*reversed(layer.weight.shape), bias=False, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weight))
            module = nn.Sequential(nn.Flatten(), linear)
        elif isinstance(layer, network.ReLU):
            module = nn.ReLU()
        elif isinstance(layer.masks, Bernoulli):
            module = nn.Dropout(p=1 - layer.masks.keep)
        elif isinstance(layer.masks, Channel):
            module = {4: nn.Dropout2d, 3: nn.Dropout1d}[z.dim()](p=1 - layer.masks.keep)
        else:
            assert isinstance(layer.masks, DropBlock) and layer.masks.normalize == "ideal"
            masks, spatial = layer.masks, tuple(z.shape[2:])
            module = TorchDropBlock(masks.keep, masks.block_size, masks.gamma(spatial))
        modules.append(module)
        z = module.eval()(z)
    return nn.Sequential(*modules)


def torch_network_penalty_mc(net, X, Y, n_draws, seed):
    """E_r L(r) − L(1) of the torch ``net`` on (X, Y): L(1) in eval mode, L(r) in train mode."""
    torch.manual_seed(seed)
    Xt, Yt, n = torch.from_numpy(X), torch.from_numpy(Y), len(X)
    with torch.no_grad():
        base = (Yt - net.eval()(Xt)).pow(2).reshape(n, -1).sum(dim=1).mean()
    net.train()

    def draw(_rng, size):  # draw d is rows d·n .. (d+1)·n of one batch
        with torch.no_grad():
            out = net(Xt.repeat(size, *(1,) * (X.ndim - 1)))
        resid = (Yt.repeat(size, *(1,) * (Y.ndim - 1)) - out).reshape(size, n, -1)
        return (resid.pow(2).sum(dim=2).mean(dim=1) - base).numpy()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # maps this small run fastest on one thread of a shared machine
    try:
        return estimate(draw, n_masks=n_draws, rng=seed, batch_size=250)
    finally:
        torch.set_num_threads(threads)


def network_data(layers, x_shape, seed):
    """Inputs and targets near the torch net's own output (which keeps the draws' variance
    small: far targets add a zero-mean term linear in the masks)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=x_shape)
    with torch.no_grad():
        clean = torch_sequential(layers, x_shape).eval()(torch.from_numpy(X)).numpy()
    return X, clean + 0.3 * rng.normal(size=clean.shape)


def check_network_against_torch(layers, X, Y, n_draws, seed):
    """The exact penalty, torch's train-mode estimate and dropout_penalty_mc agree pairwise."""
    net = torch_sequential(layers, X.shape)
    with torch.no_grad():  # same weights, same layout: eval mode is the mask-free network
        clean = net.eval()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(clean, network.forward(layers, X), rtol=1e-12, atol=1e-12)
    exact = network.dropout_penalty(layers, X, Y=Y)
    theirs = torch_network_penalty_mc(net, X, Y, n_draws, seed)
    ours = network.dropout_penalty_mc(layers, X, Y, n_masks=n_draws, seed=seed + 1, batch_size=250)
    assert abs(theirs.zscore(exact)) < N_SE, (exact, theirs)
    assert abs(ours.zscore(exact)) < N_SE, (exact, ours)
    assert abs(ours.mean - theirs.mean) < N_SE * np.hypot(ours.stderr, theirs.stderr)
    assert theirs.rel_stderr < 0.03, theirs


def scaled_normal(rng, shape):
    """Weights of unit gain: normal entries over sqrt(fan-in)."""
    return rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))


def test_exact_network_penalty_matches_torch_fc_with_three_dropout_layers(seed=31):
    rng = np.random.default_rng(seed)
    W = [scaled_normal(rng, s) for s in [(8, 5), (7, 8), (6, 7), (3, 6)]]
    layers = [
        network.Linear(W[0]),
        network.ReLU(),
        network.Dropout(Bernoulli(0.7)),
        network.Linear(W[1]),
        network.Dropout(Bernoulli(0.5)),
        network.Linear(W[2]),
        network.Dropout(Bernoulli(0.8)),
        network.Linear(W[3]),
    ]
    X, Y = network_data(layers, (10, 5), seed)
    check_network_against_torch(layers, X, Y, 4000, seed)


MASKS = {"element": Bernoulli, "channel": Channel, "block": lambda keep: DropBlock(keep, 3)}


def conv2d_layers(seed, padding, first, second, spatial):
    """conv, ReLU, dropout, conv, dropout, conv, Linear head."""
    rng = np.random.default_rng(seed)
    w1, w2, w3 = (scaled_normal(rng, s) for s in [(3, 2, 3, 3), (4, 3, 3, 3), (2, 4, 3, 3)])
    head = scaled_normal(rng, (3, 2 * int(np.prod(spatial))))
    return [
        network.Conv(w1, padding=padding),
        network.ReLU(),
        network.Dropout(MASKS[first](0.7)),
        network.Conv(w2, padding=padding),
        network.Dropout(MASKS[second](0.6)),
        network.Conv(w3, padding=padding),
        network.Linear(head),
    ]


@pytest.mark.parametrize(
    "padding,first,second",
    [
        ("zeros", "element", "channel"),
        ("zeros", "channel", "element"),
        ("circular", "element", "channel"),
        ("circular", "channel", "element"),
        ("zeros", "block", "element"),
        ("circular", "element", "block"),
    ],
)
def test_exact_network_penalty_matches_torch_conv2d(padding, first, second, seed=32):
    spatial = (6, 7)
    layers = conv2d_layers(seed, padding, first, second, spatial)
    X, Y = network_data(layers, (6, 2, *spatial), seed)
    check_network_against_torch(layers, X, Y, 1500, seed)


@pytest.mark.parametrize("padding", PADDINGS)
def test_exact_network_penalty_matches_torch_conv1d(padding, seed=33):
    rng, length = np.random.default_rng(seed), 11
    w1, w2 = scaled_normal(rng, (3, 2, 3)), scaled_normal(rng, (3, 3, 5))
    layers = [
        network.Conv(w1, padding=padding),
        network.ReLU(),
        network.Dropout(Channel(0.6)),
        network.Conv(w2, padding=padding),
        network.Dropout(Bernoulli(0.7)),
        network.Linear(scaled_normal(rng, (2, 3 * length))),
    ]
    X, Y = network_data(layers, (6, 2, length), seed)
    check_network_against_torch(layers, X, Y, 4000, seed)
