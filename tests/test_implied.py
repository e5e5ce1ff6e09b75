"""The cvxpy implied problems against the closed form (3) and against each other."""

import cvxpy as cp
import numpy as np
import pytest
from scipy import optimize

from regtheory import fc, implied


def rel(A, B):
    return np.linalg.norm(A - B) / max(np.linalg.norm(B), 1e-300)


def random_cov(rng, d):
    A = rng.normal(size=(d, d))
    return A @ A.T / d + 0.1 * np.eye(d)


CASES = [  # (d_out, d_in, width, keep)
    (6, 8, 8, 0.5),
    (5, 5, 10, 0.8),
    (8, 6, 3, 0.5),  # rank cap active
    (10, 12, 4, 0.3),  # rank cap active
    (4, 7, 7, 0.95),
]


@pytest.mark.parametrize("use_cov", [False, True])
@pytest.mark.parametrize("d_out,d_in,width,keep", CASES)
def test_spectral_matches_closed_form_to_1e8(d_out, d_in, width, keep, use_cov):
    rng = np.random.default_rng(d_out * 7 + d_in)
    T = rng.normal(size=(d_out, d_in))
    cov = random_cov(rng, d_in) if use_cov else None
    closed = fc.global_optimum(T, keep, width, cov=cov)
    res = implied.solve_fc(T, keep, width, cov=cov, method="spectral")
    assert res.status in ("optimal", "optimal_inaccurate") and res.gap <= implied.GAP_RTOL
    assert res.solve_time > 0
    assert rel(res.M, closed) < 1e-8
    assert res.objective == pytest.approx(
        implied.fc_objective(closed, T, keep, width, cov=cov), rel=1e-9
    )


@pytest.mark.parametrize("use_cov", [False, True])
@pytest.mark.parametrize("d_out,d_in,width,keep", [c for c in CASES if c[2] >= min(c[:2])])
def test_sdp_matches_closed_form_to_1e6(d_out, d_in, width, keep, use_cov):
    rng = np.random.default_rng(d_out * 7 + d_in)
    T = rng.normal(size=(d_out, d_in))
    cov = random_cov(rng, d_in) if use_cov else None
    closed = fc.global_optimum(T, keep, width, cov=cov)
    res = implied.solve_fc(T, keep, width, cov=cov, method="sdp")
    assert rel(res.M, closed) < 1e-6


def test_sdp_rank_cap_active_with_low_rank_solution():
    """Width below min(d_out, d_in) but above the relaxation's rank: the SDP is exact."""
    rng = np.random.default_rng(5)
    T = (
        rng.normal(size=(6, 6))
        @ np.diag([8, 6, 0.1, 0.1, 0.05, 0.01])
        @ rng.normal(size=(6, 6))
        / 6
    )
    res = implied.solve_fc(T, 0.5, 3, method="sdp")
    assert rel(res.M, fc.global_optimum(T, 0.5, 3)) < 1e-6


