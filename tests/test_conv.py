"""Tests of regtheory.conv against independent computations.

Independent references used here: a brute-force loop over output pixels and
taps (the definition of cross-correlation), the dense layer matrices of
:func:`conv_matrix` plugged into formula (1) column by column, Monte Carlo over
real sampled masks (including DropBlock), and the literal 9×9 matrix of
THEORY §2. PyTorch cross-checks are in tests/test_torch_crosscheck.py.
"""

import itertools

import numpy as np
import pytest
from _dropblock import dropblock_penalty_exact
from _theory import THEORY_MATRIX

from regtheory import InvalidParameterError, _convops, conv, dropout_lambda
from regtheory.masks import DropBlock, kept_units
from regtheory.montecarlo import _chunks, default_n_masks

# the generator of chunk i of a Monte Carlo batch with key k (regtheory.montecarlo._chunks)
chunk_stream = _chunks._stream

N_SE = 4  # Monte Carlo agreement is required within this many standard errors
PADDINGS = ["zeros", "circular"]


def brute_conv(x, w, padding):
    """Cross-correlation by its definition: loops over samples, pixels and taps."""
    N, C, H, W = x.shape
    Co, _, kh, kw = w.shape
    y = np.zeros((N, Co, H, W))
    for n in range(N):
        for o in range(Co):
            for i in range(H):
                for j in range(W):
                    for c in range(C):
                        for a in range(kh):
                            for b in range(kw):
                                ii, jj = i + a - kh // 2, j + b - kw // 2
                                if padding == "circular":
                                    ii, jj = ii % H, jj % W
                                elif not (0 <= ii < H and 0 <= jj < W):
                                    continue
                                y[n, o, i, j] += w[o, c, a, b] * x[n, c, ii, jj]
    return y


def brute_matrix(w, H, W, padding):
    """Column by column: the image of each unit impulse under brute_conv."""
    C = w.shape[1]
    eye = np.eye(C * H * W).reshape(C * H * W, C, H, W)
    return brute_conv(eye, w, padding).reshape(C * H * W, -1).T


def dense_penalty(u, v, keep, image_shape, padding, mode, x=None, activation=None):
    """Formula (1) on the expanded matrices: λ Σ_j ‖U[:, j]‖² E[h_j²], or per-channel blocks."""
    U = conv.conv_matrix(u, image_shape, padding=padding)
    V = conv.conv_matrix(v, image_shape, padding=padding)
    n = int(np.prod(image_shape))
    if x is None:
        S = V @ V.T  # E[h hᵀ] for E[x xᵀ] = I
        if activation == "relu":
            S = S / 2
    else:
        H = x.reshape(x.shape[0], -1) @ V.T
        if activation == "relu":
            H = np.maximum(H, 0)
        S = H.T @ H / x.shape[0]
    G = U.T @ U
    if mode == "element":
        return dropout_lambda(keep) * np.sum(np.diag(G) * np.diag(S))
    blocks = [slice(c * n, (c + 1) * n) for c in range(v.shape[0])]
    return dropout_lambda(keep) * sum(np.sum(G[s, s] * S[s, s]) for s in blocks)


# ----------------------------------------------------------------------------- conv2d, conv_matrix


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "N,C_in,C_out,H,W,kh,kw",
    [(2, 3, 2, 5, 4, 3, 3), (1, 2, 4, 4, 6, 3, 5), (2, 4, 1, 3, 3, 3, 1), (1, 1, 1, 5, 5, 5, 5)],
)
def test_conv2d_and_conv_matrix_against_brute_force(padding, N, C_in, C_out, H, W, kh, kw):
    rng = np.random.default_rng(H * 10 + kw)
    x = rng.normal(size=(N, C_in, H, W))
    w = rng.normal(size=(C_out, C_in, kh, kw))
    y = conv.conv2d(x, w, padding=padding)
    assert y.shape == (N, C_out, H, W)
    assert np.allclose(y, brute_conv(x, w, padding), atol=1e-12)
    M = conv.conv_matrix(w, (H, W), padding=padding)
    assert M.shape == (C_out * H * W, C_in * H * W)
    assert np.allclose(M, brute_matrix(w, H, W, padding), atol=1e-12)
    # flattening c*H*W + i*W + j: the matrix acts on reshaped images exactly as conv2d
    assert np.allclose(x.reshape(N, -1) @ M.T, y.reshape(N, -1), atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_conv2d_one_dimensional_is_height_one(padding):
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(3, 2, 9)), rng.normal(size=(4, 2, 5))
    y = conv.conv2d(x, w, padding=padding)
    assert y.shape == (3, 4, 9)
    assert np.allclose(y, brute_conv(x[:, :, None], w[:, :, None], padding)[:, :, 0])
    M = conv.conv_matrix(w, 9, padding=padding)
    assert np.allclose(x.reshape(3, -1) @ M.T, y.reshape(3, -1))


def test_conv2d_large_batches_are_chunked_consistently(monkeypatch):
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(37, 3, 6, 6)), rng.normal(size=(2, 3, 3, 3))
    whole = conv.conv2d(x, w, padding="circular")
    monkeypatch.setattr(_convops, "WORKSPACE", 3 * 3 * 3 * 9 * 9 * 5)  # chunks of 5 samples
    assert np.allclose(conv.conv2d(x, w, padding="circular"), whole, atol=1e-12)


