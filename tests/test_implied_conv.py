"""The conv implied problems (THEORY (7)) against non-convex search, the DFT, Monte Carlo,
dense conv matrices and numpy least squares."""

import numpy as np
import pytest
from scipy import optimize

from regtheory import conv, implied
from regtheory.data import white_inputs
from regtheory.masks import dropout_lambda

N_SE = 4


def fold_1d(w, n):
    """Circular end-to-end kernel of length n, entry d = displacement mod n."""
    K = (len(w) + 1) // 2
    out = np.zeros(n)
    np.add.at(out, (np.arange(len(w)) - (K - 1)) % n, w)
    return out


def factored_minimum(w, keep, channels, image_shape, starts, seed=0):
    """min λn Σ_c ||u_c||²||v_c||² s.t. Σ_c u_c ⋆ v_c = w, by SLSQP over (u, v) from random starts.

    The constraint is evaluated with numpy's full convolution, independently of the
    package's lifted operator.
    """
    w = np.atleast_2d(w) if w.ndim == 1 else w
    one_d = w.shape[0] == 1
    kh, kw = (1 if one_d else (w.shape[0] + 1) // 2), (w.shape[1] + 1) // 2
    K, C = kh * kw, channels
    n = int(np.prod(image_shape))
    lam = dropout_lambda(keep)
    rng = np.random.default_rng(seed)

    def split(z):
        return z[: K * C].reshape(C, kh, kw), z[K * C :].reshape(C, kh, kw)

    def full_conv2(a, b):
        out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
        for i in range(b.shape[0]):
            for j in range(b.shape[1]):
                out[i : i + a.shape[0], j : j + a.shape[1]] += a * b[i, j]
        return out

    def objective(z):
        u, v = split(z)
        nu, nv = (u**2).sum((1, 2)), (v**2).sum((1, 2))
        grad = np.concatenate(
            [(2 * u * nv[:, None, None]).ravel(), (2 * v * nu[:, None, None]).ravel()]
        )
        return lam * n * nu @ nv, lam * n * grad

    def constraint(z):
        u, v = split(z)
        return (sum(full_conv2(u[c], v[c]) for c in range(C)) - w).ravel()

    def jacobian(z):
        # bilinear: d(u_c ⋆ v_c)/du_c[a] is v_c placed at offset a (and symmetrically)
        u, v = split(z)
        Ju, Jv = np.zeros((w.size, C, kh, kw)), np.zeros((w.size, C, kh, kw))
        for c in range(C):
            for a in range(kh):
                for b in range(kw):
                    block = np.zeros((2 * kh - 1, 2 * kw - 1))
                    block[a : a + kh, b : b + kw] = v[c]
                    Ju[:, c, a, b] = block.ravel()
                    block = np.zeros((2 * kh - 1, 2 * kw - 1))
                    block[a : a + kh, b : b + kw] = u[c]
                    Jv[:, c, a, b] = block.ravel()
        return np.concatenate([Ju.reshape(w.size, -1), Jv.reshape(w.size, -1)], axis=1)

    best = np.inf
    for _ in range(starts):
        res = optimize.minimize(
            objective,
            rng.normal(size=2 * K * C),
            jac=True,
            method="SLSQP",
            constraints=[{"type": "eq", "fun": constraint, "jac": jacobian}],
            options={"maxiter": 3000, "ftol": 1e-12},
        )
        if np.abs(constraint(res.x)).max() < 1e-7:
            best = min(best, res.fun)
    return best


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape,image,channels,starts",
    [((5,), 8, 3, 5), ((7,), 9, 4, 5), ((5, 5), (6, 6), 9, 3)],
)
def test_value_equals_nonconvex_minimum_of_factored_penalty(shape, image, channels, starts):
    rng = np.random.default_rng(sum(shape))
    w = rng.normal(size=shape)
    res = implied.conv_induced_regularizer(w, 0.5, channels, image)
    found = factored_minimum(
        w, 0.5, channels, image if isinstance(image, tuple) else (image,), starts
    )
    assert found >= res.value * (1 - 1e-7)  # (7) is a lower bound ...
    assert found == pytest.approx(res.value, rel=1e-6)  # ... and it is attained


