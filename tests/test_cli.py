"""Tests of the `regtheory` command line (regtheory.cli).

The penalties the CLI prints are checked against the library called directly on
the same weights (saved to an .npz by the test) and against dense formulas
written out here: λ Σᵢ ‖uᵢ‖² ‖vᵢ‖² for (1), λ Σ_g ‖U_g V_gᵀ‖_F² for groups of
units, and formula (1) applied to the columns of the dense conv matrices for (5).
"""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

import regtheory
from regtheory import conv, fc, implied
from regtheory.cli import main
from regtheory.figures import REGISTRY

N_SE = 4  # Monte Carlo agreement is required within this many standard errors
TOP_KEYS = {"layer", "keep", "closed_form", "monte_carlo", "z", "settings"}
MC_KEYS = {"mean", "stderr", "n_samples", "ci95"}


def run_json(argv, capsys) -> dict:
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def check_schema(record: dict, layer: str, keep: float, n_masks: int) -> None:
    assert set(record) == TOP_KEYS
    assert set(record["monte_carlo"]) == MC_KEYS
    assert record["layer"] == layer and record["keep"] == keep
    mc = record["monte_carlo"]
    assert mc["n_samples"] == n_masks and mc["stderr"] > 0
    lo, hi = mc["ci95"]
    # Estimate.ci corrects for skewed draws: the normal width 2·1.96·stderr up to terms
    # in skewness²/n_masks, around the mean
    assert lo < mc["mean"] < hi
    assert hi - lo == pytest.approx(2 * 1.959964 * mc["stderr"], rel=0.02)


def check_agreement(record: dict, expected: float) -> None:
    """The closed form is `expected`, and the Monte Carlo interval agrees with it."""
    assert record["closed_form"] == pytest.approx(expected, rel=1e-12)
    mc = record["monte_carlo"]
    assert record["z"] == pytest.approx((mc["mean"] - expected) / mc["stderr"])
    lo, hi = mc["ci95"]
    assert lo <= expected <= hi or abs(record["z"]) < N_SE


# ----------------------------------------------------------------------------- penalty fc


@pytest.fixture
def fc_weights(tmp_path):
    rng = np.random.default_rng(7)
    U, V = rng.normal(size=(3, 6)), rng.normal(size=(4, 6))
    path = tmp_path / "fc.npz"
    np.savez(path, U=U, V=V)
    return path, U, V


def test_penalty_fc_json_matches_formula_1(fc_weights, capsys):
    path, U, V = fc_weights
    keep = 0.7
    record = run_json(["penalty", "fc", "--weights", str(path), "--keep", str(keep)], capsys)
    check_schema(record, "fc", keep, n_masks=100_000)
    direct = (1 - keep) / keep * np.sum(np.sum(U**2, axis=0) * np.sum(V**2, axis=0))
    assert fc.dropout_penalty(U, V, keep) == pytest.approx(direct, rel=1e-12)
    check_agreement(record, direct)
    settings = record["settings"]
    assert (settings["d_in"], settings["d_out"], settings["width"]) == (4, 3, 6)
    assert settings["weights"] == str(path) and settings["block_size"] == 1


def test_penalty_fc_blocks_match_group_penalty(fc_weights, capsys):
    path, U, V = fc_weights
    keep, k = 0.6, 3
    argv = ["penalty", "fc", "--weights", str(path), "--keep", str(keep), "--block-size", str(k)]
    record = run_json([*argv, "--n-masks", "40000"], capsys)
    check_schema(record, "fc", keep, n_masks=40_000)
    groups = [slice(g, g + k) for g in range(0, U.shape[1], k)]
    direct = (1 - keep) / keep * sum(np.sum((U[:, g] @ V[:, g].T) ** 2) for g in groups)
    assert fc.block_dropout_penalty(U, V, keep, k) == pytest.approx(direct, rel=1e-12)
    check_agreement(record, direct)