def test_seed_matrix_of_theory_section_2():
    """The 9×9 matrix of a 3×3 kernel u1..u9 on a 3×3 image, written out from THEORY §2."""
    u = np.arange(1.0, 10.0)  # u_k = k, so entry value k stands for u_k and 0 for zero
    M = conv.conv_matrix(u.reshape(1, 1, 3, 3), (3, 3))
    assert np.array_equal(M, THEORY_MATRIX)
    assert np.array_equal(M[:3, :3], [[5, 6, 0], [4, 5, 6], [0, 4, 5]])


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kernel,image", [((3, 3), (3, 3)), ((3, 5), (4, 6)), ((3,), (7,))])
def test_tap_column_counts_against_the_matrix(padding, kernel, image):
    """Count, for each one-hot kernel, the columns of conv_matrix it appears in."""
    counts = conv.tap_column_counts(kernel, image, padding=padding)
    assert counts.shape == kernel
    for tap in np.ndindex(*kernel):
        one_hot = np.zeros((1, 1, *kernel))
        one_hot[(0, 0, *tap)] = 1.0
        M = conv.conv_matrix(one_hot, image, padding=padding)
        assert counts[tap] == np.count_nonzero(M.any(axis=0))


def test_tap_column_counts_of_the_seed():
    assert np.array_equal(conv.tap_column_counts(3, (3, 3)), [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    assert np.all(conv.tap_column_counts(3, (3, 3), padding="circular") == 9)


def test_no_gradient_probability_matches_simulated_gradients():
    """Zero gradient of each tap of u, over real masks on the seed's 3×3 map, generic data."""
    keep, n = 0.4, 200_000
    rng = np.random.default_rng(5)
    h, delta = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))  # hidden map, output error
    r = rng.random((n, 3, 3)) < keep
    hm = np.pad(r * h, ((0, 0), (1, 1), (1, 1)))
    grad = np.empty((n, 3, 3))  # dL/du[a, b] = Σ_i δ[i] (m∘h)[i + (a-1, b-1)]
    for a in range(3):
        for b in range(3):
            grad[:, a, b] = np.einsum("ij,nij->n", delta, hm[:, a : a + 3, b : b + 3])
    freq = (grad == 0).mean(axis=0)
    expected = conv.no_gradient_probability(3, (3, 3), keep)
    assert np.allclose(expected, (1 - keep) ** np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]))
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(freq - expected) < N_SE * se + 1e-12)
    assert np.all(expected < conv.fc_no_gradient_probability(keep))
    assert conv.fc_no_gradient_probability(keep) == pytest.approx(1 - keep)
    channel = conv.no_gradient_probability(3, (3, 3), keep, mode="channel")
    assert np.allclose(channel, 1 - keep)


# ------------------------------------------------------------------------- closed forms (5), (6)


CASES = [  # (u shape, v shape, image)
    ((2, 3, 3, 3), (3, 2, 3, 3), (5, 4)),
    ((3, 2, 5, 3), (2, 1, 3, 5), (6, 5)),
    ((1, 2, 3, 3), (2, 3, 1, 1), (3, 3)),
    ((2, 2, 5), (2, 3, 3), (8,)),
    ((2, 3, 5, 5), (3, 2, 5, 5), (5, 5)),
]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("mode", ["element", "channel"])
@pytest.mark.parametrize("case", CASES)
def test_penalty_equals_dense_matrix_formula(padding, mode, case):
    u_shape, v_shape, image = case
    rng = np.random.default_rng(sum(u_shape) + len(image))
    u, v = rng.normal(size=u_shape), rng.normal(size=v_shape)
    x = rng.normal(size=(7, v_shape[1], *image))
    keep = 0.7
    for data, act in [(None, None), (x, None), (x, "relu")]:
        closed = conv.dropout_penalty(
            u, v, keep, image, padding=padding, mode=mode, x=data, activation=act
        )
        dense = dense_penalty(u, v, keep, image, padding, mode, x=data, activation=act)
        assert closed == pytest.approx(dense, rel=1e-10)
    if mode == "element":
        closed = conv.dropout_penalty(
            u, v, keep, image, padding=padding, mode=mode, activation="relu"
        )
        assert closed == pytest.approx(dense_penalty(u, v, keep, image, padding, mode) / 2)


def test_column_sq_norms_are_the_matrix_column_norms():
    rng = np.random.default_rng(6)
    w = rng.normal(size=(3, 2, 3, 5))
    for padding in PADDINGS:
        M = conv.conv_matrix(w, (4, 6), padding=padding)
        norms = conv.column_sq_norms(w, (4, 6), padding=padding)
        assert np.allclose(norms.ravel(), np.sum(M**2, axis=0))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    ("u_shape", "v_shape", "image"),
    [((2, 3, 3, 5), (3, 2, 5, 3), (6, 7)), ((1, 2, 5), (2, 3, 3), (9,))],
    ids=["2d", "1d"],
)
def test_position_penalty_is_formula_5_per_position_of_the_dense_matrices(
    padding, u_shape, v_shape, image
):
    """P[q] = λ Σ_c ‖U[:, (c, q)]‖² ‖V[(c, q), :]‖² read off the dense layer matrices, and
    the map sums to the white-input elementwise penalty."""
    rng = np.random.default_rng(11)
    u, v = rng.normal(size=u_shape), rng.normal(size=v_shape)
    keep, hidden = 0.3, v_shape[0]
    U = conv.conv_matrix(u, image, padding=padding)
    V = conv.conv_matrix(v, image, padding=padding)
    per_unit = np.sum(U**2, axis=0) * np.sum(V**2, axis=1)  # hidden unit (c, q)
    expected = dropout_lambda(keep) * per_unit.reshape(hidden, *image).sum(axis=0)
    found = conv.position_penalty(u, v, keep, image, padding=padding)
    assert found.shape == tuple(image)
    assert np.allclose(found, expected, rtol=1e-12)
    total = conv.dropout_penalty(u, v, keep, image, padding=padding)
    assert float(found.sum()) == pytest.approx(total, rel=1e-12)


