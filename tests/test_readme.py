"""The README's Python tour runs as written and its comments are true; its two set-up
commands stay the ones CI uses.

The ```python blocks are read from README.md and run statement by statement, in
order, in one namespace (later blocks use earlier names), so an edited block is
what runs. Every comment in them promises something about its statement ("formula
(1), exact", "True", "[[4, 6, 4], ...]"); ``CLAIMS`` maps each comment, verbatim, to
a check against an independent computation: numpy written out here from
docs/THEORY.md, exact enumeration of masks, a dense matrix built with
scipy.signal, the literal matrix typed from THEORY §2, or a cvxpy problem stated
here. A comment without a check, or a check whose comment is gone, fails.
"""

import ast
import copy
import dataclasses
import io
import itertools
import re
import tokenize
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from _theory import THEORY_MATRIX

from regtheory import Penalty
from regtheory.montecarlo import Estimate

README = Path(__file__).resolve().parents[1] / "README.md"
N_SE = 4  # Monte Carlo agreement is required within this many standard errors


@dataclasses.dataclass
class Statement:
    source: str  # the statement as written in the README
    comment: str | None  # its trailing comment, without the "#"
    node: ast.stmt
    rng_before: np.random.Generator | None = None  # a copy of the tour's rng before it ran


def readme_statements() -> list[Statement]:
    """The top-level statements of the README's ```python blocks, in order."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python example"
    statements = []
    for block in blocks:
        comments = {
            tok.start[0]: tok.string.lstrip("#").strip()
            for tok in tokenize.generate_tokens(io.StringIO(block).readline)
            if tok.type == tokenize.COMMENT
        }
        for node in ast.parse(block).body:
            lines = range(node.lineno, node.end_lineno + 1)
            found = [comments[i] for i in lines if i in comments]
            assert len(found) <= 1, f"one comment per statement: {found}"
            source = ast.get_source_segment(block, node)
            statements.append(Statement(source, found[0] if found else None, node))
    return statements


def run(statement: Statement, namespace: dict):
    """Execute one statement; the value of an expression statement, else None."""
    if isinstance(statement.node, ast.Expr):
        code = compile(ast.Expression(statement.node.value), "README.md", "eval")
        return eval(code, namespace)
    exec(compile(ast.Module([statement.node], []), "README.md", "exec"), namespace)  # noqa: S102
    return None


def keyword(statement: Statement, name: str):
    """The literal value of keyword argument ``name`` in the statement's call."""
    for node in ast.walk(statement.node):
        if isinstance(node, ast.keyword) and node.arg == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name}= in {statement.source}")


def argument(statement: Statement, index: int):
    """The literal value of the statement's call's positional argument ``index``."""
    return ast.literal_eval(statement.node.value.args[index])


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- oracles


def penalty_1(U, V, keep, C) -> float:
    """Formula (1) written out: λ Σᵢ ‖uᵢ‖² vᵢᵀ C vᵢ."""
    lam = (1 - keep) / keep
    return float(lam * sum(U[:, i] @ U[:, i] * (V[:, i] @ C @ V[:, i]) for i in range(U.shape[1])))


def penalty_by_enumeration(U, V, keep, X) -> float:
    """E_r mean_x ‖U diag(r/keep) Vᵀx − UVᵀx‖² over all 2^w Bernoulli masks r, exactly."""
    width = U.shape[1]
    total = 0.0
    for r in itertools.product((0, 1), repeat=width):
        r = np.array(r)
        prob = keep ** r.sum() * (1 - keep) ** (width - r.sum())
        diff = X @ (U @ np.diag(r / keep - 1) @ V.T).T
        total += prob * np.mean(np.sum(diff**2, axis=1))
    return total


def induced_2(M, keep, width, C) -> float:
    """Formula (2): (λ/w) ‖M C^½‖_*², with scipy's matrix square root."""
    lam = (1 - keep) / keep
    root = np.real(scipy.linalg.sqrtm(C))
    return float(lam / width * np.linalg.svd(M @ root, compute_uv=False).sum() ** 2)


def optimum_3(T, keep, width) -> np.ndarray:
    """Formula (3): shrink the singular values of T by α = λκ_ρ/(w + λρ)."""
    lam = (1 - keep) / keep
    W1, s, W2t = np.linalg.svd(T)
    kappa = np.cumsum(s)
    j = np.arange(1, len(s) + 1)
    rho = int(np.max(j[s > lam * kappa / (width + lam * j)]))
    assert rho <= width  # else the width caps the rank (THEORY §1); not the tour's case
    alpha = lam * kappa[rho - 1] / (width + lam * rho)
    return W1 @ np.diag(np.maximum(s - alpha, 0.0)) @ W2t


