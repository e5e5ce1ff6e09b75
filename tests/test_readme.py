"""The README's Python tour runs as written, and its two set-up commands stay the ones CI uses."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}  # the tour is one session: later blocks use earlier names
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


def test_readme_has_exactly_the_two_setup_commands():
    text = README.read_text()
    for marker, needle in [("figures-command", "regtheory figures"), ("test-command", "pytest")]:
        match = re.search(rf"<!-- {marker} -->\n```bash\n(.+)\n```", text)
        assert match, f"README lacks the {marker} block"
        assert needle in match.group(1) and "python3 -m venv" in match.group(1)