@pytest.mark.parametrize("n,keep", [(5, 0.5), (7, 0.8)])
def test_full_size_1d_is_l1_of_dft(n, keep):
    w = np.random.default_rng(n).normal(size=2 * n - 1)
    res = implied.conv_induced_regularizer(w, keep, channels=n, image_shape=n)
    expected = dropout_lambda(keep) / (n * n) * np.abs(np.fft.fft(fold_1d(w, n))).sum() ** 2
    assert res.value == pytest.approx(expected, rel=1e-7)


def test_full_size_2d_is_l1_of_dft():
    n, C, keep = 3, 9, 0.5
    w = np.random.default_rng(0).normal(size=(5, 5))
    folded = np.zeros((n, n))
    idx = (np.arange(5) - 2) % n
    np.add.at(folded, (idx[:, None], idx[None, :]), w)
    res = implied.conv_induced_regularizer(w, keep, C, (n, n))
    expected = dropout_lambda(keep) / (n * n * C) * np.abs(np.fft.fft2(folded)).sum() ** 2
    assert res.value == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("shape,image,channels", [((5,), (8,), 3), ((5, 5), (6, 7), 9)])
def test_attained_factorization(shape, image, channels):
    """The returned (u, v): right end-to-end map, penalty = value (closed form, MC), equalized."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=shape)
    res = implied.conv_induced_regularizer(w, 0.6, channels, image)
    # end-to-end operator from dense matrices equals the convolution with w
    composed = conv.conv_matrix(res.u, image, padding="circular") @ conv.conv_matrix(
        res.v, image, padding="circular"
    )
    direct = conv.conv_matrix(
        w.reshape((1, 1) + w.shape) if w.ndim == 2 else w.reshape(1, 1, -1),
        image,
        padding="circular",
    )
    np.testing.assert_allclose(composed, direct, atol=1e-7)
    closed = conv.dropout_penalty(res.u, res.v, 0.6, image, padding="circular")
    assert closed == pytest.approx(res.value, rel=1e-7)
    est = conv.dropout_penalty_mc(
        res.u, res.v, 0.6, image, padding="circular", n_masks=20_000, seed=4
    )
    assert abs(est.zscore(res.value)) < N_SE, (res.value, est)
    prods = np.sqrt(
        (res.u**2).sum(axis=tuple(i for i in range(res.u.ndim) if i != 1))
        * (res.v**2).sum(axis=tuple(range(1, res.v.ndim)))
    )
    np.testing.assert_allclose(prods, prods.mean(), rtol=1e-6)


def teacher_task(rng, N=150, H=6, k_teacher=5, noise=0.1):
    X = rng.normal(size=(N, 1, H, H))
    teacher = 0.3 * rng.normal(size=(1, 1, k_teacher, k_teacher))
    Y = conv.conv2d(X, teacher, padding="circular") + noise * rng.normal(size=X.shape)
    return X, Y


def data_fit(X, Y, w):
    return np.mean(np.sum((Y - conv.conv2d(X, w, padding="circular")) ** 2, axis=(1, 2, 3)))


def test_solve_conv_element_objective_and_regularizer_independently():
    rng = np.random.default_rng(5)
    X, Y = teacher_task(rng)
    sol = implied.solve_conv(X, Y, keep=0.5, channels=9, kernel_size=3)
    assert sol.w.shape == (1, 1, 5, 5)
    reg = implied.conv_induced_regularizer(sol.w[0, 0], 0.5, 9, (6, 6)).value
    assert sol.regularizer == pytest.approx(reg, rel=1e-6)
    assert sol.objective == pytest.approx(data_fit(X, Y, sol.w) + reg, rel=1e-6)
    # the fit is the mean squared error on the data, the objective its sum with the regularizer
    assert sol.fit == pytest.approx(data_fit(X, Y, sol.w), rel=1e-9)
    assert sol.objective == sol.fit + sol.regularizer
    # optimality: random perturbations of w do not improve the objective
    for _ in range(5):
        w2 = sol.w[0, 0] + 1e-2 * rng.normal(size=(5, 5))
        other = (
            data_fit(X, Y, w2[None, None])
            + implied.conv_induced_regularizer(w2, 0.5, 9, (6, 6)).value
        )
        assert other >= sol.objective - 1e-7


def test_solve_conv_channel_is_ridge():
    rng = np.random.default_rng(6)
    X, Y = teacher_task(rng)
    C, keep, n = 4, 0.7, 36
    sol = implied.solve_conv(X, Y, keep=keep, channels=C, kernel_size=3, mode="channel")
    # ridge by numpy: features = input convolved with each unit kernel (via conv2d)
    feats = []
    for t in range(25):
        e = np.zeros((1, 1, 5, 5))
        e.flat[t] = 1.0
        feats.append(conv.conv2d(X, e, padding="circular").reshape(len(X), -1))
    F = np.stack(feats, axis=2).reshape(-1, 25)
    mu = dropout_lambda(keep) * n / C
    w_ridge = np.linalg.solve(F.T @ F / len(X) + mu * np.eye(25), F.T @ Y.reshape(-1) / len(X))
    np.testing.assert_allclose(sol.w.ravel(), w_ridge, atol=1e-7)


def test_solve_conv_keep_one_is_least_squares_1d():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 1, 9))
    teacher = rng.normal(size=(1, 1, 5))
    Y = conv.conv2d(X, teacher, padding="circular")
    sol = implied.solve_conv(X, Y, keep=1.0, channels=3, kernel_size=3)
    np.testing.assert_allclose(sol.w, teacher, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="odd length"):
        implied.conv_induced_regularizer(np.ones(4), 0.5, 3, 8)
    with pytest.raises(ValueError, match="fit the image"):
        implied.conv_induced_regularizer(np.ones(9), 0.5, 3, 3)
    with pytest.raises(ValueError, match="image_shape"):
        implied.conv_induced_regularizer(np.ones((3, 3)), 0.5, 3, 8)
    X = np.ones((4, 1, 6, 6))
    with pytest.raises(ValueError, match="kernel_size"):
        implied.solve_conv(X, X, 0.5, 3, kernel_size=4)
    with pytest.raises(ValueError, match="mode"):
        implied.solve_conv(X, X, 0.5, 3, kernel_size=3, mode="block")
    with pytest.raises(ValueError, match="`Y`"):
        implied.solve_conv(X, np.ones((3, 1, 6, 6)), 0.5, 3, kernel_size=3)


# ------------------------------------------------------------------------ exact factored problem


def white_task(rng, n=10, N=40, k_teacher=5, padding="circular"):
    X = white_inputs(N, n, rng=rng).reshape(N, 1, n)
    Y = conv.conv2d(X, rng.normal(size=(1, 1, k_teacher)), padding=padding) + 0.1 * rng.normal(
        size=X.shape
    )
    return X, Y


@pytest.mark.slow
def test_factored_circular_element_reaches_the_convex_optimum():
    """Non-convex L-BFGS over (u, v) meets the convex lifted solve (C >= K, white data)."""
    X, Y = white_task(np.random.default_rng(0))
    exact = implied.solve_conv_factored(X, Y, 0.5, 3, 3, padding="circular", starts=3, rng=1)
    convex = implied.solve_conv(X, Y, 0.5, 3, 3)
    assert exact.objective == pytest.approx(convex.objective, rel=1e-6)


@pytest.mark.slow
def test_factored_channel_is_above_its_ridge_relaxation():
    X, Y = white_task(np.random.default_rng(1))
    exact = implied.solve_conv_factored(
        X, Y, 0.5, 3, 3, padding="circular", mode="channel", starts=3
    )
    ridge = implied.solve_conv(X, Y, 0.5, 3, 3, mode="channel")
    assert exact.objective >= ridge.objective * (1 - 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize("mode", ["element", "channel"])
def test_factored_objective_parts_match_independent_formulas(padding, mode):
    """Its penalty equals conv.dropout_penalty on the data; its fit equals conv2d's."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(8, 2, 5, 5))
    Y = rng.normal(size=(8, 1, 5, 5))
    sol = implied.solve_conv_factored(X, Y, 0.6, 2, 3, padding=padding, mode=mode, starts=1)
    pen = conv.dropout_penalty(sol.u, sol.v, 0.6, (5, 5), padding=padding, mode=mode, x=X)
    assert sol.penalty == pytest.approx(pen, rel=1e-9)
    pred = conv.conv2d(conv.conv2d(X, sol.v, padding=padding), sol.u, padding=padding)
    fit = np.mean(np.sum((Y - pred) ** 2, axis=(1, 2, 3)))
    assert sol.objective == pytest.approx(fit + pen, rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("kernel_size", [7, 9])
def test_solve_conv_folded_kernel_matches_factored_operator(kernel_size):
    """2K − 1 > n: the folded, centred kernel gives the same operator as the factored optimum."""
    rng = np.random.default_rng(kernel_size)
    n = 9
    X = white_inputs(60, n, rng=rng).reshape(60, 1, n)
    Y = conv.conv2d(X, rng.normal(size=(1, 1, 5)), padding="circular") + 0.3 * rng.normal(
        size=X.shape
    )
    convex = implied.solve_conv(X, Y, 0.5, kernel_size, kernel_size)
    exact = implied.solve_conv_factored(
        X, Y, 0.5, kernel_size, kernel_size, padding="circular", starts=2
    )
    assert convex.w.shape == (1, 1, n)
    assert exact.objective == pytest.approx(convex.objective, rel=1e-6)
    M_exact = conv.conv_matrix(exact.u, (n,), padding="circular") @ conv.conv_matrix(
        exact.v, (n,), padding="circular"
    )
    np.testing.assert_allclose(
        conv.conv_matrix(convex.w, (n,), padding="circular"), M_exact, atol=1e-4
    )


def test_solve_conv_refuses_even_folded_kernels():
    X = np.random.default_rng(0).normal(size=(20, 1, 8))
    with pytest.raises(ValueError, match="even image side"):
        implied.solve_conv(X, X, 0.5, 3, kernel_size=5)


def one_channel_minimum(w, lam, n):
    """min λ n ‖u‖²‖v‖² over u ⋆ v = w (1-D, K = 3, no folding), by enumerating the ways
    to split the 4 roots of w's polynomial into two real quadratics (an independent oracle)."""
    roots = np.roots(w)
    best = np.inf
    for pair in [(0, 1), (0, 2), (0, 3)]:
        rest = [i for i in range(4) if i not in pair]
        a, b = np.poly(roots[list(pair)]), np.poly(roots[rest])
        if np.abs(a.imag).max() > 1e-9 or np.abs(b.imag).max() > 1e-9:
            continue  # a conjugate pair split: complex factors
        a, b = a.real, b.real * w[0]
        best = min(best, lam * n * np.sum(a * a) * np.sum(b * b))
    return best


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("n", [3, 5, 7])
def test_full_size_kernels_need_one_channel(n, channels):
    """Issue 10: (λ/(nC))‖ŵ‖₁² is attained with any C ≥ 1 (|ŵ_k| = |û_k||v̂_k|); the
    returned factorization rebuilds w and pays exactly that (checked with NumPy)."""
    rng = np.random.default_rng(10 * n + channels)
    u, v = rng.normal(size=(2, n))
    w = np.convolve(u, v)
    folded = np.zeros(n)
    np.add.at(folded, (np.arange(2 * n - 1) - (n - 1)) % n, w)
    keep = 0.5  # λ = 1
    exact = 1.0 / (n * channels) * np.abs(np.fft.fft(folded)).sum() ** 2
    res = implied.conv_induced_regularizer(w, keep, channels, n)
    assert res.value == pytest.approx(exact, rel=1e-7)
    assert res.u.shape == (1, channels, n) and res.v.shape == (channels, 1, n)
    rebuilt = np.zeros(n)
    for c in range(channels):
        np.add.at(
            rebuilt, (np.arange(2 * n - 1) - (n - 1)) % n, np.convolve(res.u[0, c], res.v[c, 0])
        )
    np.testing.assert_allclose(rebuilt, folded, atol=1e-7 * np.abs(folded).max())
    penalty = n * np.sum(np.sum(res.u**2, axis=(0, 2)) * np.sum(res.v**2, axis=(1, 2)))
    assert penalty == pytest.approx(exact, rel=1e-7)


def test_issue_reproducer_one_channel_value():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, 5))
    assert implied.conv_induced_regularizer(np.convolve(u, v), 0.5, 1, 5).value == pytest.approx(
        11.4958, abs=5e-5
    )