def test_circular_white_element_penalty_is_lambda_n_sum_of_norm_products():
    """λ·n·Σ_c ‖u_c‖²‖v_c‖² (THEORY §3): every column of a circulant U_c has norm ‖u_c‖."""
    rng = np.random.default_rng(7)
    u, v = rng.normal(size=(2, 4, 3, 3)), rng.normal(size=(4, 3, 5, 3))
    keep, H, W = 0.3, 6, 7
    closed = conv.dropout_penalty(u, v, keep, (H, W), padding="circular", mode="element")
    norms = np.sum(u**2, axis=(0, 2, 3)) * np.sum(v**2, axis=(1, 2, 3))
    assert closed == pytest.approx(dropout_lambda(keep) * H * W * np.sum(norms), rel=1e-12)


def test_circular_white_channel_penalty_is_ridge_on_end_to_end_kernels():
    """λ·n·Σ_c ‖u_c ⋆ v_c‖² (THEORY §3), the end-to-end kernel of hidden channel c read off
    as the response of the two circular layers to a unit impulse in each input channel."""
    rng = np.random.default_rng(7)
    u, v = rng.normal(size=(2, 4, 3, 3)), rng.normal(size=(4, 3, 3, 5))
    keep, H, W = 0.3, 6, 7
    impulses = np.zeros((3, 3, H, W))
    impulses[np.arange(3), np.arange(3), 0, 0] = 1.0
    total = 0.0
    for c in range(4):
        hidden = conv.conv2d(impulses, v[c : c + 1], padding="circular")
        total += np.sum(conv.conv2d(hidden, u[:, c : c + 1], padding="circular") ** 2)
    closed = conv.dropout_penalty(u, v, keep, (H, W), padding="circular", mode="channel")
    assert closed == pytest.approx(dropout_lambda(keep) * H * W * total, rel=1e-12)


def test_zero_padding_penalty_is_below_circular():
    rng = np.random.default_rng(8)
    u, v = rng.normal(size=(2, 3, 3, 3)), rng.normal(size=(3, 2, 3, 3))
    zeros = conv.dropout_penalty(u, v, 0.5, (8, 8), padding="zeros")
    circular = conv.dropout_penalty(u, v, 0.5, (8, 8), padding="circular")
    assert 0 < zeros < circular  # zero padding truncates the kernels at the border


def test_keep_one_has_no_penalty():
    rng = np.random.default_rng(9)
    u, v = rng.normal(size=(2, 3, 3, 3)), rng.normal(size=(3, 2, 3, 3))
    assert conv.dropout_penalty(u, v, 1.0, (4, 4)) == 0.0
    assert conv.dropout_penalty_mc(u, v, 1.0, (4, 4), n_masks=10).mean == 0.0


# ----------------------------------------------------------------------------- Monte Carlo


MC_NET = {"u_shape": (2, 3, 3, 3), "v_shape": (3, 2, 3, 3), "image": (6, 6)}


def mc_net(seed=11):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=MC_NET["u_shape"])
    v = rng.normal(size=MC_NET["v_shape"])
    x = rng.normal(size=(8, 2, *MC_NET["image"]))
    return u, v, x


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "mode,data,activation",
    [
        ("element", False, None),
        ("element", True, None),
        ("element", True, "relu"),
        ("element", False, "relu"),
        ("channel", False, None),
        ("channel", True, None),
        ("channel", True, "relu"),
    ],
)
def test_closed_form_matches_monte_carlo(padding, mode, data, activation):
    u, v, x = mc_net()
    x = x if data else None
    keep = 0.6
    closed = conv.dropout_penalty(
        u, v, keep, MC_NET["image"], padding=padding, mode=mode, x=x, activation=activation
    )
    est = conv.dropout_penalty_mc(
        u,
        v,
        keep,
        MC_NET["image"],
        padding=padding,
        mode=mode,
        n_masks=4000,
        seed=12,
        x=x,
        activation=activation,
    )
    assert abs(est.zscore(closed)) < N_SE, (closed, est)
    assert est.rel_stderr < 0.02  # the test has power


def test_one_dimensional_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(13)
    u, v = rng.normal(size=(2, 3, 5)), rng.normal(size=(3, 2, 3))
    for mode in ("element", "channel"):
        closed = conv.dropout_penalty(u, v, 0.5, 10, padding="zeros", mode=mode)
        est = conv.dropout_penalty_mc(
            u, v, 0.5, 10, padding="zeros", mode=mode, n_masks=4000, seed=14
        )
        assert abs(est.zscore(closed)) < N_SE, (mode, closed, est)


@pytest.mark.slow
def test_monte_carlo_draws_equal_direct_network_evaluation():
    """The draws of dropout_penalty_mc (one mask per batch; 56 masks, the fewest it accepts
    at keep 0.5) against forward passes with the same masks and data."""
    u, v, x = mc_net()
    image, x, n_masks = MC_NET["image"], x[:3], 56
    est = conv.dropout_penalty_mc(
        u,
        v,
        0.5,
        image,
        padding="zeros",
        mode="element",
        n_masks=n_masks,
        seed=15,
        x=x,
        batch_size=1,
    )
    # re-draw the masks as the estimator does: per batch one 63-bit key from the seed's
    # generator, the batch's (only) chunk drawing from default_rng([key, 0]) the kept units
    # of its padded grid (channels, masks, data, H + 2, W + 2); the mask is the interior
    rng = np.random.default_rng(15)
    masks = []
    for _ in range(n_masks):
        chunk = chunk_stream(int(rng.integers(1 << 63)), 0)
        kept = kept_units(0.5, (3, 1, 1, image[0] + 2, image[1] + 2), chunk)
        masks.append(kept[:, 0, 0, 1:-1, 1:-1] / 0.5)
    h = brute_conv(x, v, "zeros")
    draws = [  # each draw averages the squared perturbation over the 3 samples
        np.sum((brute_conv(m * h, u, "zeros") - brute_conv(h, u, "zeros")) ** 2) / 3 for m in masks
    ]
    assert est.mean == pytest.approx(np.mean(draws), rel=1e-10)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("data,activation", [(False, None), (False, "relu"), (True, "relu")])
