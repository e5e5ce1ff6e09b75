"""The repository's text holds no control characters.

A formula written through a Python string that is not raw loses its backslashes to escapes:
``"\\times"`` becomes a tab and ``imes``, ``"\\nu"`` a line break and ``u``. MathJax then
shows the wreck without an error, so this test reads every text file the package ships or
documents, byte by byte: a tab, form feed, backspace, vertical tab, bell or carriage return
anywhere is a mistake. (Escapes such as ``"\\t"`` written in Python source are two
characters, a backslash and a ``t``, and pass.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = (
    "*.md",
    "*.toml",
    "*.cff",
    "docs/*.md",
    "docs/*.py",
    "docs/*.bib",
    "docs/**/*.rst",
    "regtheory/**/*.py",
    "regtheory/**/*.bib",
    "tests/*.py",
    "benchmarks/*.py",
    "notebooks/*.ipynb",
    "figures/*.json",
    ".ci/run",
)
FILES = sorted(
    {p for pattern in PATTERNS for p in ROOT.glob(pattern) if "_build" not in p.parts},
)
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")


def test_the_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    for expected in ("README.md", "docs/reproductions.md", "regtheory/fc/_optimum.py"):
        assert expected in names
    assert any(name.startswith("figures/") for name in names)
    assert any(name.startswith("notebooks/") for name in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_control_characters(path: Path):
    text = path.read_text(encoding="utf-8")
    where = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group()!r} in "
        f"{text[max(0, m.start() - 20) : m.end() + 20]!r}"
        for m in CONTROL.finditer(text)
    ]
    assert not where, "control characters (a lost backslash?):\n" + "\n".join(where[:10])


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


@pytest.mark.parametrize(
    "path",
    [p for p in FILES if p.suffix in (".json", ".ipynb")],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_no_control_characters_inside_json_strings(path: Path):
    # JSON writes a tab as the escape \t, which the byte scan above cannot see
    bad = [s for s in _strings(json.loads(path.read_text(encoding="utf-8"))) if CONTROL.search(s)]
    assert not bad, f"strings with control characters: {[b[:60] for b in bad[:5]]}"


MARKDOWN = [p for p in FILES if p.suffix == ".md"]
# A "$" that opens inline math and ends its line: what "$\\nu" leaves after "\\n" broke it.
OPENING_DOLLAR_AT_END = re.compile(r"(^|[ (])\$$", re.MULTILINE)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_inline_math_opens_at_a_line_end(path: Path):
    text = path.read_text(encoding="utf-8")
    lines = [text.count("\n", 0, m.start()) + 1 for m in OPENING_DOLLAR_AT_END.finditer(text)]
    assert not lines, f"inline math opened at the end of line(s) {lines}: a lost backslash?"


def test_the_scan_sees_a_lost_backslash(tmp_path):
    wreck = tmp_path / "wreck.md"
    wreck.write_text("$M \\in \\mathbb R^{2" + "\times" + " 3}$\n", encoding="utf-8")
    assert CONTROL.search(wreck.read_text(encoding="utf-8"))
    assert not CONTROL.search("$M \\in \\mathbb R^{2 \\times 3}$\n")
    broken = "the bound $" + "\nu_L$ and $x$"
    assert OPENING_DOLLAR_AT_END.search(broken)
    assert not OPENING_DOLLAR_AT_END.search("the bound $\\nu_L$ and $x$\ncosts $1.")