def test_penalty_fc_random_layer_text_output_and_same_seed_same_numbers(capsys):
    argv = ["penalty", "fc", "--d-in", "3", "--d-out", "2", "--width", "4", "--seed", "5"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "closed form" in first and "formula (1)" in first and "95 % CI" in first
    assert "d_in=3, d_out=2, width=4" in first
    assert main(argv) == 0
    assert capsys.readouterr().out == first


def test_readme_penalty_example_is_what_the_command_prints(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"```text\n\$ regtheory (penalty .+?)\n(.*?)```", readme, flags=re.DOTALL)
    assert match, "README lacks the `regtheory penalty` example"
    assert main(match.group(1).split()) == 0
    assert capsys.readouterr().out == match.group(2)


# ----------------------------------------------------------------------------- penalty conv


@pytest.fixture
def conv_weights(tmp_path):
    rng = np.random.default_rng(3)
    v, u = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(2, 3, 3, 3))
    path = tmp_path / "conv.npz"
    np.savez(path, u=u, v=v)
    return path, u, v


def dense_element_penalty(u, v, keep, image, padding):
    """Formula (1) column by column of the dense layer matrices: λ Σ_j ‖U[:, j]‖² ‖V[j, :]‖²."""
    U, V = conv.conv_matrix(u, image, padding=padding), conv.conv_matrix(v, image, padding=padding)
    return (1 - keep) / keep * np.sum(np.sum(U**2, axis=0) * np.sum(V**2, axis=1))


@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize("mode", ["element", "channel"])
def test_penalty_conv_json_matches_closed_form(conv_weights, capsys, mode, padding):
    path, u, v = conv_weights
    keep, image = 0.6, (5, 6)
    argv = ["penalty", "conv", "--weights", str(path), "--keep", str(keep), "--image", "5", "6"]
    argv += ["--mode", mode, "--padding", padding, "--n-masks", "4000"]
    record = run_json(argv, capsys)
    check_schema(record, "conv", keep, n_masks=4000)
    expected = conv.dropout_penalty(u, v, keep, image, padding=padding, mode=mode)
    if mode == "element":
        assert expected == pytest.approx(dense_element_penalty(u, v, keep, image, padding))
    check_agreement(record, expected)
    settings = record["settings"]
    assert settings["v_shape"] == [3, 2, 3, 3] and settings["u_shape"] == [2, 3, 3, 3]
    assert settings["image"] == [5, 6] and settings["mode"] == mode


def test_penalty_conv_block_closed_form_agrees_with_its_monte_carlo(capsys):
    """DropBlock's exact penalty beside Monte Carlo over real masks: |z| < 4 at a fixed seed."""
    argv = ["penalty", "conv", "--mode", "block", "--block-size", "3", "--n-masks", "4000"]
    record = run_json(argv, capsys)
    check_schema(record, "conv", 0.5, n_masks=4000)
    assert record["closed_form"] > 0 and abs(record["z"]) < 4
    assert main(argv) == 0
    assert "DropBlock, exact mask moments" in capsys.readouterr().out


def test_penalty_conv_random_kernels_follow_the_shape_flags(capsys):
    argv = ["penalty", "conv", "--in-channels", "2", "--hidden-channels", "3"]
    argv += ["--out-channels", "1", "--kernel-size", "3", "--image", "7", "--n-masks", "500"]
    settings = run_json(argv, capsys)["settings"]
    assert settings["v_shape"] == [3, 2, 3] and settings["u_shape"] == [1, 3, 3]


# ----------------------------------------------------------------------------- user errors


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