def test_monte_carlo_draws_equal_direct_network_evaluation_across_batches(
    padding, data, activation
):
    """59 draws (the fewest accepted at keep 0.6) in batches of 25, 25, 9 (the work arrays
    are reused, the last batch is smaller) against forward passes with the same masks and
    inputs."""
    u, v, x = mc_net()
    image, keep, n_masks = MC_NET["image"], 0.6, 59
    x = x[:3] if data else None
    est = conv.dropout_penalty_mc(
        u,
        v,
        keep,
        image,
        padding=padding,
        n_masks=n_masks,
        seed=20,
        x=x,
        activation=activation,
        batch_size=25,
    )
    # re-draw as the estimator does: per batch one 63-bit key from the seed's generator;
    # the batch's (only: checked) chunk draws from its stream first the kept units of its
    # padded grid (channels, masks, 1, H + 2, W + 2), then (white input) standard normals
    # at every position of the grid, channel after channel, whose interior is the input
    grid = (image[0] + 2, image[1] + 2)
    assert _chunks.CHUNK_ENTRIES // (25 * (2 * 9 + 2 * 3) * grid[0] * grid[1])
    rng = np.random.default_rng(20)
    draws = []
    for size in (25, 25, 9):
        chunk = chunk_stream(int(rng.integers(1 << 63)), 0)
        kept = kept_units(keep, (3, size, 1, *grid), chunk)
        masks = kept[:, :, 0, 1:-1, 1:-1].transpose(1, 0, 2, 3) / keep
        noise = chunk.standard_normal((2, size, *grid))[:, :, 1:-1, 1:-1]
        inputs = x if data else noise.transpose(1, 0, 2, 3)
        for i, m in enumerate(masks):
            batch = inputs if data else inputs[i : i + 1]
            h = brute_conv(batch, v, padding)
            if activation == "relu":
                h = np.maximum(h, 0)
            deviation = brute_conv(m * h, u, padding) - brute_conv(h, u, padding)
            draws.append(np.sum(deviation**2) / len(batch))
    assert est.n_samples == n_masks
    assert est.mean == pytest.approx(np.mean(draws), rel=1e-10)
    assert est.stderr == pytest.approx(np.std(draws, ddof=1) / np.sqrt(n_masks), rel=1e-8)


def test_dropblock_of_size_one_is_elementwise_dropout():
    u, v, _ = mc_net()
    image, keep = MC_NET["image"], 0.7
    block = conv.dropout_penalty_mc(
        u, v, keep, image, mode="block", block_size=1, n_masks=4000, seed=16
    )
    element = conv.dropout_penalty_mc(u, v, keep, image, mode="element", n_masks=4000, seed=17)
    assert abs(block.mean - element.mean) < N_SE * np.hypot(block.stderr, element.stderr)
    closed = conv.dropout_penalty(u, v, keep, image, mode="element")
    assert abs(block.zscore(closed)) < N_SE


@pytest.mark.parametrize("padding", PADDINGS)
def test_dropblock_covering_the_map_is_channel_dropout(padding):
    u, v, x = mc_net()
    image, keep = MC_NET["image"], 0.7
    est = conv.dropout_penalty_mc(
        u, v, keep, image, padding=padding, mode="block", block_size=6, n_masks=4000, seed=18, x=x
    )
    closed = conv.dropout_penalty(u, v, keep, image, padding=padding, mode="channel", x=x)
    assert abs(est.zscore(closed)) < N_SE, (closed, est)


def dropblock_deviation_moments(keep, b, H, W, channels):
    """Exact E[(m_p - 1)(m_q - 1)] of ideal DropBlock masks over (channel, position) pairs.

    Position p is kept iff none of the block starts covering it fires, so
    P[p and q kept] = (1 - γ)^|S_p ∪ S_q| (S_p = starts covering p, counted by brute
    force); different channels are independent but each mask entry is biased,
    E[m_p] = (1 - γ)^|S_p| / keep ≠ 1 near the border.
    """
    gamma = DropBlock(keep, b).gamma((H, W))
    starts = [(i, j) for i in range(H - b + 1) for j in range(W - b + 1)]
    cover = np.zeros((H * W, len(starts)))
    for s, (i, j) in enumerate(starts):
        block = np.zeros((H, W))
        block[i : i + b, j : j + b] = 1
        cover[:, s] = block.ravel()
    count = cover.sum(axis=1)
    union = count[:, None] + count[None, :] - cover @ cover.T
    kept = (1 - gamma) ** count
    same = (1 - gamma) ** union / keep**2 - (kept[:, None] + kept[None, :]) / keep + 1
    bias = kept / keep - 1
    n = H * W
    moments = np.tile(np.outer(bias, bias), (channels, channels))
    for c in range(channels):
        moments[c * n : (c + 1) * n, c * n : (c + 1) * n] = same
    return moments


