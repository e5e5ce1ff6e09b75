"""Tests of `regtheory penalty torch` (regtheory.cli) on models saved by the tests.

The totals the command prints are compared with ``regtheory.pytorch.dropout_penalty``
called directly on the model the test built, and with computations written out here:
λ times the mean over the data of Σᵢ ‖uᵢ‖² hᵢ² for a dropout before the last linear
layer (exact), and a Monte Carlo over the model's own dropout modules in training
mode, run here with torch's generator.
"""

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from regtheory import pytorch
from regtheory.cli import _torchscript, main

N_SE = 4  # Monte Carlo agreement is required within this many standard errors


def run(argv, capsys) -> tuple[int, str, str]:
    status = main(["penalty", "torch", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_json(argv, capsys) -> dict:
    status, out, err = run([*argv, "--json"], capsys)
    assert (status, err) == (0, "")
    return json.loads(out)


def linear_net(dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.4), nn.Linear(6, 2)).to(dtype)


def relu_conv_net(dtype=torch.float32) -> nn.Sequential:
    # a ReLU after the dropout: the penalty is estimated by Monte Carlo
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.Dropout2d(0.3),
        nn.ReLU(),
        nn.Conv2d(3, 2, 3, padding=1),
        nn.Flatten(),
        nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * 5 * 5, 1)),
    ).to(dtype)


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "data.npz"
    np.savez(path, X=rng.normal(size=(12, 4)), Y=rng.normal(size=(12, 2)))
    return path


