"""``regtheory.cite``: the BibTeX to cite for a number the package computed.

The package's own ``@software`` entry (the installed version, and the git commit when the
package runs from a git checkout), then the entries of the papers that the given figures,
results or functions cite (:mod:`regtheory._references`), each once, in the order of
``references.bib``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from ._references import REFERENCES, Cited, bibliography, references_of
from ._validation import InvalidParameterError

__all__ = ["cite", "package_entry"]

#: The key of the package's own entry in references.bib.
PACKAGE_KEY = "regtheory"


def _git_commit() -> str | None:
    """The commit the package runs from, or None outside a git checkout.

    ``+ local changes`` is added when tracked files differ from it. Never raises: no git,
    no checkout or a slow one mean no commit.
    """
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # an installed copy: site-packages is no checkout
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not re.fullmatch(r"[0-9a-f]{40,64}", head):
        return None
    return head + (" + local changes" if status else "")


def package_entry() -> str:
    """The package's ``@software`` BibTeX entry, with this version (and commit).

    Returns
    -------
    str
        The entry of ``references.bib`` with ``version`` set to the installed version
        and, when the package runs from a git checkout, the commit added to ``note``.
    """
    from . import __version__

    text = bibliography()[PACKAGE_KEY].text
    text = re.sub(r"(version\s*=\s*)\{[^{}]*\}", rf"\g<1>{{{__version__}}}", text, count=1)
    commit = _git_commit()
    if commit is not None:
        text = re.sub(
            r"(note\s*=\s*\{)([^{}]*)\}", rf"\g<1>\g<2>; git commit {commit}}}", text, count=1
        )
    return text


def _every_reference() -> list[str]:
    """The references of every figure and of every public function of the package.

    Loading the modules fills the registry; ``pytorch`` only where torch is installed.
    """
    import regtheory

    from .figures import REGISTRY

    for name in dir(regtheory):  # the public names and modules, loaded on access
        if name != "pytorch" or find_spec("torch") is not None:
            getattr(regtheory, name)
    found = [r for spec in REGISTRY.values() for r in spec.references]
    return found + [r for refs in REFERENCES.values() for r in refs]


def _references_of(thing: object) -> tuple[str, ...]:
    if isinstance(thing, str):
        from .figures._registry import spec_of

        return spec_of(thing).references
    if isinstance(thing, Cited):  # a result (some results are callable, too)
        return thing.references
    if callable(thing) and getattr(thing, "__module__", "").startswith("regtheory"):
        return references_of(thing)
    raise InvalidParameterError(
        f"`things` must be figure names, results or regtheory functions, got "
        f"{type(thing).__name__} {thing!r:.60}"
    )


def _locators(references: list[str]) -> dict[str, list[str]]:
    """Each key mapped to its locators (``Thm 2.5``), in first-seen order."""
    found: dict[str, list[str]] = {}
    for reference in references:
        key, _, locator = reference.partition(",")
        places = found.setdefault(key.strip(), [])
        if locator.strip() and locator.strip() not in places:
            places.append(locator.strip())
    return found


def cite(*things: str | object | Callable[..., object], all: bool = False) -> str:
    """BibTeX for the package and the papers behind the given figures, results or functions.

    Parameters
    ----------
    *things : str, result or function
        Registered figure names (``"fc_spectrum"``), results of regtheory's functions
        (their ``references``) or the public functions themselves.
    all : bool
        Also every paper any figure or any public function cites (``regtheory.pytorch``'s
        only where torch is installed).

    Returns
    -------
    str
        The package's ``@software`` entry (this version; the git commit when the package
        runs from a git checkout), then each cited
        paper's entry once, in the order of ``references.bib``, each preceded by a
        ``%`` line naming the theorems or equations cited where any are.

    Raises
    ------
    InvalidParameterError
        If a name is not a registered figure (the message lists the valid names), or a
        thing is none of the three.

    Examples
    --------
    >>> import regtheory
    >>> from regtheory import fc
    >>> text = regtheory.cite(fc.induced_regularizer)
    >>> text.count("@"), "@inproceedings{mianjy2018implicit," in text
    (2, True)
    """
    references = [r for thing in things for r in _references_of(thing)]
    if all:
        references += _every_reference()
    locators = _locators(references)
    entries = [package_entry()]
    for key, entry in bibliography().items():
        if key in locators and key != PACKAGE_KEY:
            places = locators[key]
            entries.append((f"% cited for: {'; '.join(places)}\n" if places else "") + entry.text)
    missing = sorted(set(locators) - set(bibliography()))
    if missing:  # a declared key that the bibliography lacks: a bug, caught by the tests
        raise KeyError(f"references.bib has no entry {', '.join(missing)}")
    return "\n\n".join(entries) + "\n"


# documented and shown as regtheory.cite, its public name
cite.__module__ = "regtheory"