@pytest.mark.parametrize("padding", PADDINGS)
def test_dropblock_monte_carlo_matches_exact_mask_moments(padding):
    """Formula (4) with DropBlock's exact (biased, correlated) mask moments, dense matrices."""
    u, v, _ = mc_net()
    image, keep = MC_NET["image"], 0.7
    U, V = conv.conv_matrix(u, image, padding=padding), conv.conv_matrix(v, image, padding=padding)
    moments = dropblock_deviation_moments(keep, 3, *image, channels=v.shape[0])
    exact = np.sum((U.T @ U) * moments * (V @ V.T))
    est = conv.dropout_penalty_mc(
        u, v, keep, image, padding=padding, mode="block", block_size=3, n_masks=4000, seed=19
    )
    assert abs(est.zscore(exact)) < N_SE, (exact, est)


# ------------------------------------------------------------------------- DropBlock closed form


def random_block_case(rng, one_d=False):
    """Random small net, image, block, keep, padding, data and targets for the DropBlock gap."""

    def ks(n):  # odd kernels that fit
        return [k for k in (1, 3, 5) if k <= n]

    c_hid, c_in, c_out = (int(c) for c in rng.integers(1, 4, size=3))
    if one_d:
        image = (int(rng.integers(2, 9)),)
        u = rng.normal(size=(c_out, c_hid, rng.choice(ks(image[0]))))
        v = rng.normal(size=(c_hid, c_in, rng.choice(ks(image[0]))))
    else:
        image = tuple(int(n) for n in rng.integers(2, 8, size=2))
        u = rng.normal(size=(c_out, c_hid, rng.choice(ks(image[0])), rng.choice(ks(image[1]))))
        v = rng.normal(size=(c_hid, c_in, rng.choice(ks(image[0])), rng.choice(ks(image[1]))))
    block = int(rng.integers(1, min(4, *image) + 1))
    keep = float(rng.uniform(0.1, 0.9))
    x = rng.normal(size=(int(rng.integers(1, 5)), c_in, *image))
    y = 3 * rng.normal(size=(len(x), c_out, *image))
    return u, v, image, block, keep, x, y


@pytest.mark.slow
def test_dropblock_closed_form_matches_dense_oracle_on_random_shapes():
    """The banded closed form against formula (4) + cross term on dense matrices, with mask
    moments from brute-force sets of covering block starts (tests/_dropblock.py)."""
    rng = np.random.default_rng(30)
    for trial in range(240):
        u, v, image, block, keep, x, y = random_block_case(rng, one_d=trial % 8 == 7)
        padding = PADDINGS[trial % 2]
        data = [(None, None), (x, None), (x, y)][trial % 3]
        closed = conv.dropout_penalty(
            u, v, keep, image, padding=padding, mode="block", block_size=block, x=data[0], y=data[1]
        )
        dense = dropblock_penalty_exact(u, v, keep, image, padding, block, *data)
        case = (trial, image, block, keep, padding, u.shape, v.shape)
        assert closed == pytest.approx(dense, rel=1e-10, abs=1e-10), case


def all_block_masks(image, block, channels, keep):
    """Every start pattern of ideal DropBlock on ``channels`` maps, with its probability.

    A position is dropped iff it lies in the block of a start that fired; starts fire
    i.i.d. with DropBlock's rate γ. Yields (probability, mask of shape (channels, *image)).
    """
    gamma = DropBlock(keep, block).gamma(image)
    spatial = image if len(image) == 2 else (1, image[0])
    sides = (block, block) if len(image) == 2 else (1, block)
    starts = list(itertools.product(*(range(n - b + 1) for n, b in zip(spatial, sides))))
    single = []
    for fired in itertools.product([False, True], repeat=len(starts)):
        kept = np.ones(spatial)
        for on, (i, j) in zip(fired, starts):
            if on:
                kept[i : i + sides[0], j : j + sides[1]] = 0
        prob = gamma ** sum(fired) * (1 - gamma) ** (len(starts) - sum(fired))
        single.append((prob, kept.reshape(image) / keep))
    for combo in itertools.product(single, repeat=channels):
        yield np.prod([p for p, _ in combo]), np.stack([m for _, m in combo])


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("image,block", [((3, 3), 2), ((3, 4), 3), ((4, 4), 3), ((5,), 2)])
def test_dropblock_closed_form_matches_enumeration_of_all_start_patterns(padding, image, block):
    """Exact expectation by summing the loss gap of every start pattern (16 per channel on
    a 3×3 map with 2×2 blocks) times its probability; the net is evaluated with conv2d."""
    rng = np.random.default_rng(31)
    kernel = (3,) * len(image)
    u, v = rng.normal(size=(2, 2, *kernel)), rng.normal(size=(2, 1, *kernel))
    x, y = rng.normal(size=(3, 1, *image)), 2 * rng.normal(size=(3, 2, *image))
    keep = 0.65
    h = conv.conv2d(x, v, padding=padding)
    clean = conv.conv2d(h, u, padding=padding)
    # white input: E_x ‖U diag(e) V x‖² = ‖U diag(e) V‖_F², columns = images of unit impulses
    h_eye = conv.conv2d(np.eye(int(np.prod(image))).reshape(-1, 1, *image), v, padding=padding)
    gap = {"white": 0.0, "data": 0.0, "target": 0.0}
    total_prob = 0.0
    for prob, m in all_block_masks(image, block, 2, keep):
        dropped = conv.conv2d(m * h, u, padding=padding)
        gap["data"] += prob * np.sum((dropped - clean) ** 2) / len(x)
        gap["target"] += prob * np.sum((y - dropped) ** 2 - (y - clean) ** 2) / len(x)
        gap["white"] += prob * np.sum(conv.conv2d((m - 1) * h_eye, u, padding=padding) ** 2)
        total_prob += prob
    assert total_prob == pytest.approx(1, rel=1e-12)
    args, opts = (u, v, keep, image), {"padding": padding, "mode": "block"}
    closed = {
        "white": conv.dropout_penalty(*args, **opts, block_size=block),
        "data": conv.dropout_penalty(*args, **opts, x=x, block_size=block),
        "target": conv.dropout_penalty(*args, **opts, x=x, block_size=block, y=y),
    }
    for key, exact in gap.items():
        assert closed[key] == pytest.approx(exact, rel=1e-10), key
    assert abs(gap["target"] - gap["data"]) > 1e-3 * gap["data"]  # the cross term is real


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("block", [2, 3])
def test_dropblock_loss_gap_monte_carlo_matches_closed_form(padding, block):
    """Monte Carlo over real DropBlock masks of the loss gap with a target: within N_SE
    standard errors of the closed form. On zero padding the perturbation energy (the
    former 'penalty', the gap only at the target f(x)) is far outside."""
    u, v, x = mc_net()
    y = 2 * np.random.default_rng(32).normal(size=(len(x), u.shape[0], *MC_NET["image"]))
    image, keep = MC_NET["image"], 0.6
    args, opts = (u, v, keep, image), {"padding": padding, "mode": "block"}
    closed = conv.dropout_penalty(*args, **opts, x=x, y=y, block_size=block)
    est = conv.dropout_penalty_mc(*args, **opts, block_size=block, n_masks=4000, seed=33, x=x, y=y)
    assert abs(est.zscore(closed)) < N_SE, (closed, est)
    energy = conv.dropout_penalty(*args, **opts, x=x, block_size=block)
    relu = conv.dropout_penalty(*args, **opts, x=x, y=y, block_size=block, activation="relu")
    est = conv.dropout_penalty_mc(
        *args, **opts, block_size=block, n_masks=4000, seed=34, x=x, y=y, activation="relu"
    )
    assert abs(est.zscore(relu)) < N_SE, (relu, est)
    if padding == "zeros":
        assert abs(closed - energy) > 0.2 * closed