def dense_conv(kernels, image) -> np.ndarray:
    """The matrix of a same-size zero-padded cross-correlation, (out·H·W, in·H·W), built
    column by column with scipy.signal.correlate2d on unit impulses."""
    c_out, c_in = kernels.shape[:2]
    H, W = image
    A = np.zeros((c_out * H * W, c_in * H * W))
    for c in range(c_in):
        for p in range(H * W):
            impulse = np.zeros(H * W)
            impulse[p] = 1.0
            impulse = impulse.reshape(H, W)
            col = [
                scipy.signal.correlate2d(impulse, kernels[o, c], mode="same") for o in range(c_out)
            ]
            A[:, c * H * W + p] = np.concatenate([x.ravel() for x in col])
    return A


def lifted_sum(Z, k) -> list:
    """A(Z) of THEORY (7) for k×k kernels: w[d] = Σ_{a+b=d} Z[a, b] over 2-D tap offsets."""
    taps = list(itertools.product(range(k), repeat=2))
    terms = {}
    for i, a in enumerate(taps):
        for j, b in enumerate(taps):
            d = (a[0] + b[0], a[1] + b[1])
            terms.setdefault(d, []).append(Z[i, j])
    size = 2 * k - 1
    return [[sum(terms[(p, q)]) for q in range(size)] for p in range(size)]


# ----------------------------------------------------------------------------- claims


def check_formula_1(value, ns, st):
    U, V, X, C = ns["U"], ns["V"], ns["X"], ns["C"]
    keep = keyword(st, "keep")
    assert value == pytest.approx(penalty_1(U, V, keep, C), rel=1e-12)
    # "exact": the expectation over every mask, with C the sample's second moment
    assert value == pytest.approx(penalty_by_enumeration(U, V, keep, X), rel=1e-10)


def check_estimate(value, ns, st):
    assert isinstance(value, Penalty) and value.method == "mc" and not value.is_exact
    assert value.variance_reduction == "none"
    assert value.n_masks == keyword(st, "n_masks") and value.stderr > 0
    keep = argument(st, 2)
    exact = penalty_1(ns["U"], ns["V"], keep, ns["C"])
    assert abs(value.value - exact) < N_SE * value.stderr


def check_formula_2(value, ns, st):
    M, C = ns["U"] @ ns["V"].T, ns["C"]
    assert value == pytest.approx(induced_2(M, argument(st, 1), keyword(st, "width"), C), rel=1e-10)


def check_equalized_same_map(value, ns, st):
    U, V, U2, V2, C = ns["U"], ns["V"], ns["U2"], ns["V2"], ns["C"]
    fc = ns["fc"]
    assert rel(U2 @ V2.T, U @ V.T) < 1e-10
    bound = induced_2(U @ V.T, 0.7, U.shape[1], C)
    assert penalty_1(U2, V2, 0.7, C) == pytest.approx(bound, rel=1e-9)
    assert fc.dropout_penalty(U2, V2, 0.7, cov=C) == pytest.approx(
        fc.induced_regularizer(U @ V.T, 0.7, U.shape[1], cov=C), rel=1e-9
    )
    assert penalty_1(U, V, 0.7, C) > bound * (1 + 1e-3)  # the tour's U, V were not optimal


def check_true(value, ns, st):
    assert value is True
    U2, V2, C = ns["U2"], ns["V2"], ns["C"]
    products = np.linalg.norm(U2, axis=0) * np.sqrt(np.einsum("ji,jk,ki->i", V2, C, V2))
    assert np.ptp(products) <= 1e-6 * products.mean()


def check_formula_3(value, ns, st):
    task = ns["task"]
    X = task.X
    np.testing.assert_allclose(X.T @ X / len(X), np.eye(X.shape[1]), atol=1e-12)  # C = I
    expected = optimum_3(task.T, keyword(st, "keep"), keyword(st, "width"))
    assert rel(ns["M"], expected) < 1e-10


def check_cvxpy_same_m(value, ns, st):
    assert rel(ns["res"].M, ns["M"]) <= 1e-8
    assert rel(ns["res"].M, optimum_3(ns["task"].T, 0.5, 12)) <= 1e-8


def check_training(value, ns, st):
    task = ns["task"]
    expected = optimum_3(task.T, keyword(st, "keep"), keyword(st, "width"))
    assert rel(ns["run"].final_map, expected) < 0.01


def check_seed_matrix(value, ns, st):
    # u9 holds the tap numbers 1..9, so the matrix is THEORY §2's, tap for tap
    np.testing.assert_array_equal(value, THEORY_MATRIX)