@pytest.mark.slow
def test_fewer_channels_than_taps_attained_or_refused_truthfully():
    """K = 3, one channel, signals of 9: when a rank-1 minimiser is found, its value is the
    true one-channel minimum (root-splitting oracle); when it is refused, that minimum is
    indeed above the convex value (7)."""
    rng = np.random.default_rng(3)
    attained = refused = 0
    for _ in range(30):
        w = rng.normal(size=5)
        oracle = one_channel_minimum(w, 1.0, 9)
        convex = implied.conv_induced_regularizer(w, 0.5, 3, 9).value * 3  # (λn)‖Z‖_*², C = 1
        try:
            res = implied.conv_induced_regularizer(w, 0.5, 1, 9)
        except ValueError as exc:
            assert "channels" in str(exc)
            assert oracle > convex * (1 + 1e-6)
            refused += 1
        else:
            assert res.value == pytest.approx(oracle, rel=1e-6)
            assert res.value == pytest.approx(convex, rel=1e-6)
            attained += 1
    assert attained > 0 and refused > 0


@pytest.mark.parametrize("K", [3, 5, 7])
def test_every_1d_kernel_splits_for_odd_k(K):
    """The channel ridge is exact in 1-D, one channel, odd K: every end-to-end kernel of
    2K − 1 taps is u ⋆ v for real K-tap u, v (group the roots: conjugate pairs together)."""
    rng = np.random.default_rng(K)
    for _ in range(200):
        w = rng.normal(size=2 * K - 1)
        roots = np.roots(w)
        pairs = [r for r in roots if r.imag > 1e-12]
        reals = [r.real for r in roots if abs(r.imag) <= 1e-12]
        take = min(len(pairs), (K - 1) // 2)
        first = [*pairs[:take], *np.conj(pairs[:take]), *reals[: K - 1 - 2 * take]]
        rest = [*pairs[take:], *np.conj(pairs[take:]), *reals[K - 1 - 2 * take :]]
        u, v = np.real(np.poly(first)), w[0] * np.real(np.poly(rest))
        assert u.size == v.size == K
        np.testing.assert_allclose(np.convolve(u, v), w, atol=1e-8 * np.abs(w).max())


def test_zero_padding_penalty_is_not_a_function_of_the_lifted_kernel():
    """Rotating the channels of a factorization keeps Z = Σ_c u_c v_cᵀ (so the map) and, for
    orthonormal factors of equal weight, the circular penalty λ n Σ‖u_c‖²‖v_c‖²; the zero-padded
    penalty (5), computed here from the dense conv matrices, still changes."""
    n, K, lam = 6, 3, 1.0
    P = np.linalg.qr(np.random.default_rng(0).normal(size=(K, 2)))[0]
    Q = np.linalg.qr(np.random.default_rng(1).normal(size=(K, 2)))[0]

    def penalties(angle):
        R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        u, v = (P @ R).T, (Q @ R).T  # channels c: u_c = (P R)[:, c]
        values = {}
        for padding in ("zeros", "circular"):
            U = conv.conv_matrix(u[None, :, :], (n,), padding=padding)  # (n, 2n)
            V = conv.conv_matrix(v[:, None, :], (n,), padding=padding)  # (2n, n)
            values[padding] = lam * np.sum(np.sum(U**2, axis=0) * np.sum(V**2, axis=1))
        Z = u.T @ v
        return values, Z

    reference, Z0 = penalties(0.0)
    zeros = []
    for angle in np.linspace(0.1, 1.5, 8):
        values, Z = penalties(angle)
        np.testing.assert_allclose(Z, Z0, atol=1e-12)
        assert values["circular"] == pytest.approx(reference["circular"], rel=1e-12)
        zeros.append(values["zeros"])
    assert np.ptp(zeros) > 1e-3 * np.mean(zeros)


def test_factored_solve_old_spellings_still_work_and_warn():
    X, Y = white_task(np.random.default_rng(5))
    new = implied.solve_conv_factored(X, Y, 0.5, 2, 3, padding="circular", starts=1, rng=2)
    with pytest.warns(DeprecationWarning, match="rng="):
        old = implied.solve_conv_factored(X, Y, 0.5, 2, 3, padding="circular", starts=1, seed=2)
    assert old.objective == new.objective
    with pytest.warns(DeprecationWarning, match="gradient_norm"):
        assert old.grad_norm == new.gradient_norm
