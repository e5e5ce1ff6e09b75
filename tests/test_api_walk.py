# ruff: noqa: C408  -- keyword dict() calls read as function calls here
"""Walk the public API with bad arguments: every public function of the numerical modules,
each argument in turn replaced by a bad value of its kind, must raise
``regtheory.InvalidParameterError`` -- the package refused the argument at its boundary --
never an error from deep inside NumPy, SciPy or cvxpy (a bare ValueError or TypeError
there), and never return NaN.

The walk is generic: one valid call per function (``VALID``), then every argument is
spoiled by the rules of ``BAD`` for its type. A public function missing from ``VALID``
fails the completeness test, so new API cannot skip the walk.
"""

import inspect
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest
from _public_api import HAS_TORCH, PUBLIC_MODULES

import regtheory
from regtheory import (
    InvalidParameterError,
    compare,
    completion,
    conv,
    data,
    diagnostics,
    fc,
    figures,
    glm,
    implied,
    layers,
    masks,
    montecarlo,
    network,
    training,
)

rng = np.random.default_rng(0)
U, V, X = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(30, 5))
u, v = rng.normal(size=(1, 2, 3, 3)), rng.normal(size=(2, 1, 3, 3))
XC = rng.normal(size=(6, 1, 5, 5))
YC = rng.normal(size=(6, 1, 5, 5))  # targets of XC under the conv net u ∗ (v ∗ ·)
X1, Y1 = rng.normal(size=(12, 1, 7)), rng.normal(size=(12, 1, 7))
T = rng.normal(size=(3, 5))
TASK = data.conv_task(7, np.array([0.2, 1.0, -0.3]), 12, 12, 0.1, rng=0)

# One valid call per public function: keyword arguments only.
# DropBlock with data and a target: the call that reaches every argument of the conv penalty
BLOCK_PENALTY = dict(
    u=u,
    v=v,
    keep=0.5,
    image_shape=(5, 5),
    mode="block",
    block_size=2,
    x=XC,
    y=YC,
    normalize="ideal",
)

