"""The wheel installs and works on its own: built from this tree, installed into a fresh
virtual environment that fetches the dependencies itself (no system site packages), it
ships the LICENSE and the bibliography, and runs ``regtheory cite --all`` and
``regtheory figures --quick`` (the ``torch`` extra installed, as figure (m) needs it).

Slow (about a minute: the dependencies are installed into a new venv), so it runs where
``REGTHEORY_PACKAGING_TESTS=1`` is set, as ``.ci/run`` does after the docs build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    os.environ.get("REGTHEORY_PACKAGING_TESTS") != "1",
    reason="slow packaging test; set REGTHEORY_PACKAGING_TESTS=1 (CI does)",
)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _torch_pin() -> str:
    """The ``torch==X`` of the README's figures command."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"<!-- figures-command -->\n```bash\n(.+)\n```", readme).group(1)
    return re.search(r"torch==[0-9.]+", command).group(0)


def test_wheel_installs_in_a_fresh_venv_and_draws_the_quick_figures(tmp_path: Path) -> None:
    start = time.perf_counter()
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(tmp_path)])
    (wheel,) = tmp_path.glob("regtheory-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "regtheory/py.typed" in names
    assert "regtheory/references.bib" in names  # what `regtheory cite` prints

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # the torch extra: figure (m) trains a CNN (without it the command stops at (m)); with
    # the README figures command's torch pin, a CPU-only build, not the newest CUDA one
    _run(
        [str(python), "-m", "pip", "install", "-q", "--no-compile", f"{wheel}[torch]", _torch_pin()]
    )
    # outside the source tree and without PYTHONPATH, so only the installed copy can load
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    site = _run(
        [str(python), "-c", "import regtheory; print(regtheory.__file__)"], env=env, cwd=tmp_path
    )
    assert str(env_dir) in site.stdout, "regtheory was not imported from the new venv"

    out = tmp_path / "figs"
    _run(
        [
            str(env_dir / "bin" / "regtheory"),
            "figures",
            "--quick",
            "--no-progress",
            "--out",
            str(out),
        ],
        env=env,
        cwd=tmp_path,
    )
    drawn = {p.stem for p in out.glob("*.png")}
    listed = _run([str(env_dir / "bin" / "regtheory"), "figures", "--list"], env=env, cwd=tmp_path)
    listed = listed.stdout
    assert drawn == {line.split()[0] for line in listed.splitlines() if line.strip()}
    # outside a git checkout the package's entry gives the version and no commit
    cited = _run([str(env_dir / "bin" / "regtheory"), "cite", "--all"], env=env, cwd=tmp_path)
    assert "@software{regtheory," in cited.stdout and "commit" not in cited.stdout
    assert "@inproceedings{mianjy2018implicit," in cited.stdout
    print(f"wheel test: {time.perf_counter() - start:.0f} s")