BAD_ARGUMENTS = {
    "keep above 1": lambda t: ["penalty", "fc", "--keep", "1.5"],
    "keep 0": lambda t: ["penalty", "fc", "--keep", "0"],
    "keep not a number": lambda t: ["penalty", "conv", "--keep", "half"],
    "no such file": lambda t: ["penalty", "fc", "--weights", str(t / "missing.npz")],
    "directory": lambda t: ["penalty", "fc", "--weights", str(t)],
    "not an npz": lambda t: ["penalty", "fc", "--weights", _text(t)],
    "single .npy": lambda t: ["penalty", "fc", "--weights", _npy(t)],
    "missing V": lambda t: ["penalty", "fc", "--weights", _npz(t, "u.npz", U=np.ones((2, 3)))],
    "fc widths differ": lambda t: [
        "penalty",
        "fc",
        "--weights",
        _npz(t, "uv.npz", U=np.ones((2, 3)), V=np.ones((4, 2))),
    ],
    "weights and shapes": lambda t: [
        "penalty",
        "fc",
        "--width",
        "3",
        "--weights",
        _npz(t, "uv.npz", U=np.ones((2, 3)), V=np.ones((4, 3))),
    ],
    "block does not divide width": lambda t: ["penalty", "fc", "--width", "5", "--block-size", "2"],
    "too few samples": lambda t: ["penalty", "fc", "--n-samples", "3"],
    "one mask": lambda t: ["penalty", "fc", "--n-masks", "1"],
    "negative width": lambda t: ["penalty", "fc", "--width", "-2"],
    "negative seed": lambda t: ["penalty", "fc", "--seed", "-1"],
    "unknown mode": lambda t: ["penalty", "conv", "--mode", "spatial"],
    "unknown padding": lambda t: ["penalty", "conv", "--padding", "reflect"],
    "block without size": lambda t: ["penalty", "conv", "--mode", "block"],
    "block size in element mode": lambda t: ["penalty", "conv", "--block-size", "2"],
    "even kernel": lambda t: ["penalty", "conv", "--kernel-size", "4"],
    "kernel larger than image": lambda t: [
        "penalty",
        "conv",
        "--image",
        "4",
        "4",
        "--kernel-size",
        "5",
    ],
    "three image sizes": lambda t: ["penalty", "conv", "--image", "8", "8", "8"],
    "conv channels differ": lambda t: [
        "penalty",
        "conv",
        "--weights",
        _npz(t, "k.npz", u=np.ones((1, 2, 3, 3)), v=np.ones((3, 1, 3, 3))),
    ],
    "fc weights to conv": lambda t: [
        "penalty",
        "conv",
        "--weights",
        _npz(t, "uv.npz", U=np.ones((2, 3)), V=np.ones((4, 3))),
    ],
    "no layer": lambda t: ["penalty"],
    "unknown layer": lambda t: ["penalty", "rnn"],
    "no command": lambda t: [],
    "unknown command": lambda t: ["train"],
    "unknown option": lambda t: ["penalty", "fc", "--dropout", "0.5"],
    "compare unknown solver": lambda t: ["compare", "--solver", "NOPE", "--no-train"],
    "compare even kernel": lambda t: ["compare", "--kernel-size", "4", "--no-train"],
    "compare block size does not divide C·n": lambda t: [
        "compare",
        "--n",
        "8",
        "--block-size",
        "5",
        "--no-train",
    ],
    "compare negative noise": lambda t: ["compare", "--noise", "-1", "--no-train"],
    "figures unknown solver": lambda t: ["figures", "--solver", "NOPE", "--out", str(t)],
    "figures out is a file": lambda t: [
        "figures",
        "--only",
        "no_gradient_probability",
        "--quick",
        "--out",
        _text(t),
    ],
    "figures no jobs": lambda t: ["figures", "--jobs", "0", "--out", str(t)],
    "figures jobs and scheduler": lambda t: [
        "figures",
        "--jobs",
        "2",
        "--scheduler",
        "tcp://127.0.0.1:8786",
        "--out",
        str(t),
    ],
    "figures malformed scheduler": lambda t: [
        "figures",
        "--only",
        "penalty_vs_keep",
        "--quick",
        "--scheduler",
        "nonsense://here",
        "--out",
        str(t),
    ],
}


def _text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an archive\n")
    return str(path)