@pytest.fixture
def maps(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "maps.npz"
    np.savez(path, X=rng.normal(size=(10, 1, 5, 5)))
    return path


def save(model, path, how: str) -> str:
    if how == "script":
        torch.jit.save(torch.jit.script(model), path)
    else:
        torch.save(model, path)
    return str(path)


@pytest.mark.parametrize("how", ["save", "script"])
def test_exact_penalty_of_a_saved_model(how, data, tmp_path, capsys):
    model = linear_net()
    path = save(model, tmp_path / "net.pt", how)
    record = run_json(["--model", path, "--data", str(data)], capsys)
    with np.load(data) as archive:
        X, Y = archive["X"], archive["Y"]
    direct = pytorch.dropout_penalty(model, X, Y=Y)
    report = record["report"]
    assert report["method"] == "exact" and report["stderr"] == 0.0
    assert report["value"] == pytest.approx(direct.value, rel=1e-12)
    # dropout (keep 0.6) before the last layer u: λ · mean_k Σ_i ‖u_i‖² h_ki²
    with torch.no_grad():
        h = model[1](model[0](torch.from_numpy(X))).numpy()
    u = model[3].weight.detach().numpy()
    lam = 0.4 / 0.6
    assert report["value"] == pytest.approx(lam * np.mean(h**2 @ np.sum(u**2, axis=0)), rel=1e-10)
    assert record["settings"]["format"] == ("TorchScript" if how == "script" else "torch.save")
    assert record["settings"]["targets"] == "Y" and "diagnostics" not in record


@pytest.mark.slow
@pytest.mark.parametrize("how", ["save", "script"])
def test_monte_carlo_penalty_of_a_saved_conv_net(how, maps, tmp_path, capsys):
    model = relu_conv_net()
    path = save(model, tmp_path / "net.pt", how)
    argv = ["--model", path, "--data", str(maps), "--n-masks", "2000", "--seed", "5"]
    record = run_json([*argv, "--diagnose"], capsys)
    with np.load(maps) as archive:
        X = archive["X"]
    report = record["report"]
    direct = pytorch.dropout_penalty(model, X, n_masks=2000, seed=5)
    assert report["method"] == "mc" and report["n_masks"] == 2000
    assert report["value"] == pytest.approx(direct.value, rel=1e-12)
    assert [d["own"] for d in report["dropouts"]] == pytest.approx(list(direct.own), rel=1e-12)
    assert record["settings"]["dtype"] == "float32"
    assert len(record["diagnostics"]["convs"]) == 1  # the Dropout2d read by the second conv
    assert len(record["diagnostics"]["blocks"]) == 0
    # independently: the perturbation energy over torch's own masks, drawn here, 2000
    # copies of the data in one batch (every copy gets its own masks)
    x = torch.from_numpy(X).float()
    model.eval()
    with torch.no_grad():
        clean = model(x).double()
        for module in (model[1], model[5][0]):
            module.train()
        torch.manual_seed(6)
        out = model(x.repeat(2000, 1, 1, 1)).double().reshape(2000, len(X), -1)
    draws = torch.mean(torch.sum((out - clean) ** 2, dim=2), dim=1).numpy()
    mean, se = np.mean(draws), np.std(draws, ddof=1) / np.sqrt(len(draws))
    assert abs(report["value"] - mean) < N_SE * np.hypot(se, report["stderr"])
    status, out, err = run([*argv, "--no-by-layer"], capsys)
    assert (status, err) == (0, "")
    assert str(direct).splitlines()[0] in out  # the same seed, the same total


def test_text_output_with_diagnostics(data, tmp_path, capsys):
    path = save(linear_net(), tmp_path / "net.pt", "script")
    status, out, err = run(["--model", path, "--data", str(data), "--diagnose"], capsys)
    assert (status, err) == (0, "")
    assert "(TorchScript, float64)" in out and "dropout penalty" in out
    assert "dropout diagnosis on 12 samples" in out and "Linear-Dropout-Linear" in out


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: torch.save(linear_net().state_dict(), p), "not a torch.nn.Module"),
        (lambda p: p.write_text("not a model"), "cannot read --model"),
        (lambda p: None, "no such file"),
        (
            lambda p: torch.jit.save(
                torch.jit.trace(linear_net().eval(), torch.zeros(1, 4, dtype=torch.float64)), p
            ),
            "traced",
        ),
        (
            lambda p: torch.jit.save(
                torch.jit.script(nn.Sequential(nn.Linear(4, 2), Doubler())), p
            ),
            "no dropout acts in it",
        ),
        (lambda p: torch.save(nn.Sequential(nn.Linear(4, 2)), p), "no dropout module"),
        (lambda p: torch.save(nn.Sequential(nn.Dropout(0.2), nn.Linear(3, 2)), p), "model[1]"),
    ],
)
def test_bad_models_exit_2(make, message, data, tmp_path, capsys):
    path = tmp_path / "model.pt"
    make(path)
    status, out, err = run(["--model", str(path), "--data", str(data)], capsys)
    assert status == 2 and out == ""
    assert err.startswith("regtheory penalty torch: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_data_exit_2(tmp_path, capsys):
    model = save(linear_net(), tmp_path / "net.pt", "save")
    np.save(tmp_path / "single.npy", np.ones((3, 4)))
    np.savez(tmp_path / "nox.npz", Z=np.ones(3))
    (tmp_path / "text.npz").write_text("not an archive")
    for name, message in [
        ("nox.npz", "has no array X (it holds Z)"),
        ("single.npy", "holds a single array"),
        ("text.npz", "cannot read --data"),
        ("missing.npz", "cannot read --data"),
    ]:
        status, out, err = run(["--model", model, "--data", str(tmp_path / name)], capsys)
        assert status == 2 and out == "" and message in err, (name, err)


def test_a_module_that_is_not_its_children_runs_as_saved(data, tmp_path, capsys, monkeypatch):
    # a TorchScript module whose computation differs from the nn.Sequential rebuilt from
    # its children is not converted: its penalty is estimated through its own forward
    model = linear_net()
    path = save(model, tmp_path / "net.pt", "script")
    other = linear_net()
    with torch.no_grad():
        other[3].weight.mul_(2.0)
    monkeypatch.setattr(_torchscript, "_rebuild_module", lambda script, where, nn: other)
    record = run_json(["--model", path, "--data", str(data), "--n-masks", "2000"], capsys)
    report = record["report"]
    assert report["how"] == "own forward" and record["settings"]["rebuilt"] is False
    assert "compute something else" in record["settings"]["why_not_rebuilt"]
    # independently: the saved model's own dropout in training mode, 2000 passes at once
    with np.load(data) as archive:
        X, Y = archive["X"], archive["Y"]
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    with torch.no_grad():
        clean = torch.sum((y - model.eval()(x)) ** 2, dim=1).mean()
        torch.manual_seed(12)
        out = model.train()(x.repeat(2000, 1))
    draws = torch.sum((y.repeat(2000, 1) - out) ** 2, dim=1).reshape(2000, -1).mean(dim=1)
    draws = (draws - clean).numpy()
    mean, se = np.mean(draws), np.std(draws, ddof=1) / np.sqrt(len(draws))
    assert abs(report["value"] - mean) < N_SE * np.hypot(se, report["stderr"])


def test_without_torch_exit_2_with_the_install_hint(data, tmp_path, capsys, monkeypatch):
    path = save(linear_net(), tmp_path / "net.pt", "save")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    monkeypatch.delitem(sys.modules, "regtheory.pytorch")
    status, out, err = run(["--model", path, "--data", str(data)], capsys)
    assert status == 2 and out == ""
    assert 'pip install "regtheory[torch]"' in err


# ----------------------------------------------------------------------------- --loss, --data


def classifier(dtype=torch.float64) -> nn.Sequential:
    # a tanh before the dropout and three logits after it: cross-entropy is not quadratic
    # in the masks, so the penalty is a Monte Carlo estimate
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Dropout(0.4), nn.Linear(6, 3)).to(dtype)