def test_sdp_refuses_when_rank_exceeds_width():
    T = np.diag([3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="rank 3 > width 2"):
        implied.solve_fc(T, 0.9, 2, method="sdp")


def test_objective_of_optimum_is_minimal():
    """No nearby map of rank <= width does better than the closed form."""
    rng = np.random.default_rng(0)
    T = rng.normal(size=(4, 5))
    keep, width = 0.6, 5
    M = fc.global_optimum(T, keep, width)
    best = implied.fc_objective(M, T, keep, width)
    for _ in range(200):
        P = M + 1e-3 * rng.normal(size=M.shape)
        assert implied.fc_objective(P, T, keep, width) >= best


def test_fc_objective_equals_expected_dropout_risk_minus_ls():
    """J(M) = E||y − Mx||² + Θ(M) − E||y − TC^{-1}x||² on finite data."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    Y = rng.normal(size=(200, 3))
    C, T = X.T @ X / 200, Y.T @ X / 200
    M = rng.normal(size=(3, 4))

    def risk(A):
        return np.mean(np.sum((Y - X @ A.T) ** 2, axis=1))

    lhs = implied.fc_objective(M, T, 0.5, 4, cov=C)
    rhs = risk(M) + fc.induced_regularizer(M, 0.5, 4, cov=C) - risk(T @ np.linalg.inv(C))
    assert lhs == pytest.approx(rhs, rel=1e-10)


def test_solver_failure_raises_with_status():
    T = np.random.default_rng(0).normal(size=(8, 8))
    with pytest.raises(implied.SolverFailedError, match="status") as info:
        implied.solve_fc(T, 0.5, 8, method="sdp", solver="SCS", solver_options={"max_iters": 2})
    assert info.value.status != "optimal"
    assert "certifies a relative gap" in str(info.value)


def test_bad_arguments():
    T = np.eye(3)
    with pytest.raises(ValueError, match="method"):
        implied.solve_fc(T, 0.5, 3, method="newton")
    with pytest.raises(ValueError, match="solver"):
        implied.solve_fc(T, 0.5, 3, solver="NOPE")
    with pytest.raises(ValueError, match="keep"):
        implied.solve_fc(T, 0.0, 3)
    with pytest.raises(ValueError, match="`T`"):
        implied.solve_fc(np.ones(3), 0.5, 3)
    with pytest.raises(ValueError, match="`cov`"):
        implied.solve_fc(T, 0.5, 3, cov=np.diag([1.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="`M`.*shape"):
        implied.fc_objective(np.eye(2), T, 0.5, 3)
    with pytest.raises(TypeError, match="solver_options"):
        implied.solve_fc(T, 0.5, 3, solver_options=[1])


# ----------------------------------------------------------------------------- block dropout


def block_factored_minimum(T, keep, width, k, starts=6, seed=0):
    """min ||UVᵀ − T||² + λ Σ_g ||U_g V_gᵀ||_F² by L-BFGS from random starts."""
    lam = (1 - keep) / keep
    d_out, d_in = T.shape
    G = width // k
    rng = np.random.default_rng(seed)

    def f(z):
        U, V = z[: d_out * width].reshape(d_out, width), z[d_out * width :].reshape(d_in, width)
        R = U @ V.T - T
        gU, gV = 2 * R @ V, 2 * R.T @ U
        val = np.sum(R * R)
        for g in range(G):
            sl = slice(g * k, (g + 1) * k)
            B = U[:, sl] @ V[:, sl].T
            val += lam * np.sum(B * B)
            gU[:, sl] += 2 * lam * B @ V[:, sl]
            gV[:, sl] += 2 * lam * B.T @ U[:, sl]
        return val, np.concatenate([gU.ravel(), gV.ravel()])

    best = np.inf
    for _ in range(starts):
        res = optimize.minimize(
            f,
            rng.normal(size=(d_out + d_in) * width),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 20000},
        )
        best = min(best, res.fun)
    return best


def test_solve_fc_block_k1_is_solve_fc():
    """Same problem (2) through the k-support cone program: agreement ~1e-6, the accuracy of
    the cone formulation at Clarabel's 1e-9 tolerances (the θ of zero singular values are
    degenerate)."""
    T = np.random.default_rng(2).normal(size=(6, 5))
    a = implied.solve_fc_block(T, 0.4, 6, 1)
    b = implied.solve_fc(T, 0.4, 6)
    assert rel(a.M, b.M) < 1e-5
    assert a.objective == pytest.approx(b.objective, rel=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_solve_fc_block_is_a_lower_bound_and_tight_here(k):
    """Convex relaxation <= factored dropout objective, equal on this instance."""
    rng = np.random.default_rng(k)
    T = rng.normal(size=(5, 5)) * np.array([4, 3, 2, 1, 0.5])
    keep, width = 0.5, 6
    res = implied.solve_fc_block(T, keep, width, k)
    convex = res.objective
    factored = block_factored_minimum(T, keep, width, k)
    assert convex <= factored * (1 + 1e-7)
    assert convex == pytest.approx(factored, rel=1e-5)


def test_solve_fc_block_bad_block_size():
    with pytest.raises(ValueError, match="block_size"):
        implied.solve_fc_block(np.eye(3), 0.5, 4, 3)


@pytest.mark.parametrize(
    "make,status,advice",
    [
        (
            lambda x: cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, x <= 0]),
            "infeasible",
            "constraints",
        ),
        (lambda x: cp.Problem(cp.Minimize(cp.sum(x))), "unbounded", "unbounded below"),
    ],
)
def test_solver_plumbing_raises_with_status_and_advice(make, status, advice):
    """Every implied problem goes through implied._solver.solve: force each failure there."""
    from regtheory.implied._solver import solve

    with pytest.raises(implied.SolverFailedError, match=status) as info:
        solve(make(cp.Variable(3)), None)
    assert info.value.status == status and advice in str(info.value)


@pytest.mark.parametrize("block_size", [1, 2])
def test_objective_is_fit_plus_regularizer(block_size):
    """Every implied result: objective = fit + regularizer; for the FC problems (posed on the
    moments) the fit is ‖(M − TC⁻¹)C^½‖², the squared error above the least-squares map."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(200, 5))
    Y = X @ rng.normal(size=(5, 4)) + 0.3 * rng.normal(size=(200, 4))
    T, C = Y.T @ X / len(X), X.T @ X / len(X)
    if block_size == 1:
        res = implied.solve_fc(T, 0.6, 4, cov=C)
        reg = fc.induced_regularizer(res.M, 0.6, 4, cov=C)
    else:
        res = implied.solve_fc_block(T, 0.6, 4, block_size, cov=C)
        reg = fc.block_induced_regularizer(res.M, 0.6, 4, block_size, cov=C)
    assert res.objective == res.fit + res.regularizer
    assert res.regularizer == pytest.approx(reg, rel=1e-12)

    def risk(M):
        return np.mean(np.sum((Y - X @ M.T) ** 2, axis=1))

    assert res.fit == pytest.approx(risk(res.M) - risk(T @ np.linalg.inv(C)), rel=1e-9)