def check_tap_counts(value, ns, st):
    literal = np.array(ast.literal_eval(st.comment))
    np.testing.assert_array_equal(value, literal)
    # a tap's count is the number of columns it sits in, in THEORY's matrix and in the
    # package's (each tap appears at most once per column)
    in_theory = [np.sum(np.any(THEORY_MATRIX == t, axis=0)) for t in range(1, 10)]
    in_package = [np.sum(ns["conv"].conv_matrix(ns["u9"], (3, 3)) == t) for t in range(1, 10)]
    np.testing.assert_array_equal(literal.ravel(), in_theory)
    np.testing.assert_array_equal(literal.ravel(), in_package)


def check_no_gradient(value, ns, st):
    counts = np.array([np.sum(np.any(THEORY_MATRIX == t, axis=0)) for t in range(1, 10)])
    keep = keyword(st, "keep")
    np.testing.assert_allclose(value, ((1 - keep) ** counts).reshape(3, 3), rtol=1e-15)


def _dense_layers(ns):
    """The tour's two conv layers as dense matrices: V (hidden·n, n), U (n, hidden·n)."""
    return dense_conv(ns["u"], (8, 8)), dense_conv(ns["v"], (8, 8))


def check_formula_5(value, ns, st):
    U, V = _dense_layers(ns)
    lam = (1 - argument(st, 2)) / argument(st, 2)
    # (1) column by column of the dense layers, white input: λ Σ_j ‖U[:, j]‖² ‖V[j, :]‖²
    expected = lam * np.sum(np.sum(U**2, axis=0) * np.sum(V**2, axis=1))
    assert value == pytest.approx(expected, rel=1e-10)


def check_dropblock_mc(value, ns, st):
    assert isinstance(value, Estimate) and value.n_masks == keyword(st, "n_masks")
    # formula (4) on the dense layers, white input, over masks drawn here: for one mask m,
    # E_x ‖U ((m − 1) ∘ Vx)‖² = (m − 1)ᵀ (UᵀU ∘ VVᵀ)(m − 1)
    U, V = _dense_layers(ns)
    gram = (U.T @ U) * (V @ V.T)
    masks = ns["DropBlock"](argument(st, 2), keyword(st, "block_size")).sample(
        (8, 8, 8), 4000, rng=12345
    )
    e = masks.reshape(len(masks), -1) - 1.0
    draws = np.einsum("bi,bi->b", e @ gram, e)
    mean, stderr = draws.mean(), draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(value.value - mean) < N_SE * np.hypot(value.stderr, stderr)


def _factor_Z(res) -> np.ndarray:
    """Z = Σ_c vec(u_c) vec(v_c)ᵀ of the returned factorization (taps row-major)."""
    u = res.u[0].reshape(res.u.shape[1], -1)  # (hidden, taps)
    v = res.v[:, 0].reshape(res.v.shape[0], -1)
    return u.T @ v


def check_formula_7(value, ns, st):
    res = ns["res"]
    # the kernel the README drew inline, drawn again from a copy of the rng as it was
    w = eval(ast.unparse(st.node.value.args[0]), {"rng": st.rng_before, "np": np})
    lam = (1 - argument(st, 1)) / argument(st, 1)
    channels, n = keyword(st, "channels"), int(np.prod(keyword(st, "image_shape")))
    k = (w.shape[0] + 1) // 2
    # an independent statement of (7): (λ n / C) min ‖Z‖_*² subject to A(Z) = w
    Z = cp.Variable((k * k, k * k))
    constraints = [cp.hstack(row) == w[p] for p, row in enumerate(lifted_sum(Z, k))]
    problem = cp.Problem(cp.Minimize(cp.normNuc(Z)), constraints)
    problem.solve(solver="CLARABEL")
    assert problem.status == cp.OPTIMAL
    assert res.value == pytest.approx(lam * n / channels * problem.value**2, rel=1e-6)
    # the returned factorization makes that kernel
    np.testing.assert_allclose(lifted_sum(_factor_Z(res), k), w, atol=1e-6 * np.abs(w).max())


def check_equalized_factorization(value, ns, st):
    res = ns["res"]
    u = res.u[0].reshape(res.u.shape[1], -1)
    v = res.v[:, 0].reshape(res.v.shape[0], -1)
    products = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    assert np.ptp(products) <= 1e-5 * products.mean()  # equalized
    # it attains the bound: the circular elementwise penalty λ n Σ_c ‖u_c‖²‖v_c‖² (λ = 1)
    assert 64 * np.sum(products**2) == pytest.approx(res.value, rel=1e-6)
    assert value == (res.value, (1, 9, 3, 3), (9, 1, 3, 3))