def classes(tmp_path, targets: str):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(12, 4))
    if targets == "indices":
        Y = rng.integers(0, 3, size=12).astype(np.int32)  # int32 on disk: torch wants int64
    else:
        logits = rng.normal(size=(12, 3))
        Y = np.exp(logits) / np.sum(np.exp(logits), axis=1, keepdims=True)
    path = tmp_path / f"{targets}.npz"
    np.savez(path, X=X, Y=Y)
    return path, X, Y


class _Stub:
    """What the command prints of a report, without computing one."""

    layers = None
    how, reason = "traced", ""

    def to_dict(self):
        return {"value": 0.0}

    def __str__(self):
        return "stub report"


@pytest.fixture
def calls(monkeypatch):
    # dropout_penalty replaced by a recorder: what the command passes, whatever the
    # installed regtheory.pytorch computes
    seen = []

    def record(model, X, **kwargs):
        seen.append((model, X, kwargs))
        return _Stub()

    monkeypatch.setattr(pytorch, "dropout_penalty", record)
    return seen


@pytest.mark.parametrize("targets", ["indices", "probabilities"])
def test_the_loss_and_the_targets_reach_dropout_penalty(targets, calls, tmp_path, capsys):
    data, X, Y = classes(tmp_path, targets)
    model = save(classifier(), tmp_path / "net.pt", "save")
    argv = ["--model", model, "--data", str(data), "--loss", "cross_entropy"]
    record = run_json(argv, capsys)
    (_, X_seen, kwargs) = calls[-1]
    assert kwargs["loss"] == "cross_entropy"
    np.testing.assert_array_equal(X_seen, X)
    np.testing.assert_array_equal(kwargs["Y"], Y)
    assert kwargs["Y"].dtype == (np.int64 if targets == "indices" else np.float64)
    assert record["settings"]["loss"] == "cross_entropy"
    assert record["settings"]["targets"] == ("Y (class indices)" if targets == "indices" else "Y")
    status, out, err = run(argv, capsys)
    assert (status, err) == (0, "")
    assert "loss cross_entropy" in out.splitlines()[0] and "stub report" in out