def test_dropblock_without_target_is_the_perturbation_energy_at_the_clean_output():
    u, v, x = mc_net()
    image, keep = MC_NET["image"], 0.6
    clean = conv.conv2d(conv.conv2d(x, v), u)
    args, opts = (u, v, keep, image), {"padding": "zeros", "mode": "block"}
    at_clean = conv.dropout_penalty(*args, **opts, x=x, y=clean, block_size=3)
    assert conv.dropout_penalty(*args, **opts, x=x, block_size=3) == pytest.approx(
        at_clean, rel=1e-12
    )
    est = conv.dropout_penalty_mc(*args, **opts, block_size=3, n_masks=3000, seed=35, x=x, y=clean)
    again = conv.dropout_penalty_mc(*args, **opts, block_size=3, n_masks=3000, seed=35, x=x)
    assert est.mean == pytest.approx(again.mean, rel=1e-9)


@pytest.mark.parametrize("padding", PADDINGS)
def test_element_and_channel_gaps_do_not_depend_on_the_target(padding):
    """E m = 1: the cross term vanishes, so y changes neither the closed form nor (in
    expectation) the Monte Carlo loss gap."""
    u, v, x = mc_net()
    y = 2 * np.random.default_rng(36).normal(size=(len(x), u.shape[0], *MC_NET["image"]))
    image, keep = MC_NET["image"], 0.6
    for mode in ("element", "channel"):
        closed = conv.dropout_penalty(u, v, keep, image, padding=padding, mode=mode, x=x)
        assert (
            conv.dropout_penalty(u, v, keep, image, padding=padding, mode=mode, x=x, y=y) == closed
        )
        est = conv.dropout_penalty_mc(
            u, v, keep, image, padding=padding, mode=mode, n_masks=3000, seed=37, x=x, y=y
        )
        assert abs(est.zscore(closed)) < N_SE, (mode, closed, est)


@pytest.mark.parametrize("padding", PADDINGS)
def test_dropblock_limits_are_the_element_and_channel_closed_forms(padding):
    """b = 1 is elementwise dropout, formula (5); a block covering the map is channel
    dropout, formula (6) (both with and without data)."""
    u, v, x = mc_net()
    image, keep = MC_NET["image"], 0.35
    for data in (None, x):
        for block, mode in ((1, "element"), (6, "channel")):
            closed = conv.dropout_penalty(u, v, keep, image, padding=padding, mode=mode, x=data)
            block_form = conv.dropout_penalty(
                u, v, keep, image, padding=padding, mode="block", x=data, block_size=block
            )
            assert block_form == pytest.approx(closed, rel=1e-9), (block, data is None)


def test_dropblock_closed_form_refuses_the_torchvision_normaliser():
    """No closed form for torchvision's normaliser: method="exact" is refused, "auto"
    gives the Monte Carlo estimate, the one of method="mc" with the same rng."""
    u, v, _ = mc_net()
    options = {"mode": "block", "block_size": 3, "normalize": "torchvision"}
    with pytest.raises(ValueError, match="normalize.*method='mc'"):
        conv.dropout_penalty(u, v, 0.5, (6, 6), method="exact", **options)
    auto = conv.dropout_penalty(u, v, 0.5, (6, 6), n_masks=200, rng=0, **options)
    mc = conv.dropout_penalty(u, v, 0.5, (6, 6), method="mc", n_masks=200, rng=0, **options)
    assert auto.method == "mc" and auto.n_masks == 200 and np.isfinite(auto.value)
    assert auto.value == mc.value and auto.stderr == mc.stderr