def _npy(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.ones(3))
    return str(path)


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_with_one_line(case, tmp_path, capsys):
    assert main(BAD_ARGUMENTS[case](tmp_path)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("regtheory"), captured.err
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.slow
def test_installed_command_reports_user_errors_without_traceback(tmp_path):
    script = Path(sys.executable).parent / "regtheory"
    for argv in (["penalty", "fc", "--keep", "2"], ["penalty", "conv", "--mode", "x"]):
        done = subprocess.run([str(script), *argv], capture_output=True, text=True, check=False)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- figures


def test_list_names_every_figure(capsys):
    assert main(["figures", "--list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert name in out


def test_unknown_figure_exits_2_with_valid_names(capsys, tmp_path):
    assert main(["figures", "--only", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "nope" in err and all(name in err for name in REGISTRY)
    assert not any(tmp_path.iterdir())


def test_a_misspelt_figure_gets_a_suggestion(capsys, tmp_path):
    assert main(["figures", "--only", "fc_equalizaton", "--out", str(tmp_path)]) == 2
    assert "fc_equalizaton (did you mean fc_equalization?)" in capsys.readouterr().err
    assert main(["figures", "--only", "zzzzzz", "--out", str(tmp_path)]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_block_mode_without_a_size_names_the_flag(capsys):
    assert main(["penalty", "conv", "--mode", "block", "--n-masks", "1000"]) == 2
    assert "--block-size is required with --mode block" in capsys.readouterr().err


def test_compare_help_describes_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "four kinds of dropout" in out and "implied convex problem" in out


@pytest.mark.slow
def test_only_quick_writes_files(tmp_path):
    assert main(["figures", "--only", "fc_equalization", "--quick", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fc_equalization.json",
        "fc_equalization.pdf",
        "fc_equalization.png",
    ]


@pytest.mark.slow
def test_rerun_with_the_same_seed_writes_identical_json(tmp_path, quick_record):
    # figures whose data come from sampled masks, SGD with real masks, and cvxpy; the
    # first run is the session's shared record (conftest), computed in another call
    names = ["fc_equalization", "conv_matrix_seed", "trained_vs_implied"]
    argv = ["figures", "--only", *names, "--quick", "--seed", "2", "--out", str(tmp_path)]
    assert main([*argv, "--no-progress"]) == 0
    for name in names:
        written = (tmp_path / f"{name}.json").read_text(encoding="utf-8")
        assert written == json.dumps(quick_record(name, 2), indent=1, sort_keys=True) + "\n"
        assert json.loads(written)["seed"] == 2


@pytest.mark.slow
def test_jobs_do_not_change_the_data(tmp_path, quick_record):
    """The sweeps of (e) on two processes write the JSON of the serial run, byte for byte
    (the serial run is the session's shared record, conftest)."""
    argv = ["figures", "--only", "penalty_vs_keep", "--quick", "--seed", "2", "--jobs", "2"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    written = (tmp_path / "penalty_vs_keep.json").read_text(encoding="utf-8")
    assert (
        written == json.dumps(quick_record("penalty_vs_keep", 2), indent=1, sort_keys=True) + "\n"
    )


@pytest.mark.slow
def test_scheduler_runs_the_sweeps_on_a_dask_cluster(tmp_path, quick_record):
    distributed = pytest.importorskip("dask.distributed")
    argv = ["figures", "--only", "mc_error_vs_n", "--quick", "--seed", "2", "--no-progress"]
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert main([*argv, "--scheduler", address, "--out", str(tmp_path)]) == 0
    # the serial run is the session's shared record (conftest)
    serial = json.dumps(quick_record("mc_error_vs_n", 2), indent=1, sort_keys=True) + "\n"
    assert serial == (tmp_path / "mc_error_vs_n.json").read_text(encoding="utf-8")


def _check_one_line_and_nothing_written(captured, out_dir, *words):
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("regtheory figures: "), captured.err
    assert all(w in lines[0] for w in words), lines[0]
    assert captured.out == "" and not out_dir.exists()


def test_unreachable_scheduler_exits_2_before_any_figure(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dask.distributed")
    monkeypatch.setattr("regtheory.sweep.CONNECT_TIMEOUT", 1.0)
    out = tmp_path / "out"
    argv = ["figures", "--scheduler", "tcp://127.0.0.1:1", "--out", str(out), "--quick"]
    assert main(argv) == 2
    _check_one_line_and_nothing_written(capsys.readouterr(), out, "tcp://127.0.0.1:1")


def test_scheduler_without_dask_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # the import fails
    out = tmp_path / "out"
    assert main(["figures", "--scheduler", "tcp://127.0.0.1:8786", "--out", str(out)]) == 2
    _check_one_line_and_nothing_written(capsys.readouterr(), out, "regtheory[dask]")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.slow
@pytest.mark.parametrize("no_progress", [False, True])
def test_progress_bar_on_a_terminal_only(no_progress, tmp_path, monkeypatch, capsys):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["figures", "--only", "no_gradient_probability", "--quick", "--out", str(tmp_path)]
    assert main(argv + ["--no-progress"] * no_progress) == 0
    out = capsys.readouterr().out
    assert out.startswith("no_gradient_probability: ") and len(out.splitlines()) == 1
    bar = terminal.getvalue()
    assert ("1/1" in bar) is not no_progress


@pytest.mark.slow
def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capsys):
    argv = ["figures", "--only", "no_gradient_probability", "--quick", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


def test_console_script_entry_point():
    """The `regtheory` command that `pip install` put beside this Python answers --help."""
    script = Path(sys.executable).parent / "regtheory"
    assert script.exists(), "the console script is not installed (pyproject [project.scripts])"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "figures" in done.stdout and "penalty" in done.stdout


# ----------------------------------------------------------------------------- exit statuses

COMPARE_FAST = ["compare", "--n", "8", "--no-train", "--n-train", "40", "--n-test", "40"]


def _failing_solve(status="optimal_inaccurate"):
    """A stand-in for an implied solve that fails the way cvxpy reports it."""

    def solve(*args, solver=None, **kwargs):
        raise implied.SolverFailedError(status, (solver or "CLARABEL").upper())

    return solve


@pytest.mark.parametrize("flags", [[], ["--solver", "SCS"], ["--solver", "clarabel"]])
def test_failed_solve_exits_3_with_one_line_naming_another_solver(flags, monkeypatch, capsys):
    monkeypatch.setattr(implied, "solve_conv", _failing_solve())
    assert main([*COMPARE_FAST, "--methods", "element", *flags]) == 3
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("regtheory compare: ") and "optimal_inaccurate" in lines[0]
    failed = flags[1].upper() if flags else "CLARABEL"
    advice = re.findall(r"try --solver (\w+)", lines[0])
    assert len(advice) == 1 and advice[0] != failed, lines[0]
    assert advice[0] in cp.installed_solvers()


@pytest.mark.parametrize(
    "error",
    [np.linalg.LinAlgError("SVD did not converge"), FloatingPointError("training diverged")],
    ids=["LinAlgError", "FloatingPointError"],
)
def test_other_numerical_failures_exit_3_with_one_line(error, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(implied, "solve_fc", fail)
    assert main([*COMPARE_FAST, "--methods", "fc"]) == 3
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and str(error) in lines[0] and "Traceback" not in captured.err
    assert "--solver" not in lines[0]  # no solver failed: nothing to swap


@pytest.mark.parametrize(
    "bug",
    [KeyError("cells"), ValueError("operands could not be broadcast"), TypeError("bad operand")],
    ids=["KeyError", "ValueError", "TypeError"],
)
def test_an_internal_error_propagates_out_of_main(bug, monkeypatch, capsys):
    """A plain ValueError from deep inside is a bug, not a user error: its traceback shows."""

    def deep_inside(*args, **kwargs):
        raise bug

    monkeypatch.setattr(implied, "solve_conv", deep_inside)
    with pytest.raises(type(bug)) as info:
        main([*COMPARE_FAST, "--methods", "element"])
    assert info.value is bug and capsys.readouterr().err == ""


def test_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for status, words in [("0", "success"), ("1", "check"), ("2", "user"), ("3", "numerical")]:
        assert re.search(rf"^\s+{status}\s+.*{words}", out, flags=re.MULTILINE), (status, out)


# ----------------------------------------------------------------------------- --solver


def _recording(monkeypatch, names):
    """Wrap the implied solves ``names`` so that each records the solver it was given."""
    seen = []
    for name in names:
        original = getattr(implied, name)

        def solve(*args, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs.get("solver")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(implied, name, solve)
    return seen


def test_compare_solver_reaches_every_solve(monkeypatch, capsys):
    seen = _recording(monkeypatch, ["solve_fc", "solve_fc_block", "solve_conv"])
    assert main([*COMPARE_FAST, "--solver", "scs", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["settings"]["solver"] == "SCS"
    assert "func" not in record["settings"]  # argparse's own entries stay out
    assert sorted(seen) == [
        ("solve_conv", "SCS"),
        ("solve_conv", "SCS"),
        ("solve_fc", "SCS"),
        ("solve_fc_block", "SCS"),
    ]


@pytest.mark.slow
def test_figures_solver_reaches_the_solves_and_the_record(monkeypatch, tmp_path):
    seen = _recording(monkeypatch, ["solve_fc", "solve_fc_block", "solve_conv"])
    argv = ["figures", "--only", "implied_spectra", "--quick", "--no-progress"]
    assert main([*argv, "--solver", "SCS", "--out", str(tmp_path)]) == 0
    assert seen and {solver for _, solver in seen} == {"SCS"}
    assert json.loads((tmp_path / "implied_spectra.json").read_text())["solver"] == "SCS"


# ----------------------------------------------------------------------------- entry points


def test_python_m_regtheory_version():
    done = subprocess.run(
        [sys.executable, "-m", "regtheory", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"regtheory {regtheory.__version__}\n"


@pytest.mark.slow
def test_python_m_regtheory_reports_a_user_error_like_the_console_script():
    done = subprocess.run(
        [sys.executable, "-m", "regtheory", "compare", "--solver", "NO-SUCH-SOLVER"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "--solver" in done.stderr


# ----------------------------------------------------------------------------- missing extras

# A fresh interpreter in which the modules `blocked` cannot be imported (as if the extra
# were not installed) runs `regtheory figures` with render replaced by a stub that
# writes "render NAME" to stderr: the order of stderr shows what was said before which
# figure was computed.
WITHOUT = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Block())
import regtheory.figures

def render(name, out, **options):
    print("render", name, file=sys.stderr)
    return []

regtheory.figures.render = render
from regtheory.cli import main
sys.exit(main({argv!r}))
"""


def figures_without(blocked, names, tmp_path):
    argv = ["figures", "--only", *names, "--jobs", "1", "--out", str(tmp_path)]
    code = WITHOUT.format(blocked=set(blocked), argv=argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.returncode, done.stderr.splitlines()


@pytest.mark.slow
def test_figures_name_a_missing_extra_first_render_the_rest_and_exit_2(tmp_path):
    names = ["digits_dropout", "fc_equalization", "glm_adaptive_l2", "conv_matrix_seed"]
    status, lines = figures_without({"torch", "sklearn"}, names, tmp_path)
    assert status == 2
    install = 'pip install "regtheory[torch]"'
    assert "digits_dropout, glm_adaptive_l2 need the torch extra" in lines[0]
    assert install in lines[0]
    assert lines[1:3] == ["render fc_equalization", "render conv_matrix_seed"]
    assert len(lines) == 4 and lines[3].endswith(lines[0].removeprefix("regtheory figures: "))


@pytest.mark.slow
def test_figures_without_torch_alone_miss_only_the_torch_figure(tmp_path):
    status, lines = figures_without({"torch"}, ["glm_adaptive_l2", "digits_dropout"], tmp_path)
    assert status == 2
    assert lines[0].startswith("regtheory figures: digits_dropout needs the torch extra")
    assert lines[1] == "render glm_adaptive_l2"


@pytest.mark.slow
def test_figures_that_only_need_a_missing_extra_exit_2_at_once(tmp_path):
    status, lines = figures_without({"sklearn"}, ["glm_adaptive_l2"], tmp_path)
    assert status == 2 and len(lines) == 1 and "the torch extra" in lines[0]
    assert not any(tmp_path.iterdir())


def test_every_extra_a_figure_names_is_declared_in_pyproject():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    for spec in REGISTRY.values():
        assert (spec.extra is None) == (not spec.requires), spec.name
        if spec.extra is not None:
            line = re.search(rf"(?m)^{spec.extra} = \[(.*)\]$", pyproject).group(1)
            declared = line.replace("scikit-learn", "sklearn")
            assert all(f'"{module}' in declared for module in spec.requires), spec.name


def test_compare_methods_of_the_parser_are_those_of_compare():
    from regtheory.cli._compare import METHODS

    assert METHODS == tuple(regtheory.compare.METHODS)