def _deep_penalty_by_dense_moments(ns) -> float:
    """The tour's deep net, second moments carried as dense (C·H·W)² matrices."""
    net, X = ns["net"], ns["Xc"]
    A1, A2 = (dense_conv(net[i].weight, (8, 8)) for i in (0, 3))
    W = net[5].weight
    lam1, lam2 = ((1 - net[i].masks.keep) / net[i].masks.keep for i in (2, 4))
    H = np.maximum(X.reshape(len(X), -1) @ A1.T, 0.0)  # features at the channel mask
    same_channel = np.kron(np.eye(4), np.ones((64, 64)))  # Cov of a channel mask, over λ
    total = 0.0
    for h in H:
        S = A2 @ (np.outer(h, h) * (1 + lam1 * same_channel)) @ A2.T
        S = S * (1 + lam2 * np.eye(len(S)))  # element mask: S + λ Diag(S)
        total += np.trace(W @ S @ W.T) - np.sum((W @ A2 @ h) ** 2)
    return total / len(H)


def check_deep_terms(value, ns, st):
    from regtheory.network import PenaltyTerms

    terms = ns["terms"]  # an assignment: the statement itself has no value
    assert isinstance(terms, PenaltyTerms)
    assert terms.total == pytest.approx(_deep_penalty_by_dense_moments(ns), rel=1e-10)
    parts = terms.mean_shift + terms.own.sum() + terms.interaction
    assert terms.total == pytest.approx(parts, rel=1e-12)
    assert terms.mean_shift == 0.0 and len(terms.own) == 2 and terms.interaction > 0


def check_total_of_terms(value, ns, st):
    assert value is True


def check_deep_mc(value, ns, st):
    assert isinstance(value, Estimate) and value.n_masks == keyword(st, "n_masks")
    assert abs(value.value - _deep_penalty_by_dense_moments(ns)) < N_SE * value.stderr


CLAIMS = {
    "formula (1), exact": check_formula_1,
    "Penalty(value, stderr, n_masks, method='mc')": check_estimate,
    "(λ/w)‖M C^½‖_*², formula (2)": check_formula_2,
    "same map, penalty = (2)": check_equalized_same_map,
    "True": check_true,
    "closed form (3)": check_formula_3,
    "cvxpy, same M to 1e-8": check_cvxpy_same_m,
    "real masks, M to 1 %": check_training,
    "the seed's 9×9 matrix": check_seed_matrix,
    "[[4, 6, 4], [6, 9, 6], [4, 6, 4]]": check_tap_counts,
    "(1 − keep)^count per tap": check_no_gradient,
    "formula (5)": check_formula_5,
    "DropBlock, Monte Carlo": check_dropblock_mc,
    "formula (7), cvxpy": check_formula_7,
    "and an equalized factorization": check_equalized_factorization,
    "exact: total, own, interaction": check_deep_terms,
    "True: the total of the terms": check_total_of_terms,
    "agrees within its errors": check_deep_mc,
}


def test_every_comment_of_the_tour_has_a_check():
    comments = [s.comment for s in readme_statements() if s.comment is not None]
    assert len(comments) == len(set(comments)), "each comment must be unique"
    assert sorted(comments) == sorted(CLAIMS), "README comments and CLAIMS differ"


@pytest.mark.slow
def test_readme_python_tour_runs_and_its_comments_are_true():
    namespace: dict = {}  # the tour is one session: later blocks use earlier names
    for statement in readme_statements():
        statement.rng_before = copy.deepcopy(namespace.get("rng"))
        value = run(statement, namespace)
        if statement.comment is not None:
            # checked right away: a later statement may rebind the names (res is reused)
            CLAIMS[statement.comment](value, namespace, statement)


def test_readme_has_exactly_the_two_setup_commands():
    text = README.read_text()
    commands = {}
    for marker, needle in [("figures-command", "regtheory figures"), ("test-command", "pytest")]:
        match = re.search(rf"<!-- {marker} -->\n```bash\n(.+)\n```", text)
        assert match, f"README lacks the {marker} block"
        assert needle in match.group(1) and "python3 -m venv" in match.group(1)
        commands[marker] = match.group(1)
    # the figures need torch, pinned to a CPU-only build in the same pip call; the tests
    # install the extras their imports need (torchvision for real architectures)
    assert re.search(r'pip install -e "\.\[torch\]" torch==[0-9.]+ ', commands["figures-command"])
    assert 'pip install -e ".[test,torch,vision,dask]"' in commands["test-command"]