def test_monte_carlo_same_seed_same_estimate_and_rtol_stops_early():
    u, v, _ = mc_net()
    a = conv.dropout_penalty_mc(u, v, 0.5, MC_NET["image"], n_masks=300, seed=3)
    b = conv.dropout_penalty_mc(u, v, 0.5, MC_NET["image"], n_masks=300, seed=3)
    assert a == b
    c = conv.dropout_penalty_mc(
        u, v, 0.5, MC_NET["image"], n_masks=100_000, seed=3, rtol=0.05, batch_size=500
    )
    assert c.n_samples < 100_000 and c.rel_stderr <= 0.05


# ----------------------------------------------------------------------------- bad input


GOOD_U, GOOD_V = np.ones((2, 3, 3, 3)), np.ones((3, 2, 3, 3))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: conv.conv2d(np.ones((1, 2, 5, 5)), np.ones((1, 2, 2, 3))), "weight.*odd"),
        (lambda: conv.conv2d(np.ones((1, 2, 3, 3)), np.ones((1, 2, 5, 5))), "weight.*larger"),
        (lambda: conv.conv2d(np.ones((1, 3, 5, 5)), np.ones((1, 2, 3, 3))), "x.*channels"),
        (lambda: conv.conv2d(np.ones((2, 5, 5)), np.ones((1, 2, 3, 3))), "x.*dimensions"),
        (lambda: conv.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 3, 3))), "x.*dimensions"),
        (lambda: conv.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 3))), "weight.*dimensions"),
        (
            lambda: conv.conv2d(np.ones((1, 2, 5, 5)), np.ones((1, 2, 3, 3)), padding="reflect"),
            "padding",
        ),
        (lambda: conv.conv_matrix(np.ones((1, 1, 3, 3)), (4,)), "image_shape"),
        (lambda: conv.conv_matrix(np.ones((1, 1, 4, 3)), (5, 5)), "weight.*odd"),
        (lambda: conv.conv_matrix(np.ones((1, 1, 3)), 2), "weight.*larger"),
        (lambda: conv.tap_column_counts(2, (3, 3)), "kernel_size.*odd"),
        (lambda: conv.tap_column_counts(5, (3, 3)), "kernel_size.*larger"),
        (lambda: conv.tap_column_counts((3, 3, 3), (3, 3)), "kernel_size"),
        (lambda: conv.tap_column_counts(3, (3, 3), padding="same"), "padding"),
        (lambda: conv.no_gradient_probability(3, (3, 3), 0.5, mode="block"), "mode"),
        (lambda: conv.no_gradient_probability(3, (3, 3), 0.0), "keep"),
        (lambda: conv.dropout_penalty(np.ones((2, 3, 2, 2)), GOOD_V, 0.5, (5, 5)), "`u`.*odd"),
        (lambda: conv.dropout_penalty(GOOD_U, np.ones((3, 2, 4, 4)), 0.5, (5, 5)), "`v`.*odd"),
        (lambda: conv.dropout_penalty(GOOD_U, np.ones((3, 2, 7, 7)), 0.5, (5, 5)), "`v`.*larger"),
        (lambda: conv.dropout_penalty(np.ones((2, 3, 7, 7)), GOOD_V, 0.5, (5, 5)), "`u`.*larger"),
        (lambda: conv.dropout_penalty(np.ones((2, 4, 3, 3)), GOOD_V, 0.5, (5, 5)), "`u`.*`v`"),
        (lambda: conv.dropout_penalty(np.ones((2, 3, 3)), GOOD_V, 0.5, (5, 5)), "`u` and `v`"),
        (lambda: conv.dropout_penalty(GOOD_U, np.ones((3, 3)), 0.5, (5, 5)), "`v`"),
        (lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), padding="wrap"), "padding"),
        (lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), mode="block"), "block_size"),
        (lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), block_size=2), "block_size"),
        (
            lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), mode="block", block_size=6),
            "block_size",
        ),
        (
            lambda: conv.dropout_penalty(
                GOOD_U,
                GOOD_V,
                0.5,
                (5, 5),
                mode="block",
                block_size=2,
                activation="relu",
                method="exact",
            ),
            "activation.*method='mc'",
        ),
        (
            lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), normalize="torchvision"),
            "normalize",
        ),
        (
            lambda: conv.dropout_penalty(
                GOOD_U, GOOD_V, 0.5, (5, 5), mode="block", block_size=2, normalize="mean"
            ),
            "normalize",
        ),
        (
            lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), y=np.ones((4, 2, 5, 5))),
            "`y`.*`x`",
        ),
        (
            lambda: conv.dropout_penalty(
                GOOD_U, GOOD_V, 0.5, (5, 5), x=np.ones((4, 2, 5, 5)), y=np.ones((3, 2, 5, 5))
            ),
            "`y` must have shape",
        ),
        (
            lambda: conv.dropout_penalty_mc(
                GOOD_U, GOOD_V, 0.5, (5, 5), x=np.ones((4, 2, 5, 5)), y=np.ones((4, 3, 5, 5))
            ),
            "`y` must have shape",
        ),
        (
            lambda: conv.dropout_penalty_mc(GOOD_U, GOOD_V, 0.5, (5, 5), y=np.ones((4, 2, 5, 5))),
            "`y`",
        ),
        (lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), mode="Element"), "mode"),
        (lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 1.5, (5, 5)), "keep"),
        (lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5, 5)), "image_shape"),
        (
            lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), x=np.ones((4, 3, 5, 5))),
            "`x`",
        ),
        (
            lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), x=np.ones((4, 2, 5, 6))),
            "`x`",
        ),
        (
            lambda: conv.dropout_penalty(GOOD_U, GOOD_V, 0.5, (5, 5), activation="tanh"),
            "activation",
        ),
        (
            lambda: conv.dropout_penalty(
                GOOD_U, GOOD_V, 0.5, (5, 5), mode="channel", activation="relu", method="exact"
            ),
            "activation.*method='mc'",
        ),
        (
            lambda: conv.dropout_penalty_mc(
                GOOD_U, GOOD_V, 0.5, (5, 5), mode="block", block_size=6
            ),
            "block_size",
        ),
        (lambda: conv.dropout_penalty_mc(GOOD_U, GOOD_V, 0.5, (5, 5), mode="block"), "block_size"),
        (lambda: conv.dropout_penalty_mc(GOOD_U, GOOD_V, 0.5, (5, 5), block_size=3), "block_size"),
        (lambda: conv.dropout_penalty_mc(GOOD_U, GOOD_V, 0.5, (5, 5), mode="drop"), "mode"),
        (
            lambda: conv.dropout_penalty_mc(GOOD_U, GOOD_V, 0.5, (5, 5), padding="reflect"),
            "padding",
        ),
        (
            lambda: conv.dropout_penalty_mc(GOOD_U, np.ones((4, 2, 3, 3)), 0.5, (5, 5)),
            "`u`.*`v`",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("option", "value"),
    [("n_masks", -3), ("n_masks", "3"), ("n_masks", 3.0), ("rtol", -1.0), ("batch_size", 0)],
)
def test_monte_carlo_refusals_name_the_callers_argument(option, value):
    """The estimator underneath calls it n_samples; the caller wrote n_masks."""
    kwargs = {"n_masks": 100, option: value}
    with pytest.raises(InvalidParameterError, match=f"`{option}`") as refused:
        conv.dropout_penalty_mc(GOOD_U, GOOD_V, 0.5, (5, 5), **kwargs)
    assert "n_samples" not in str(refused.value)


