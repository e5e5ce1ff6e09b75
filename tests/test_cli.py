import subprocess
import sys
from pathlib import Path

from regtheory.cli import main
from regtheory.figures import REGISTRY


def test_list_names_every_figure(capsys):
    assert main(["figures", "--list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert name in out


def test_unknown_figure_exits_2_with_valid_names(capsys, tmp_path):
    assert main(["figures", "--only", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and all(name in err for name in REGISTRY)
    assert not any(tmp_path.iterdir())


def test_only_quick_writes_files(tmp_path):
    assert main(["figures", "--only", "fc_equalization", "--quick", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fc_equalization.json",
        "fc_equalization.pdf",
        "fc_equalization.png",
    ]


def test_console_script_entry_point():
    """The `regtheory` command that `pip install` put beside this Python answers --help."""
    script = Path(sys.executable).parent / "regtheory"
    assert script.exists(), "the console script is not installed (pyproject [project.scripts])"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "figures" in done.stdout
