"""`regtheory penalty torch` on models it cannot rebuild or read as a chain of modules.

A TorchScript module that is not an ``nn.Sequential`` of torch.nn modules is run as
saved: its penalty is a Monte Carlo estimate through its own forward. A ``torch.save``'d
module whose forward is not its children in sequence is traced. Every value the command
prints is compared with the brute force of ``tests/_torch_reference.py``: the model the
test built (not the file the command read), run in training mode on a float64 copy with
torch's own masks, nothing of regtheory involved.
"""

import json

import numpy as np
import pytest
import torch
from _torch_reference import N_SE, brute_penalty, z_score
from torch import nn

from regtheory.cli import main


class Residual(nn.Module):
    """h = tanh(W x); out = V (h + dropout(h)): a skip connection around the dropout."""

    def __init__(self, p: float = 0.3):
        super().__init__()
        self.inner = nn.Linear(4, 5)
        self.drop = nn.Dropout(p)
        self.outer = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.tanh(self.inner(x))
        return self.outer(h + self.drop(h))


class DepthResidual(nn.Module):
    """A residual block whose branch is dropped per sample (torchvision's StochasticDepth)."""

    def __init__(self, p: float = 0.3):
        super().__init__()
        from torchvision.ops import StochasticDepth

        self.inner = nn.Linear(4, 5)
        self.branch = nn.Linear(5, 5)
        self.depth = StochasticDepth(p, "row")
        self.outer = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.tanh(self.inner(x))
        return self.outer(h + self.depth(torch.relu(self.branch(h))))


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


class TwiceTheChain(nn.Sequential):
    """Its children in sequence, doubled: read as a chain, its penalty is a quarter."""

    def forward(self, x):
        return 2 * super().forward(x)