# labels of X for glm that no direction separates (else the logistic optimum is at infinity)
YG = (np.arange(30) % 2).astype(float)
# five observed entries of a 3 × 5 matrix, every row and column seen (U, V factor it)
OBS = completion.observed(
    np.array([0, 1, 2, 0, 1]), np.array([0, 1, 2, 3, 4]), rng.normal(size=5), (3, 5)
)
VALID = {
    completion.observed: dict(
        rows=np.array([0, 1, 2]),
        cols=np.array([0, 1, 0]),
        values=np.array([1.0, 2.0, 3.0]),
        shape=(3, 2),
    ),
    completion.fit_loss: dict(U=U, V=V, obs=OBS),
    completion.equalize: dict(U=U, V=V, obs=OBS),
    # "mc": the call that reaches every argument (rng and n_masks are read only by it)
    completion.dropout_penalty: dict(U=U, V=V, obs=OBS, keep=0.5, method="mc", n_masks=60, rng=0),
    completion.explicit_regularizer: dict(U=U, V=V, obs=OBS, keep=0.5, form="product"),
    completion.induced_regularizer: dict(M=U @ V.T, obs=OBS, keep=0.5, width=4),
    # "proximal": the method that reads tol and max_iter
    completion.solve_induced: dict(
        obs=OBS, keep=0.5, width=4, method="proximal", tol=1e-8, max_iter=10_000
    ),
    completion.solve_weighted_trace_norm: dict(
        obs=OBS, weight=0.5, smoothing=0.2, method="proximal", tol=1e-8, max_iter=10_000
    ),
    completion.solve_observed: dict(obs=OBS, keep=0.5, width=4, starts=2, rng=0, init_scale=0.5),
    glm.dropout_penalty: dict(
        beta=U[0, :3],
        X=X[:, :3],
        keep=0.5,
        family="poisson",
        method="mc",
        n_masks=200,
        rng=0,
    ),
    glm.quadratic_penalty: dict(beta=U[0], X=X[:, :4], keep=0.5, family="logistic"),
    glm.gaussian_penalty: dict(beta=U[0], X=X[:, :4], keep=0.5, family="logistic", n_nodes=20),
    glm.solve_dropout: dict(
        X=X[:20], y=YG[:20], keep=0.5, family="logistic", method="saa", n_masks=5, rng=0
    ),
    glm.dropout_sgd: dict(X=X, y=YG, keep=0.5, steps=3, lr=0.01, rng=0, family="logistic"),
    fc.dropout_penalty: dict(U=U, V=V, keep=0.5, X=X, method="mc", n_masks=60, rng=0),
    fc.dropout_penalty_mc: dict(U=U, V=V, keep=0.5, X=X, n_masks=60, rng=0),
    fc.induced_regularizer: dict(M=U @ V.T, keep=0.5, width=4),
    fc.equalize: dict(U=U, V=V),
    fc.is_equalized: dict(U=U, V=V, rtol=1e-6),
    fc.has_equal_products: dict(U=U, V=V, rtol=1e-6),
    fc.unit_products: dict(U=U, V=V),
    fc.global_optimum: dict(T=T, keep=0.5, width=4),
    fc.structured_penalty: dict(U=U, V=V, mask_cov=np.eye(4)),
    fc.block_dropout_penalty: dict(U=U, V=V, keep=0.5, block_size=2, cov=np.eye(5)),
    fc.spectral_k_support_norm: dict(M=T, k=2),
    fc.block_induced_regularizer: dict(M=T, keep=0.5, width=4, block_size=2),
    masks.dropout_lambda: dict(keep=0.5),
    masks.kept_units: dict(keep=0.5, shape=(2, 3), rng=0),
    conv.conv2d: dict(x=XC, weight=v),
    conv.conv_matrix: dict(weight=v, image_shape=(5, 5)),
    conv.tap_column_counts: dict(kernel_size=3, image_shape=(5, 5)),
    conv.no_gradient_probability: dict(kernel_size=3, image_shape=(5, 5), keep=0.5),
    conv.fc_no_gradient_probability: dict(keep=0.5),
    conv.column_sq_norms: dict(weight=u, image_shape=(5, 5)),
    conv.position_penalty: dict(u=u, v=v, keep=0.5, image_shape=(5, 5)),
    conv.dropout_penalty: BLOCK_PENALTY,
    conv.dropout_penalty_mc: dict(BLOCK_PENALTY, n_masks=200, rng=0, dtype="float32"),
    implied.solve_fc: dict(T=T, keep=0.5, width=4),
    implied.fc_objective: dict(M=T, T=T, keep=0.5, width=4),
    implied.solve_fc_block: dict(T=T, keep=0.5, width=4, block_size=2),
    implied.conv_induced_regularizer: dict(
        w=rng.normal(size=5), keep=0.5, channels=3, image_shape=8
    ),
    implied.lifted_operator: dict(kernel_size=(1, 3), image_shape=(1, 8)),
    implied.solve_conv: dict(X=X1, Y=Y1, keep=0.5, channels=3, kernel_size=3),
    implied.solve_conv_factored: dict(X=X1, Y=Y1, keep=0.5, channels=2, kernel_size=3, starts=1),
    implied.deep_induced_regularizer: dict(
        M=T, keep=0.5, width=4, depth=3, cov=np.eye(5), starts=1, rng=0
    ),
    data.movielens_100k: dict(path=None),
    training.train_fc: dict(X=X, Y=X[:, :3], keep=0.5, width=4, steps=3, lr=0.01, rng=0),
    training.train_completion: dict(
        obs=OBS, keep=0.5, width=4, steps=3, lr=0.01, rng=0, batch_size=2, record_every=1
    ),
    training.train_explicit_fc: dict(X=X, Y=X[:, :3], keep=0.5, width=4, steps=3, lr=0.01, rng=0),
    training.train_conv: dict(
        X=X1, Y=Y1, keep=0.5, channels=2, kernel_size=3, steps=3, lr=0.01, rng=0
    ),
    network.dropout_penalty_mc: dict(
        layers=[
            network.Linear(rng.normal(size=(4, 5))),
            network.Dropout(masks.Bernoulli(0.5)),
            network.Linear(rng.normal(size=(3, 4))),
        ],
        X=X,
        Y=X[:, :3],
        n_masks=60,
        rng=0,
        control_variate=True,
    ),
    data.white_inputs: dict(n=10, d=3, rng=0),
    data.linear_teacher: dict(n=10, singular_values=[2.0, 1.0], d_in=3, d_out=3, noise=0.1, rng=0),
    data.conv_task: dict(
        n=7, teacher=np.array([0.2, 1.0, -0.3]), n_train=12, n_test=12, noise=0.1, rng=0
    ),
    compare.compare: dict(task=TASK, keep=0.5, channels=2, kernel_size=3, train=False),
    compare.circulant_spectrum: dict(M=np.eye(4)),
    data.teacher_kernel: dict(kernel_size=3, rng=0),
    implied.k_support_norm_sq: dict(x=cp.Variable(3), k=2),
    network.dropout_penalty: dict(
        layers=[
            network.Linear(rng.normal(size=(4, 5))),
            network.Dropout(masks.Bernoulli(0.5)),
            network.DropConnect(rng.normal(size=(3, 4)), keep=0.5),
        ],
        X=X,
        Y=X[:, :3],
        rng=0,
    ),
    network.dropout_penalty_terms: dict(
        layers=[network.Dropout(masks.Gaussian(0.5)), network.Linear(rng.normal(size=(3, 5)))],
        X=X,
        Y=X[:, :3],
    ),
    network.forward: dict(layers=[network.Linear(rng.normal(size=(2, 5)))], x=X),
    layers.as_graph: dict(layers=[layers.Linear(rng.normal(size=(2, 5))), layers.ReLU()]),
    montecarlo.estimate: dict(draw=lambda g, n: g.random(n), n_masks=10, rng=0),
    # the committed record of a figure that regenerates in milliseconds
    figures.check: dict(
        directory=str(Path(__file__).resolve().parents[1] / "figures"), names=["conv_matrix_seed"]
    ),
    montecarlo.min_draws: dict(event_probabilities=[0.02, 0.5]),
    montecarlo.default_n_masks: dict(event_probabilities=[0.001, 0.5]),
    # every figure and result: the call that loads every module's references
    regtheory.cite: dict(all=True),
    # DropBlock read by a conv: the Monte Carlo path that reads n_masks and seed
    diagnostics.diagnose: dict(
        layers=[
            network.Conv(v),
            network.Dropout(masks.DropBlock(0.5, block_size=2)),
            network.Conv(u),
        ],
        X=XC,
        n_masks=200,
        rng=0,
    ),
}