def test_mse_is_the_default_loss(calls, data, tmp_path, capsys):
    model = save(linear_net(), tmp_path / "net.pt", "save")
    record = run_json(["--model", model, "--data", str(data)], capsys)
    assert calls[-1][2]["loss"] == "mse" and record["settings"]["loss"] == "mse"
    status, out, _ = run(["--model", model, "--data", str(data)], capsys)
    assert status == 0 and out.splitlines()[0].endswith("targets Y, loss mse")


def test_unrecognised_arrays_are_refused_by_name(calls, tmp_path, capsys):
    model = save(linear_net(), tmp_path / "net.pt", "save")
    rng = np.random.default_rng(9)
    X = rng.normal(size=(12, 4))
    np.savez(tmp_path / "lower.npz", X=X, y=rng.normal(size=(12, 2)))
    np.savez(tmp_path / "extra.npz", X=X, Y=rng.normal(size=(12, 2)), w=np.ones(3))
    for name, found, unknown in [
        ("lower.npz", "X, y", "y is not recognised"),
        ("extra.npz", "X, Y, w", "w is not recognised"),
    ]:
        status, out, err = run(["--model", model, "--data", str(tmp_path / name)], capsys)
        assert status == 2 and out == "", (name, err)
        assert f"holds arrays {found}" in err and unknown in err, (name, err)
        assert "it must hold X (and optionally Y) and nothing else" in err, (name, err)
    assert calls == []  # refused before any penalty is computed


def test_labels_and_losses_that_do_not_go_together_exit_2(calls, data, tmp_path, capsys):
    model = save(classifier(), tmp_path / "net.pt", "save")
    rng = np.random.default_rng(10)
    np.savez(tmp_path / "x.npz", X=rng.normal(size=(12, 4)))
    np.savez(tmp_path / "labels.npz", X=rng.normal(size=(12, 4)), Y=np.arange(12) % 3)
    for name, loss, message in [
        ("x.npz", "cross_entropy", "--loss cross_entropy needs targets"),
        ("labels.npz", "mse", "give --loss cross_entropy"),
    ]:
        argv = ["--model", model, "--data", str(tmp_path / name), "--loss", loss]
        status, out, err = run(argv, capsys)
        assert status == 2 and out == "" and message in err, (name, err)
    status, _, err = run(["--model", model, "--data", str(data), "--loss", "hinge"], capsys)
    assert status == 2 and "invalid choice: 'hinge'" in err
    assert calls == []


@pytest.mark.parametrize("targets", ["indices", "probabilities"])
def test_cross_entropy_penalty_against_the_model_run_in_training_mode(targets, tmp_path, capsys):
    # needs regtheory.pytorch.dropout_penalty(..., loss="cross_entropy")
    data, X, Y = classes(tmp_path, targets)
    model = classifier()
    path = save(model, tmp_path / "net.pt", "save")
    argv = ["--model", path, "--data", str(data), "--loss", "cross_entropy"]
    record = run_json([*argv, "--n-masks", "4000", "--seed", "5"], capsys)
    report = record["report"]
    assert report["method"] == "mc" and record["settings"]["loss"] == "cross_entropy"
    # independently: torch's own masks, 4000 passes of the model in training mode at once
    # (every copy of the data gets its own masks), the per-sample cross-entropy averaged
    x = torch.from_numpy(X)
    target = torch.from_numpy(Y.astype(np.int64) if targets == "indices" else Y)
    with torch.no_grad():
        clean = nn.functional.cross_entropy(model.eval()(x), target).item()
        torch.manual_seed(11)
        logits = model.train()(x.repeat(4000, 1))
        losses = nn.functional.cross_entropy(
            logits, target.repeat(4000, *(1,) * (target.dim() - 1)), reduction="none"
        )
    draws = losses.reshape(4000, len(X)).mean(dim=1).numpy() - clean
    mean, se = np.mean(draws), np.std(draws, ddof=1) / np.sqrt(len(draws))
    assert se > 0 and abs(report["value"] - mean) < N_SE * np.hypot(se, report["stderr"])