def built(cls, *args, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls(*args).double()


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(7)
    np.savez(path, X=rng.normal(size=(16, 4)), Y=rng.normal(size=(16, 2)))
    return path


def arrays(path):
    with np.load(path) as archive:
        return archive["X"], archive["Y"]


def run(argv, capsys) -> tuple[int, str, str]:
    status = main(["penalty", "torch", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_json(argv, capsys) -> dict:
    status, out, err = run([*argv, "--json"], capsys)
    assert (status, err) == (0, ""), err
    return json.loads(out)


def scripted(model: nn.Module, path) -> str:
    torch.jit.save(torch.jit.script(model), path)
    return str(path)


def assert_agrees(report: dict, reference) -> None:
    z = z_score(report["value"], report["stderr"], reference)
    assert abs(z) < N_SE, (report["value"], report["stderr"], reference)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_scripted_residual_model_runs_through_its_own_forward(seed, data, tmp_path, capsys):
    model = built(Residual, seed=seed)
    path = scripted(model, tmp_path / "residual.pt")
    argv = ["--model", path, "--data", str(data), "--n-masks", "2000", "--seed", str(seed)]
    record = run_json(argv, capsys)
    report, settings = record["report"], record["settings"]
    assert report["how"] == "own forward" and report["method"] == "mc"
    assert "TorchScript" in report["reason"]
    assert settings["format"] == "TorchScript" and settings["rebuilt"] is False
    assert "not an nn.Sequential" in settings["why_not_rebuilt"]
    X, Y = arrays(data)
    assert report["stderr"] > 0
    assert_agrees(report, brute_penalty(model, X, Y=Y, n_passes=2000, seed=10 + seed))


def test_a_scripted_sequential_with_code_of_its_own_runs_as_saved(data, tmp_path, capsys):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Dropout(0.4), nn.Linear(5, 2), Doubler())
    path = scripted(model.double(), tmp_path / "doubled.pt")
    record = run_json(["--model", path, "--data", str(data), "--n-masks", "2000"], capsys)
    assert record["report"]["how"] == "own forward"
    assert "model[4] is TorchScript code" in record["settings"]["why_not_rebuilt"]
    X, Y = arrays(data)
    assert_agrees(record["report"], brute_penalty(model, X, Y=Y, n_passes=2000, seed=3))


@pytest.mark.slow  # importing torchvision takes seconds
def test_a_scripted_stochastic_depth_draws_one_mask_per_sample(data, tmp_path, capsys):
    pytest.importorskip("torchvision")
    model = built(DepthResidual, seed=4)
    path = scripted(model, tmp_path / "depth.pt")
    record = run_json(["--model", path, "--data", str(data), "--n-masks", "2000"], capsys)
    assert record["report"]["how"] == "own forward"
    X, Y = arrays(data)
    assert_agrees(record["report"], brute_penalty(model, X, Y=Y, n_passes=2000, seed=5))


def test_a_saved_module_that_doubles_its_chain_is_read_through_its_forward(data, tmp_path, capsys):
    # read as its children in sequence, the penalty would be a quarter of this
    torch.manual_seed(6)
    model = TwiceTheChain(nn.Linear(4, 5), nn.Tanh(), nn.Dropout(0.4), nn.Linear(5, 2)).double()
    torch.save(model, tmp_path / "twice.pt")
    argv = ["--model", str(tmp_path / "twice.pt"), "--data", str(data)]
    record = run_json(argv, capsys)
    report = record["report"]
    assert report["how"] == "traced" and report["method"] == "exact"
    assert record["settings"]["rebuilt"] is None
    X, Y = arrays(data)
    assert_agrees(report, brute_penalty(model, X, Y=Y, n_passes=4000, seed=7))
    # and densely: out = 2 (V d(h) + c), dropout keep 0.6 on h = tanh(W x); the masks
    # leave the mean output as it is, so Y drops out: 2² λ mean_k Σ_i ‖v_i‖² h_ki²
    with torch.no_grad():
        h = model[1](model[0](torch.from_numpy(X))).numpy()
    V = model[3].weight.detach().numpy()
    dense = 4 * (0.4 / 0.6) * np.mean(h**2 @ np.sum(V**2, axis=0))
    assert report["value"] == pytest.approx(dense, rel=1e-10)


def test_text_output_says_how_and_why(data, tmp_path, capsys):
    path = scripted(built(Residual), tmp_path / "residual.pt")
    status, out, err = run(["--model", path, "--data", str(data)], capsys)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[1] == "run as saved, not rebuilt into torch.nn modules: it is a TorchScript " + (
        "Residual, not an nn.Sequential"
    )
    assert "through the model's own forward" in lines[2]
    assert lines[-1].startswith("computed through the model's own forward: it is a TorchScript")


def test_diagnostics_of_a_model_run_as_saved_exit_2(data, tmp_path, capsys):
    path = scripted(built(Residual), tmp_path / "residual.pt")
    status, out, err = run(["--model", path, "--data", str(data), "--diagnose"], capsys)
    assert status == 2 and out == ""
    assert "--diagnose reads the traced model" in err and "not an nn.Sequential" in err


def _traced(mode: bool):
    model = built(Residual).train(mode)
    return torch.jit.trace(model, torch.zeros(3, 4, dtype=torch.float64), check_trace=False)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: _traced(False), "a model traced in evaluation mode has none"),
        (lambda: _traced(True), "draws random numbers in evaluation mode"),
        (lambda: torch.jit.script(nn.Linear(4, 2).double()), "no dropout acts in it"),
    ],
)
def test_torchscript_that_is_not_its_dropout_model_exit_2(make, message, data, tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.jit.save(make(), path)
    status, out, err = run(["--model", str(path), "--data", str(data)], capsys)
    assert status == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


class NormResidual(nn.Module):
    """A residual block with a batch norm: its running statistics must be used, not updated."""

    def __init__(self, p: float = 0.3):
        super().__init__()
        self.inner = nn.Linear(4, 5)
        self.norm = nn.BatchNorm1d(5)
        self.drop = nn.Dropout(p)
        self.outer = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.tanh(self.norm(self.inner(x)))
        return self.outer(h + self.drop(torch.relu(h)))


def test_a_scripted_model_with_a_batch_norm_uses_its_running_statistics(tmp_path, capsys):
    torch.manual_seed(8)
    model = NormResidual().double()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2)
    before = model.norm.running_mean.clone()
    X = np.random.default_rng(8).normal(size=(16, 4))
    torch.jit.save(torch.jit.script(model), tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", X=X)
    code = main(["penalty", "torch", "--model", str(tmp_path / "m.pt"),
                 "--data", str(tmp_path / "d.npz"), "--json", "--no-by-layer"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["how"] == "own forward"
    ref = brute_penalty(model, X, n_passes=4000, seed=9)
    assert abs(z_score(report["value"], report["stderr"], ref)) < N_SE
    assert torch.equal(model.norm.running_mean, before)
