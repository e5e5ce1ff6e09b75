"""docs/THEORY.md against the code it describes, so the two cannot drift apart.

Readers cite the theory page and follow its pointers into the package, so every
pointer must lead somewhere: each ``module.function`` it names is imported, each
``tests/<file>.py::<test>`` is found in its file, the formula numbers (1)-(7) the
docstrings cite are still there, and the seed's 9×9 matrix is the one the tests use.
The page is also the package's own text: when the project's planning note
(../shared/THEORY.md, outside the repository) is present, no line of it may appear
in the page verbatim.
"""

import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
from _theory import THEORY_MATRIX

import regtheory

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "THEORY.md"
PLANNING_NOTE = ROOT.parent / "shared" / "THEORY.md"
# Lines shorter than this may coincide by accident ("## References", a bare formula).
MIN_COPIED = 30

MODULES = sorted(m.name for m in pkgutil.iter_modules(regtheory.__path__))
# `fc.dropout_penalty`, `montecarlo.Estimate.ci`, and anything spelled out from
# `regtheory.` (a module such as `regtheory.montecarlo` included) -- but not numpy.fft.fft or
# torch.nn.functional.conv2d (preceded by a dot or a word), nor a file name such as fc.py.
_MODULE = "(?:" + "|".join(MODULES) + ")"
_NAME = r"[A-Za-z_]\w*"
CODE_REF = re.compile(rf"(?<![\w./-])(?:regtheory(?:\.{_NAME})+|{_MODULE}(?:\.{_NAME})+)")
TEST_REF = re.compile(r"\btests/([\w/]+\.py)(?:::(\w+))?")


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def resolve(dotted: str):
    """The object a dotted name denotes, importing the longest module prefix first."""
    parts = dotted.split(".")
    if parts[0] != "regtheory":
        parts = ["regtheory", *parts]
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)  # AttributeError names what is missing
        return obj
    raise ImportError(dotted)  # pragma: no cover - "regtheory" itself always imports


def code_references(text: str) -> set[str]:
    refs = set()
    for match in CODE_REF.finditer(text):
        ref = match.group(0)
        if ref.endswith(".py"):  # a file, e.g. regtheory/fc.py
            continue
        refs.add(ref)
    return refs


def test_every_code_reference_exists():
    refs = code_references(doc_text())
    assert len(refs) > 40, sorted(refs)  # the parser found the page's pointers
    missing = []
    for ref in sorted(refs):
        try:
            resolve(ref)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{ref}: {exc}")
    assert not missing, "docs/THEORY.md names objects that do not exist:\n" + "\n".join(missing)


def test_every_test_reference_exists():
    refs = TEST_REF.findall(doc_text())
    assert len(refs) > 40, refs
    missing = []
    for file, name in refs:
        path = ROOT / "tests" / file
        if not path.is_file():
            missing.append(f"tests/{file}: no such file")
            continue
        if name and not re.search(
            rf"^\s*def {name}\(", path.read_text(encoding="utf-8"), re.MULTILINE
        ):
            missing.append(f"tests/{file}::{name}: no such test")
    assert not missing, "docs/THEORY.md names tests that do not exist:\n" + "\n".join(missing)


def test_the_parsers_reject_what_does_not_exist():
    """The checks above would catch a renamed function or test (not vacuous)."""
    found = code_references("`fc.no_such_function`, regtheory.nomodule, numpy.fft.fft, fc.py")
    assert found == {"fc.no_such_function", "regtheory.nomodule"}
    assert code_references("see `regtheory.montecarlo`.") == {"regtheory.montecarlo"}
    try:
        resolve("fc.no_such_function")
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("resolve accepted a missing name")
    assert TEST_REF.findall("`tests/test_fc.py::test_x` and tests/<file>.py") == [
        ("test_fc.py", "test_x")
    ]


def test_formula_numbers_cited_by_the_docstrings_are_kept():
    text = doc_text()
    for n in range(1, 8):
        assert len(re.findall(rf"\\tag\{{{n}\}}", text)) == 1, f"formula ({n})"
    cited = set()
    for path in (ROOT / "regtheory").rglob("*.py"):
        cited |= set(re.findall(r"formula \((\d+)\)", path.read_text(encoding="utf-8")))
    for n in cited:
        assert rf"\tag{{{n}}}" in text, f"formula ({n}) is cited in regtheory/ but not numbered"


def test_seed_matrix_is_the_one_the_tests_use():
    """tests/_theory.py types the §2 matrix from this page; both must stay the same."""
    block = re.search(r"U = \\begin\{pmatrix\}(.*?)\\end\{pmatrix\}", doc_text(), re.DOTALL)
    assert block, "the 9×9 matrix of §2 is missing"
    rows = [r for r in block.group(1).split(r"\\") if r.strip()]
    parsed = np.array([[int(c.strip().removeprefix("u_")) for c in row.split("&")] for row in rows])
    np.testing.assert_array_equal(parsed, THEORY_MATRIX)


def test_no_developer_pointers_or_missing_files():
    text = doc_text()
    assert "seeds/" not in text  # the essay is cited as published, not as a file
    assert "re-derive" not in text and "derive it and test it" not in text


def _normalised(line: str) -> str:
    return " ".join(line.split())


def test_no_line_is_copied_from_the_planning_note():
    """The page is written for its readers, not copied from the team's working note."""
    doc_lines = [_normalised(line) for line in doc_text().splitlines()]
    doc_joined = " ".join(doc_lines)
    assert len(doc_joined) > 10_000  # the page itself is always checked for content
    if not PLANNING_NOTE.is_file():
        return  # outside the project's workspace there is nothing to compare with
    note_lines = [_normalised(line) for line in PLANNING_NOTE.read_text("utf-8").splitlines()]
    note_joined = " ".join(note_lines)
    copied = [line for line in note_lines if len(line) >= MIN_COPIED and line in doc_joined]
    copied += [line for line in doc_lines if len(line) >= MIN_COPIED and line in note_joined]
    assert not copied, "lines copied from the planning note:\n" + "\n".join(copied)