# regtheory.pytorch (the `torch` extra): on a bare checkout it is neither walked nor
# required in VALID
if HAS_TORCH:
    import torch

    from regtheory import pytorch

    torch.manual_seed(0)
    # dropout before a ReLU: the Monte Carlo path, which reads every argument
    TORCH_NET = torch.nn.Sequential(
        torch.nn.Linear(5, 4, bias=False),
        torch.nn.Dropout(0.5),
        torch.nn.ReLU(),
        torch.nn.Linear(4, 3, bias=False),
    )
    VALID[pytorch.from_torch] = dict(model=TORCH_NET, input_shape=(5,))
    VALID[pytorch.supported_modules] = dict(dropout=True)
    VALID[pytorch.dropout_penalty] = dict(
        model=TORCH_NET, X=X[:8], Y=X[:8, :3], n_masks=1000, rng=0, by_layer=True
    )
    VALID[pytorch.explicit_regularizer] = dict(
        model=TORCH_NET, X=X[:8], Y=X[:8, :3], loss="mse", hessian="sampled", rng=0
    )
    VALID[pytorch.to_torch] = dict(
        layers=[network.Linear(np.ones((2, 3))), network.Dropout(masks.Bernoulli(0.5))],
        dtype=torch.float32,
    )
    VALID[pytorch.train_classifier] = dict(
        model=TORCH_NET,
        X=X[:8],
        labels=np.arange(8) % 3,
        epochs=1,
        batch_size=4,
        lr=0.01,
        rng=0,
        n_threads=1,
    )

# Arguments whose bad values are not of their type's kind (callables, objects, options,
# lists of names).
SKIP = {"draw", "layers", "task", "solver", "solver_options", "names"}


def bad_values(name, value):
    """Bad replacements for one argument, by the kind of its valid value."""
    if isinstance(value, cp.Expression):
        yield "numpy", np.ones(3)
    elif isinstance(value, np.ndarray) or (isinstance(value, list) and name != "layers"):
        arr = np.asarray(value, dtype=float)
        yield "nan", np.full(arr.shape, np.nan)
        yield "wrong-rank", arr.reshape(-1)[:, None, None, None, None]
        yield "text", "not an array"
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        yield "negative", -3
        yield "text", "3"
    elif isinstance(value, float):
        yield "nan", float("nan")
        yield "negative", -0.5
        yield "text", "0.5"
    elif isinstance(value, str):
        yield "unknown", "no-such-option"
    elif isinstance(value, tuple):
        yield "negative", tuple(-abs(int(t)) for t in value)
        yield "text", "5x5"


def public_functions():
    modules = [
        m for m in PUBLIC_MODULES if m.__name__ not in ("regtheory.figures", "regtheory.sweep")
    ]
    # of regtheory.figures, the functions that validate their arguments so far; of the
    # package itself, cite
    return {
        getattr(m, name)
        for m in modules
        for name in m.__all__
        if inspect.isfunction(getattr(m, name))
    } | {figures.check, regtheory.cite}


def test_every_public_function_is_walked():
    missing = {f"{f.__module__}.{f.__name__}" for f in public_functions() if f not in VALID}
    assert not missing, f"add a valid call to VALID for: {sorted(missing)}"


@pytest.mark.slow
def test_valid_calls_return_finite_results():
    for fn, kwargs in VALID.items():
        out = fn(**kwargs)
        if isinstance(out, (float, np.ndarray)):
            assert np.all(np.isfinite(out)), fn.__name__


CASES = [
    (fn, arg, kind, bad)
    for fn, kwargs in VALID.items()
    for arg, value in kwargs.items()
    if arg not in SKIP
    for kind, bad in bad_values(arg, value)
]


def expected_error(fn) -> tuple[type[Exception], ...]:
    return (InvalidParameterError,)


def test_invalid_parameter_error_is_a_value_and_a_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


@pytest.mark.parametrize(
    "fn,arg,kind,bad", CASES, ids=[f"{c[0].__name__}-{c[1]}-{c[2]}" for c in CASES]
)
def test_bad_argument_raises_invalid_parameter_error(fn, arg, kind, bad):
    kwargs = dict(VALID[fn], **{arg: bad})
    with pytest.raises(expected_error(fn), match=rf"\b{arg}\b"):
        out = fn(**kwargs)
        # a silently accepted bad value must at least not produce NaN
        if isinstance(out, (float, np.ndarray)) and not np.all(np.isfinite(out)):
            raise AssertionError(f"{fn.__name__} returned non-finite output for {arg}={bad!r}")
        raise AssertionError(f"{fn.__name__} accepted {arg}={bad!r} ({kind})")