# ----------------------------------------------------------------------------- one grammar


def test_method_auto_is_exact_where_the_closed_form_exists():
    """method="auto" returns the closed form (an exact Penalty) for element, channel and
    block masks, with and without data; method="mc" estimates the same value."""
    u, v, x = mc_net()
    image = MC_NET["image"]
    for options in (
        {"mode": "element"},
        {"mode": "channel", "x": x, "activation": "relu"},
        {"mode": "block", "block_size": 2},
    ):
        auto = conv.dropout_penalty(u, v, 0.5, image, **options)
        exact = conv.dropout_penalty(u, v, 0.5, image, method="exact", **options)
        assert auto.is_exact and auto.method == "exact" and auto.value == exact.value
        assert auto.stderr == 0.0 and auto.n_masks is None
        est = conv.dropout_penalty(u, v, 0.5, image, method="mc", n_masks=4000, **options)
        assert est.method == "mc" and abs(est.zscore(exact.value)) < N_SE, (options, est)


def test_method_auto_estimates_where_there_is_no_closed_form():
    """A ReLU before channel masks on white input has no closed form: "auto" estimates it
    with the default number of masks, "exact" refuses; the estimate agrees with the exact
    penalty on many Gaussian samples (the expectation over white input), within the
    estimate's error and the samples' spread."""
    u, v, _ = mc_net()
    image = MC_NET["image"]
    est = conv.dropout_penalty(u, v, 0.5, image, mode="channel", activation="relu", rng=3)
    assert est.method == "mc" and est.n_masks == default_n_masks(0.5)
    with pytest.raises(InvalidParameterError, match="activation.*method='mc'"):
        conv.dropout_penalty(u, v, 0.5, image, mode="channel", activation="relu", method="exact")
    x = np.random.default_rng(4).normal(size=(4000, v.shape[1], *image))
    per_sample = [
        conv.dropout_penalty(u, v, 0.5, image, mode="channel", activation="relu", x=chunk)
        for chunk in np.split(x, 40)
    ]
    spread = np.std(per_sample, ddof=1) / np.sqrt(len(per_sample))
    assert abs(est.value - np.mean(per_sample)) < N_SE * np.hypot(est.stderr, spread)


def test_old_spellings_warn_and_give_the_same_numbers():
    """dropout_penalty_mc(..., seed=s) is dropout_penalty(..., method="mc", rng=s), with a
    DeprecationWarning for the alias and for seed; options stay keyword-only."""
    u, v, _ = mc_net()
    image = MC_NET["image"]
    new = conv.dropout_penalty(u, v, 0.5, image, method="mc", n_masks=300, rng=7)
    with pytest.warns(DeprecationWarning, match="dropout_penalty_mc"):
        old = conv.dropout_penalty_mc(u, v, 0.5, image, n_masks=300, rng=7)
    with pytest.warns(DeprecationWarning, match="seed"):
        seeded = conv.dropout_penalty(u, v, 0.5, image, method="mc", n_masks=300, seed=7)
    assert new.value == old.value == seeded.value and new.stderr == old.stderr
    with pytest.raises(InvalidParameterError, match="method"):
        conv.dropout_penalty_mc(u, v, 0.5, image, method="exact")
    with pytest.raises(InvalidParameterError, match="method"):
        conv.dropout_penalty(u, v, 0.5, image, method="both")
    with pytest.raises(TypeError):
        conv.dropout_penalty(u, v, 0.5, image, "zeros")
