"""The papers behind each result: the bibliography and the registry of who cites what.

``references.bib`` (shipped inside the package) is the one bibliography: the package's own
``@software`` record and every paper a result, a function or a figure cites.
:func:`bibliography` reads it into :class:`BibEntry` values by key (a small parser for
the subset of BibTeX the file uses: ``@type{key, field = {...} | "..." | word, ...}``).

A public function declares the papers whose results it computes with :func:`cites`,
e.g. ``@cites("mianjy2018implicit, Thm 2.5")``: a reference is a bibliography key, then,
after a comma, where in the paper the result is (a theorem, an equation), when the
docstring or THEORY.md names it. The decorator records the references in
:data:`REFERENCES`, the one registry, and stamps them on the result the function
returns (its ``references`` attribute), so a result names its sources whichever function
made it: a :class:`regtheory.Penalty` from ``fc.dropout_penalty`` cites another paper
than one from ``glm.dropout_penalty``.

Standard library only: every numerical module imports this one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = [
    "REFERENCES",
    "BibEntry",
    "Cited",
    "bibliography",
    "cites",
    "keys",
    "parse_bibtex",
    "reference_key",
    "references_of",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Each decorated function, by its qualified name (``module.qualname``), mapped to its
#: references; filled as the modules that define them are imported.
REFERENCES: dict[str, tuple[str, ...]] = {}


class Cited:
    """A result that names the papers whose results it computes.

    Attributes
    ----------
    references : tuple of str
        Bibliography keys (``regtheory/references.bib``), each followed by a locator
        where one is known (``"mianjy2018implicit, Thm 2.5"``); set by the public
        function that returned the result (``()`` for one built by hand). Not part of
        the result's value: results that differ only here compare equal.
    """

    __slots__ = ()  # a Penalty (a float) keeps its slots

    references: tuple[str, ...] = ()


def reference_key(reference: str) -> str:
    """The bibliography key of a reference: ``"mianjy2018implicit, Thm 2.5"`` → its key."""
    return reference.partition(",")[0].strip()


def _stamp(result: object, references: tuple[str, ...]) -> None:
    # A frozen result is set through object.__setattr__, as its own __init__ does; a
    # result that is not Cited (an array, a float, a tuple) carries no references.
    if isinstance(result, Cited):
        object.__setattr__(result, "references", references)


def cites(*references: str) -> Callable[[F], F]:
    """Declare the papers whose results the decorated public function computes.

    Records ``references`` in :data:`REFERENCES` under the function's qualified name and
    sets the ``references`` of each result it returns. The function keeps its name,
    signature and docstring.
    """
    if not references or any(not reference_key(r) for r in references):
        raise ValueError(f"each reference needs a bibliography key, got {references!r}")

    def decorate(fn: F) -> F:
        name = f"{fn.__module__}.{fn.__qualname__}"
        if name in REFERENCES:
            raise ValueError(f"{name} declares its references twice")
        REFERENCES[name] = references

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            _stamp(result, references)
            return result

        wrapper.references = references  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def references_of(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The references a public function declared with :func:`cites` (``()`` if none)."""
    fn = getattr(fn, "__wrapped__", fn)
    return REFERENCES.get(f"{fn.__module__}.{fn.__qualname__}", ())


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry: its type, key, fields (braces kept) and its text in the file.

    Attributes
    ----------
    type : str
        The entry type, lower case (``"inproceedings"``).
    key : str
        The citation key.
    fields : mapping of str to str
        Field names (lower case) to their values, outer braces or quotes removed.
    text : str
        The entry as written in the file, ``@`` to closing brace.
    """

    type: str
    key: str
    fields: Mapping[str, str]
    text: str


_ENTRY = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", re.ASCII)
_FIELD = re.compile(r"\s*(\w+)\s*=\s*", re.ASCII)


def _balanced(text: str, start: int, where: str) -> int:
    """The index just past the brace that closes the one at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced braces in {where}")


def _value(body: str, pos: int, where: str) -> tuple[str, int]:
    """One field value starting at ``body[pos]``, and the position after it."""
    if body.startswith("{", pos):
        end = _balanced(body, pos, where)
        return body[pos + 1 : end - 1], end
    if body.startswith('"', pos):
        end = body.find('"', pos + 1)
        if end < 0:
            raise ValueError(f"unterminated quoted value in {where}")
        return body[pos + 1 : end], end + 1
    word = re.match(r"[\w.:-]+", body[pos:])
    if word is None:
        raise ValueError(f"a field of {where} has no value")
    return word.group(0), pos + word.end()


def _fields(body: str, where: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        if not body[pos:].strip(" \t\r\n,"):
            break
        match = _FIELD.match(body, pos)
        if match is None:
            raise ValueError(f"cannot read a field of {where} at {body[pos : pos + 30]!r}")
        name = match.group(1).lower()
        value, pos = _value(body, match.end(), f"{where}, field {name}")
        if name in fields:
            raise ValueError(f"{where} has the field {name} twice")
        fields[name] = " ".join(value.split())
        rest = re.match(r"\s*(,|$)", body[pos:])
        if rest is None:
            raise ValueError(f"expected a comma after field {name} of {where}")
        pos += rest.end()
    return fields


def parse_bibtex(text: str) -> dict[str, BibEntry]:
    """The entries of a BibTeX text by key, in the order written.

    Lines outside entries (``%`` comments) are skipped. A ValueError names the entry
    that cannot be read, and a key written twice.
    """
    entries: dict[str, BibEntry] = {}
    pos = 0
    while (match := _ENTRY.search(text, pos)) is not None:
        kind, key = match.group(1).lower(), match.group(2)
        brace = text.index("{", match.start())
        end = _balanced(text, brace, f"entry {key}")
        if key in entries:
            raise ValueError(f"the key {key} is written twice")
        fields = _fields(text[match.end() : end - 1], f"entry {key}")
        entries[key] = BibEntry(kind, key, MappingProxyType(fields), text[match.start() : end])
        pos = end
    return entries


@functools.lru_cache(maxsize=1)
def bibliography() -> Mapping[str, BibEntry]:
    """The entries of the package's ``references.bib`` by key (read once)."""
    text = files("regtheory").joinpath("references.bib").read_text(encoding="utf-8")
    return MappingProxyType(parse_bibtex(text))


def keys(references: Iterable[str]) -> list[str]:
    """The distinct bibliography keys of ``references``, in first-seen order."""
    return list(dict.fromkeys(reference_key(r) for r in references))
