"""regtheory.pytorch on models as people write them, against a brute-force Monte Carlo.

The models (tests/_torch_models.py) are read through their real forward: custom
nn.Module subclasses, residual additions, ``torch.cat``, ``F.dropout``, a dropout module
called twice, torchvision's resnet18 with dropout or stochastic depth. The reference
(tests/_torch_reference.py) runs each model's own forward in float64 with torch's own
masks, in training mode but for the normalisation layers; it imports nothing of
regtheory. The first tests check that reference against closed forms and enumerations
over every mask, so that the comparisons after it rest on something.

Agreement is required within N_SE combined standard errors; the package's ``rng`` and
the reference's seed both change with the seed. One stochastic-depth site alone, a
Bernoulli per sample, is compared with its exact expectation instead (two forwards;
``row_site_penalty``, checked against torch's own masks first).
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
nn = torch.nn

import _torch_models as models  # noqa: E402 (needs torch)
from _torch_reference import (  # noqa: E402
    N_SE,
    brute_penalties,
    brute_penalty,
    row_site_penalty,
    z_score,
)

from regtheory import InvalidParameterError  # noqa: E402

SEEDS = (0, 1, 2)
SMALL = [name for name in models.TRACEABLE if name not in models.RESNETS]
N_PASSES = 2000  # reference passes for the small models
N_PASSES_RESNET = 200  # float64 resnet18: about 0.05 s a pass on one core, 25 to a forward


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small forwards run fastest on one thread; on a shared machine two threads of torch
    wait on each other (tens of times slower). The count is restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pytorch():
    from regtheory import pytorch

    return pytorch


def _case(name, seed):
    if name in models.RESNETS:
        pytest.importorskip("torchvision")
    make = models.TRACEABLE.get(name, models.make_data_dependent)
    return make(seed=seed)


def _target(case, loss):
    return case.labels if loss == "cross_entropy" else case.Y


def _reference(case, *, loss, Y, seed, site=None, n_passes=N_PASSES):
    """The brute force of a small model (the resnets' tests call it themselves)."""
    return brute_penalty(
        case.model, case.X, Y=Y, loss=loss, n_passes=n_passes, seed=1000 + seed, site=site
    )


def _assert_agrees(value, stderr, ref, what):
    z = z_score(value, stderr, ref)
    assert abs(z) < N_SE, (
        f"{what}: package {value:.6g} ± {stderr:.3g}, brute force {ref.value:.6g} ± "
        f"{ref.stderr:.3g} (z = {z:.2f})"
    )


# ------------------------------------------------------ the reference, checked by itself


def _enumerated(forward, keeps, x, loss):
    """E_r L(r) − L(1) over every mask of ``keeps`` (one bit per unit), exactly.

    ``forward(scaled_masks (M, bits), x) -> (M, n, K)``; ``loss(out) -> (M, n)``. Each
    sample has its own mask, but the per-sample losses are averaged, so one enumeration
    of a single sample's mask, applied to every sample, gives the expectation.
    """
    keeps = torch.tensor(keeps, dtype=torch.float64)
    bits = torch.tensor(list(itertools.product((0.0, 1.0), repeat=len(keeps))))
    prob = torch.prod(torch.where(bits > 0, keeps, 1 - keeps), dim=1)
    ones = torch.ones((1, len(keeps)), dtype=torch.float64)
    with torch.no_grad():
        expected = prob @ loss(forward(bits / keeps, x)).mean(dim=1)
        clean = loss(forward(ones, x)).mean()
    return float(expected - clean)


def _losses(Y, labels, soft):
    """Per-sample losses written out here: squares, −log softmax at the label, −Σ p log q."""
    return {
        "mse": (lambda out: torch.sum((Y - out) ** 2, dim=-1), "mse", Y),
        "labels": (
            lambda out: -torch.gather(
                torch.log_softmax(out, -1), -1, labels.expand(*out.shape[:-1], 1)
            )[..., 0],
            "cross_entropy",
            labels[:, 0],
        ),
        "soft": (lambda out: -torch.sum(soft * torch.log_softmax(out, -1), -1),
                 "cross_entropy", soft),
        "l1": (lambda out: torch.sum(torch.abs(Y - out), -1), lambda o, t: (o - t).abs().sum(1), Y),
    }  # fmt: skip


def _double(case):
    """The case's weights, data and targets in float64 (labels as a column)."""
    params = {k: v.double() for k, v in case.model.state_dict().items()}
    x = case.X.double()
    gen = torch.Generator().manual_seed(5)
    soft = torch.softmax(torch.randn(case.Y.shape, generator=gen, dtype=torch.float64), -1)
    return params, x, case.Y.double(), case.labels[:, None], soft


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_is_the_closed_form_of_dropout_before_a_linear_layer(seed):
    """Linear(4, 5) → Dropout(p) → Linear(5, 3): P = λ/n Σ_k Σ_j h_kj² ‖U_:j‖², λ = p/(1−p),
    h = W x + b, whatever Y (E r = 1 makes the cross term vanish)."""
    torch.manual_seed(seed)
    p = 0.3
    model = nn.Sequential(nn.Linear(4, 5), nn.Dropout(p), nn.Linear(5, 3)).double()
    X = torch.randn(7, 4, dtype=torch.float64)
    with torch.no_grad():
        h = model[0](X)
        exact = p / (1 - p) * float(torch.mean(h**2 @ torch.sum(model[2].weight ** 2, dim=0)))
    for Y in (None, torch.randn(7, 3, dtype=torch.float64)):
        ref = brute_penalty(model, X, Y=Y, n_passes=4000, seed=seed)
        assert abs(ref.value - exact) < N_SE * ref.stderr, (ref, exact)
        assert 0 < ref.stderr < 0.2 * exact  # and the test has power


@pytest.mark.slow  # importing torchvision takes seconds
def test_reference_takes_stochastic_depth_per_sample():
    """out = A (x + SD(g(x))) + c with torchvision's StochasticDepth(p, "row"): one
    Bernoulli(q) per sample, so P = (1 − q)/q · mean_k ‖A g(x_k)‖² (Y = None)."""
    ops = pytest.importorskip("torchvision.ops")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.g, self.sd, self.head = (
                nn.Linear(3, 3),
                ops.StochasticDepth(0.25, "row"),
                nn.Linear(3, 2),
            )

        def forward(self, x):
            return self.head(x + self.sd(self.g(x)))

    torch.manual_seed(3)
    model, X = Net().double(), torch.randn(6, 3, dtype=torch.float64)
    with torch.no_grad():
        exact = (
            0.25 / 0.75 * float(torch.mean(torch.sum((model.g(X) @ model.head.weight.T) ** 2, 1)))
        )
    ref = brute_penalty(model, X, n_passes=4000, seed=3)
    assert abs(ref.value - exact) < N_SE * ref.stderr, (ref, exact)
    # an elementwise mask would give a smaller variance of the pass value: not this one
    assert ref.stderr * np.sqrt(ref.n_passes) > 0.5 * exact
    # the site's two outputs per sample, weighted: the same closed form to rounding, and
    # torch's own masks for the site alone in the cross-entropy against labels
    assert row_site_penalty(model, X, module="sd").value == pytest.approx(exact, rel=1e-12)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    alone = models.Site("sd (", ("sd",))
    ref = brute_penalty(model, X, Y=labels, loss="cross_entropy", n_passes=4000, seed=4, site=alone)
    two = row_site_penalty(model, X, module="sd", Y=labels, loss="cross_entropy")
    assert abs(z_score(two.value, 0.0, ref)) < N_SE, (ref, two)
    assert 0 < ref.stderr < 0.2 * two.value  # and the comparison has power


def test_reference_is_the_enumeration_of_a_dropout_called_twice():
    """fc2(drop(relu(fc1(drop(x))))): 5 + 6 mask bits, every mask enumerated; the total
    and each call alone (the reference's hook), for four losses."""
    case = models.make_dropout_twice(seed=4)
    w, x, Y, labels, soft = _double(case)
    keep = 1 - case.model.drop.p

    def forward(masks, x):
        h = F.relu((masks[:, None, :5] * x) @ w["fc1.weight"].T + w["fc1.bias"])
        return (masks[:, None, 5:] * h) @ w["fc2.weight"].T + w["fc2.bias"]

    calls = {None: [keep] * 11, 1: [keep] * 5 + [1.0] * 6, 2: [1.0] * 5 + [keep] * 6}
    for name, (mine, loss, target) in _losses(Y, labels, soft).items():
        for call, keeps in calls.items():
            site = None if call is None else case.sites[call - 1]
            exact = _enumerated(forward, keeps, x, mine)
            ref = brute_penalty(case.model, case.X, Y=target, loss=loss, seed=call or 0, site=site)
            assert abs(ref.value - exact) < N_SE * ref.stderr, (name, call, ref, exact)


def test_reference_switches_a_functional_dropout_by_its_owner():
    """F.dropout(x, 0.2, self.training) then an nn.Dropout(0.4): 7 + 6 bits enumerated;
    the functional site alone is the root's own flag on, its children off."""
    case = models.make_functional_dropout(seed=5)
    w, x, Y, labels, soft = _double(case)

    def forward(masks, x):
        h = masks[:, None, :7] * F.relu(x @ w["fc1.weight"].T + w["fc1.bias"])
        h = masks[:, None, 7:] * torch.tanh(h @ w["fc2.weight"].T + w["fc2.bias"])
        return h @ w["fc3.weight"].T + w["fc3.bias"]

    sites = {None: [0.8] * 7 + [0.6] * 6, 0: [0.8] * 7 + [1.0] * 6, 1: [1.0] * 7 + [0.6] * 6}
    for name, (mine, loss, target) in _losses(Y, labels, soft).items():
        for k, keeps in sites.items():
            site = None if k is None else case.sites[k]
            exact = _enumerated(forward, keeps, x, mine)
            ref = brute_penalty(case.model, case.X, Y=target, loss=loss, seed=7, site=site)
            assert abs(ref.value - exact) < N_SE * ref.stderr, (name, k, ref, exact)


def test_reference_keeps_batch_norm_on_its_running_statistics():
    """With its dropout at p = 0 the residual net's penalty is 0 exactly: the batch norm
    runs on its running statistics (on batch statistics the output would change)."""
    case = models.make_residual(seed=0)
    case.model.drop.p = 0.0
    ref = brute_penalty(case.model, case.X, n_passes=200)
    assert abs(ref.value) < 1e-12 and ref.stderr < 1e-12
    model = case.model.double().train()
    with torch.no_grad():
        assert not torch.allclose(model(case.X.double()), model.eval()(case.X.double()))


def test_reference_stacked_passes_are_single_passes():
    """Passes run as one forward on the repeated data agree with one forward per pass,
    on the model whose forward branches on its input."""
    case = models.make_data_dependent(seed=0)
    one = brute_penalty(case.model, case.X, n_passes=1000, stack=1, seed=1)
    many = brute_penalty(case.model, case.X, n_passes=4000, stack=100, seed=2)
    assert abs(z_score(one.value, one.stderr, many)) < N_SE
    assert one.value != many.value  # different draws


def test_reference_reads_several_losses_off_the_same_passes():
    """brute_penalties gives, loss by loss, what brute_penalty gives for that loss alone
    with the same seed: the same masks, so the same numbers to the last bit."""
    case = models.make_residual(seed=0)
    losses = [("mse", case.Y), ("cross_entropy", case.labels), ("mse", None)]
    refs = brute_penalties(case.model, case.X, losses, n_passes=200, seed=4)
    for (loss, Y), ref in zip(losses, refs, strict=True):
        assert ref == brute_penalty(case.model, case.X, Y=Y, loss=loss, n_passes=200, seed=4)
    site = case.sites[0]
    (alone,) = brute_penalties(case.model, case.X, losses[:1], n_passes=200, seed=4, site=site)
    assert alone == brute_penalty(case.model, case.X, Y=case.Y, n_passes=200, seed=4, site=site)
    assert len({ref.value for ref in refs}) == 3  # three losses, three penalties


@pytest.mark.parametrize("name", SMALL + ["data_dependent"])
def test_builders_are_reproducible_and_run(name):
    one, two, other = _case(name, 0), _case(name, 0), _case(name, 1)
    with torch.no_grad():
        out = one.model.eval()(one.X)
        assert torch.equal(out, two.model.eval()(two.X))
        assert not torch.allclose(out, other.model.eval()(other.X))
    assert out.shape == one.Y.shape and out.dim() == 2
    assert one.labels.shape == (len(one.X),) and int(one.labels.max()) < out.shape[1]
    assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", models.RESNETS)
def test_resnet_builders_are_reproducible_and_run(name):
    one, two = _case(name, 0), _case(name, 0)
    with torch.no_grad():
        out = one.model.eval()(one.X)
        assert torch.equal(out, two.model.eval()(two.X))
        assert out.shape == (len(one.X), 10)
        drops = one.model.train()(one.X)  # the dropout sites act in training mode
    assert not torch.allclose(out, drops)
    norms = [m for m in one.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(not torch.allclose(m.running_mean, 0 * m.running_mean) for m in norms)


# ------------------------------------------------------------------ the package's penalty


@pytest.mark.parametrize("name", SMALL)
def test_penalty_of_each_model_agrees_with_the_brute_force(name):
    """One seed, the squared loss on regression targets: the quick tier's check. The
    sites are named by their place in the forward, in the order it meets them."""
    case = _case(name, 0)
    report = _pytorch().dropout_penalty(case.model, case.X, Y=case.Y, rng=0, by_layer=False)
    assert report.how == "traced" and report.loss == "mse"
    ref = _reference(case, loss="mse", Y=case.Y, seed=0)
    _assert_agrees(report.value, report.stderr, ref, name)
    names = report.dropouts
    assert len(names) == len(case.sites)
    for label, site in zip(names, case.sites):
        assert label.startswith(site.prefix), (label, site.prefix)
    if name == "dropout_twice":
        assert names[0].endswith(" call 1") and names[1].endswith(" call 2")
    if name == "functional_dropout":
        assert "F.dropout" in names[0] and "p=0.2" in names[0]


@pytest.mark.slow
# the quick test above takes squared error at seed 0: here the other seeds, and both losses
@pytest.mark.parametrize(
    "loss,seed", [("mse", 1), ("mse", 2), ("cross_entropy", 0), ("cross_entropy", 1)]
)
@pytest.mark.parametrize("name", SMALL)
def test_penalty_agrees_with_the_brute_force_over_seeds_and_losses(name, loss, seed):
    case = _case(name, seed)
    Y = _target(case, loss)
    # half the draws of the quick check on each side: many cases, each still a z-test
    report = _pytorch().dropout_penalty(
        case.model, case.X, Y=Y, loss=loss, rng=seed, by_layer=False, n_masks=1000
    )
    assert report.how == "traced" and report.loss == loss
    ref = _reference(case, loss=loss, Y=Y, seed=seed, n_passes=1000)
    _assert_agrees(report.value, report.stderr, ref, name)


@pytest.mark.parametrize("name", ["gap_cnn", "residual", "functional_dropout"])
def test_penalty_with_the_clean_output_as_target(name):
    """Y = None: the clean output is the target, the penalty the perturbation energy."""
    case = _case(name, 1)
    report = _pytorch().dropout_penalty(case.model, case.X, rng=1, by_layer=False)
    assert report.how == "traced" and report.value > 0
    _assert_agrees(report.value, report.stderr, _reference(case, loss="mse", Y=None, seed=1), name)


def test_cross_entropy_takes_class_probabilities():
    case = _case("plain_mlp", 2)
    gen = torch.Generator().manual_seed(0)
    soft = torch.softmax(torch.randn(case.Y.shape, generator=gen), dim=1)
    report = _pytorch().dropout_penalty(
        case.model, case.X, Y=soft.numpy(), loss="cross_entropy", rng=2, by_layer=False
    )
    assert report.loss == "cross_entropy"
    ref = _reference(case, loss="cross_entropy", Y=soft, seed=2)
    _assert_agrees(report.value, report.stderr, ref, "probabilities")


def test_a_loss_callable_gives_per_sample_losses():
    """A callable (output, target) -> (n,): here the absolute error summed per sample."""

    def l1(out, target):
        return torch.sum(torch.abs(out - target), dim=1)

    case = _case("two_branch", 0)
    report = _pytorch().dropout_penalty(case.model, case.X, Y=case.Y, loss=l1, rng=0)
    _assert_agrees(report.value, report.stderr, _reference(case, loss=l1, Y=case.Y, seed=0), "l1")


QUICK_ALONE = ["functional_dropout", "dropout_twice"]  # an owner's flag, a call of two


def _check_alone(name):
    """own[k]: site k on, every other site off; the reference switches modules' own flags
    (F.dropout follows its owner's flag) and, for a module called twice, one call."""
    case = _case(name, 0)
    report = _pytorch().dropout_penalty(case.model, case.X, Y=case.Y, rng=0, by_layer=True)
    assert len(report.own) == len(case.sites) == len(report.own_method)
    for k, site in enumerate(case.sites):
        ref = _reference(case, loss="mse", Y=case.Y, seed=10 + k, site=site)
        _assert_agrees(report.own[k], report.own_stderr[k], ref, f"{name}, {report.dropouts[k]}")


@pytest.mark.parametrize("name", QUICK_ALONE)
def test_each_site_alone_agrees_with_the_brute_force(name):
    _check_alone(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SMALL if n not in QUICK_ALONE] + ["data_dependent"])
def test_each_site_alone_of_every_model_agrees_with_the_brute_force(name):
    _check_alone(name)


@pytest.mark.parametrize("name", ["dropout_twice", "shared_dropout_sequential"])
def test_a_dropout_called_twice_is_two_sites_each_with_its_own_penalty(name):
    """Two sites, and neither site alone pays the total (both calls act in the total)."""
    case = _case(name, 0)
    report = _pytorch().dropout_penalty(case.model, case.X, Y=case.Y, rng=0, by_layer=True)
    assert len(report.dropouts) == 2 and len(set(report.dropouts)) == 2
    for own, se in zip(report.own, report.own_stderr):
        assert abs(report.value - own) > N_SE * np.hypot(se, report.stderr), (own, report.value)


def test_the_brute_force_tells_the_calls_of_a_shared_dropout_apart():
    """What the test above relies on: on these models each call alone pays clearly less
    than both together."""
    for name in ("dropout_twice", "shared_dropout_sequential"):
        case = _case(name, 0)
        total = _reference(case, loss="mse", Y=case.Y, seed=0)
        for k, site in enumerate(case.sites):
            own = _reference(case, loss="mse", Y=case.Y, seed=1 + k, site=site)
            assert abs(z_score(own.value, own.stderr, total)) > 3 * N_SE, (name, k, own, total)


def test_an_untraceable_model_runs_its_own_forward():
    """``if x.sum() > 0`` in the forward: fx cannot trace it, the model's own forward runs."""
    case = _case("data_dependent", 0)
    for loss in ("mse", "cross_entropy"):
        Y = _target(case, loss)
        report = _pytorch().dropout_penalty(case.model, case.X, Y=Y, loss=loss, rng=0)
        assert report.how == "own forward" and report.loss == loss
        ref = _reference(case, loss=loss, Y=Y, seed=0)
        _assert_agrees(report.value, report.stderr, ref, f"data_dependent, {loss}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_an_untraceable_model_over_seeds(seed):
    case = _case("data_dependent", seed)
    report = _pytorch().dropout_penalty(case.model, case.X, rng=seed, by_layer=False)
    assert report.how == "own forward"
    ref = _reference(case, loss="mse", Y=None, seed=seed)
    _assert_agrees(report.value, report.stderr, ref, "data_dependent")


@pytest.mark.slow
@pytest.mark.parametrize("name", models.RESNETS)
def test_resnet18_penalty_agrees_with_the_brute_force(name):
    """Both losses, each against its brute force; the two brute forces are read off the
    same passes (brute_penalties): a float64 resnet18 forward is the cost, not the loss.
    The squared loss takes the exact path on resnet18_dropout (only the fc after its
    dropout) and Monte Carlo on stochastic depth; the cross-entropy Monte Carlo on both."""
    seed = 0
    case = _case(name, seed)
    losses = [(loss, _target(case, loss)) for loss in ("mse", "cross_entropy")]
    refs = brute_penalties(
        case.model, case.X, losses, n_passes=N_PASSES_RESNET, seed=1000 + seed, stack=25
    )
    for (loss, Y), ref in zip(losses, refs):
        report = _pytorch().dropout_penalty(
            case.model, case.X, Y=Y, loss=loss, rng=seed, by_layer=False
        )
        assert report.how == "traced" and report.loss == loss
        assert len(report.dropouts) == len(case.sites)
        assert all(n.startswith(s.prefix) for n, s in zip(report.dropouts, case.sites))
        _assert_agrees(report.value, report.stderr, ref, f"{name}, {loss}")


@pytest.mark.slow
def test_resnet18_stochastic_depth_sites_alone():
    """The first and the last block's stochastic depth, each alone, against the exact
    expectation over its mask: one Bernoulli per sample, so two forwards
    (row_site_penalty; checked against torch's own masks on a small model above)."""
    case = _case("resnet18_stochastic_depth", 0)
    report = _pytorch().dropout_penalty(
        case.model, case.X, Y=case.Y, rng=0, by_layer=True, n_masks=600
    )
    for k in (0, len(case.sites) - 1):
        exact = row_site_penalty(case.model, case.X, module=case.sites[k].train[0], Y=case.Y)
        _assert_agrees(report.own[k], report.own_stderr[k], exact, report.dropouts[k])


@pytest.mark.parametrize("name", ["residual", "functional_dropout", "data_dependent"])
def test_the_model_and_torch_random_state_are_left_as_they_were(name):
    """Modes, weights, batch-norm running statistics, dtype and torch's generator."""
    case = _case(name, 0)
    case.model.train()
    case.model.drop.eval()  # a mix of modes, to be restored as it was
    modes = [m.training for m in case.model.modules()]
    state = {k: v.clone() for k, v in case.model.state_dict().items()}
    torch.manual_seed(123)
    generator = torch.get_rng_state()
    _pytorch().dropout_penalty(case.model, case.X, Y=case.Y, rng=0)
    assert torch.equal(torch.get_rng_state(), generator)
    assert [m.training for m in case.model.modules()] == modes
    after = case.model.state_dict()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in state.items())


# ------------------------------------------------------------------------ refused input


@pytest.mark.parametrize("as_array", [np.asarray, torch.as_tensor])
def test_integer_labels_with_the_squared_loss_point_to_cross_entropy(as_array):
    case = _case("plain_mlp", 0)
    labels = as_array(case.labels.numpy())
    with pytest.raises(InvalidParameterError, match="loss=.cross_entropy."):
        _pytorch().dropout_penalty(case.model, case.X, Y=labels)


def test_cross_entropy_needs_targets():
    case = _case("plain_mlp", 0)
    with pytest.raises(InvalidParameterError, match="`Y`"):
        _pytorch().dropout_penalty(case.model, case.X, loss="cross_entropy")


def test_a_loss_callable_must_give_one_loss_per_sample():
    case = _case("plain_mlp", 0)

    def mean_loss(out, target):
        return torch.mean((out - target) ** 2)

    with pytest.raises(InvalidParameterError, match="loss"):
        _pytorch().dropout_penalty(case.model, case.X, Y=case.Y, loss=mean_loss)
