"""Property-based tests (hypothesis): identities the formulas must satisfy for every input.

Each property is an independent consequence of the mathematics in docs/THEORY.md
(linearity in λ, symmetry under permuting hidden units, the rescaling symmetry of
the factorization, equalization minimises, shift invariance with circular padding),
checked on random shapes and values rather than on a few hand-picked cases.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regtheory import conv, dropout_lambda, fc, implied
from regtheory.masks import Bernoulli, Channel, DropBlock

pytestmark = pytest.mark.slow  # every test here takes seconds: not in the quick tier

SETTINGS = settings(max_examples=40, deadline=None)

keeps = st.floats(min_value=0.05, max_value=1.0)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


def factors(seed, d_out, d_in, width, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(d_out, width)), scale * rng.normal(size=(d_in, width))


@SETTINGS
@given(seeds, st.integers(1, 5), st.integers(1, 5), st.integers(1, 6), keeps)
def test_fc_penalty_linear_in_lambda_zero_at_keep_one(seed, d_out, d_in, width, keep):
    U, V = factors(seed, d_out, d_in, width)
    base = fc.dropout_penalty(U, V, 0.5)  # λ = 1
    assert np.isclose(fc.dropout_penalty(U, V, keep), dropout_lambda(keep) * base, rtol=1e-12)
    assert fc.dropout_penalty(U, V, 1.0) == 0.0


@SETTINGS
@given(seeds, st.integers(1, 5), st.integers(1, 5), st.integers(2, 6), keeps)
def test_fc_penalty_invariant_under_permuting_units(seed, d_out, d_in, width, keep):
    U, V = factors(seed, d_out, d_in, width)
    perm = np.random.default_rng(seed + 1).permutation(width)
    assert np.isclose(
        fc.dropout_penalty(U[:, perm], V[:, perm], keep), fc.dropout_penalty(U, V, keep)
    )


@SETTINGS
@given(
    seeds,
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 5),
    keeps,
    st.floats(min_value=0.1, max_value=10.0),
)
def test_fc_rescaling_keeps_map_and_scales_terms(seed, d_out, d_in, width, keep, a):
    """u_i -> a_i u_i, v_i -> v_i / a_i keeps the map and the penalty (1), which depends on
    the products ‖u_i‖·‖v_i‖ only; scaling U alone by a scales the penalty by a²."""
    U, V = factors(seed, d_out, d_in, width)
    scales = np.random.default_rng(seed + 2).uniform(0.2, 5.0, size=width) * a
    U2, V2 = U * scales, V / scales
    np.testing.assert_allclose(U2 @ V2.T, U @ V.T, atol=1e-10 * (1 + np.abs(U @ V.T).max()))
    assert np.isclose(fc.dropout_penalty(U2, V2, keep), fc.dropout_penalty(U, V, keep), rtol=1e-10)
    # scaling only U scales the penalty by the square of the scale
    assert np.isclose(fc.dropout_penalty(a * U, V, keep), a**2 * fc.dropout_penalty(U, V, keep))


@SETTINGS
@given(seeds, st.integers(1, 5), st.integers(1, 5), st.integers(1, 7), keeps)
def test_equalize_is_idempotent_and_never_increases_penalty(seed, d_out, d_in, width, keep):
    U, V = factors(seed, d_out, d_in, width)
    U1, V1 = fc.equalize(U, V)
    U2, V2 = fc.equalize(U1, V1)
    p0, p1, p2 = (fc.dropout_penalty(*f, keep) for f in ((U, V), (U1, V1), (U2, V2)))
    assert p1 <= p0 * (1 + 1e-10) + 1e-12
    assert np.isclose(p2, p1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(U2 @ V2.T, U @ V.T, atol=1e-9 * (1 + np.abs(U @ V.T).max()))


@SETTINGS
@given(seeds, st.integers(1, 5), st.integers(1, 5), st.integers(1, 6), st.floats(0.05, 0.95))
def test_global_optimum_satisfies_its_optimality_conditions(seed, d_out, d_in, width, keep):
    """Stationarity of ‖M − T‖² + (λ/w)‖M‖_*² on the support of M: M − T + (λ/w)‖M‖_* P = 0,
    with P the polar factor of M; outside the support, the singular values of T are ≤ α."""
    T = np.random.default_rng(seed).normal(size=(d_out, d_in)) * 3
    M = fc.global_optimum(T, keep, width)
    lam = dropout_lambda(keep)
    s = np.linalg.svd(M, compute_uv=False)
    r = int(np.sum(s > 1e-9 * max(1.0, s[0] if s.size else 1.0)))
    if r == 0:
        return
    alpha = lam / width * s[:r].sum()
    # the optimum is a fixed point: shrinking T's top-r singular values by alpha gives M back
    W1, sigma, W2t = np.linalg.svd(T, full_matrices=False)
    np.testing.assert_allclose(s[:r], sigma[:r] - alpha, atol=1e-9 * (1 + sigma[0]))
    rebuilt = (W1[:, :r] * (sigma[:r] - alpha)) @ W2t[:r]
    np.testing.assert_allclose(M, rebuilt, atol=1e-8 * (1 + sigma[0]))
    if r < min(width, sigma.size):
        assert sigma[r] <= alpha * (1 + 1e-9) + 1e-12


@SETTINGS
@given(
    seeds,
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from([(5, 6), (7, 7), (4, 9)]),
    st.integers(0, 8),
    st.integers(0, 8),
    keeps,
)
def test_circular_conv_penalty_invariant_under_image_shift(seed, c_in, c_hid, hw, di, dj, keep):
    """Circular padding: shifting the data images shifts every hidden map; the penalty on data
    is unchanged (element and channel)."""
    rng = np.random.default_rng(seed)
    v, u = rng.normal(size=(c_hid, c_in, 3, 3)), rng.normal(size=(2, c_hid, 3, 3))
    x = rng.normal(size=(3, c_in, *hw))
    shifted = np.roll(x, shift=(di, dj), axis=(2, 3))
    for mode in ("element", "channel"):
        a = conv.dropout_penalty(u, v, keep, hw, padding="circular", mode=mode, x=x)
        b = conv.dropout_penalty(u, v, keep, hw, padding="circular", mode=mode, x=shifted)
        assert np.isclose(a, b, rtol=1e-10)


@SETTINGS
@given(
    seeds,
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from([(3, 3), (4, 5), (6, 6)]),
    st.sampled_from(["zeros", "circular"]),
    st.floats(-3, 3),
    st.floats(-3, 3),
)
def test_conv_matrix_is_linear_in_the_weight(seed, c_out, c_in, hw, padding, a, b):
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(size=(2, c_out, c_in, 3, 3))
    lhs = conv.conv_matrix(a * w1 + b * w2, hw, padding=padding)
    rhs = a * conv.conv_matrix(w1, hw, padding=padding) + b * conv.conv_matrix(
        w2, hw, padding=padding
    )
    np.testing.assert_allclose(lhs, rhs, atol=1e-12 * (1 + np.abs(rhs).max()))


@SETTINGS
@given(seeds, st.floats(0.1, 1.0), st.sampled_from(["bernoulli", "channel", "block"]))
def test_masks_are_inverted_and_take_two_values(seed, keep, kind):
    dist = {"bernoulli": Bernoulli(keep), "channel": Channel(keep), "block": DropBlock(keep, 3)}[
        kind
    ]
    m = dist.sample((2, 8, 8), 64, seed)
    assert m.shape == (64, 2, 8, 8)
    assert set(np.unique(m)) <= {0.0, 1.0 / keep}


@SETTINGS
@given(seeds, st.integers(2, 6), st.floats(0.1, 0.95))
def test_conv_regularizer_scales_quadratically_and_with_lambda(seed, n, keep):
    """(7) is λ times a squared norm: Θ(c·w) = c² Θ(w), Θ ∝ λ."""
    w = np.random.default_rng(seed).normal(size=5)
    n = max(n, 3)
    base = implied.conv_induced_regularizer(w, 0.5, 3, n).value
    assert np.isclose(implied.conv_induced_regularizer(2 * w, 0.5, 3, n).value, 4 * base, rtol=1e-6)
    assert np.isclose(
        implied.conv_induced_regularizer(w, keep, 3, n).value,
        dropout_lambda(keep) * base,
        rtol=1e-6,
    )
