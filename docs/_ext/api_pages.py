"""Write docs/api/<module>.rst from each public module's ``__all__`` when Sphinx starts.

A name added to a module's ``__all__`` gets its API entry at the next build, with no page
to edit; the files are rewritten only when their text changes, so an unchanged build stays
incremental. The pages are committed, so the repository shows what the site documents.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

# in the direction data flows through the package (regtheory's package docstring)
MODULES = [
    "masks",
    "montecarlo",
    "conv",
    "fc",
    "completion",
    "network",
    "diagnostics",
    "implied",
    "training",
    "compare",
    "glm",
    "data",
    "sweep",
    "figures",
    "pytorch",
]


def page(name: str) -> str:
    module = importlib.import_module(f"regtheory.{name}")
    title = f"regtheory.{name}"
    lines = [title, "=" * len(title), "", f".. automodule:: {title}", "   :no-members:", ""]
    lines += [f".. currentmodule:: {title}", "", ".. rubric:: Contents", ""]
    lines += [".. autosummary::", "   :nosignatures:", ""]
    lines += [f"   {n}" for n in module.__all__] + [""]
    for n in module.__all__:
        obj = getattr(module, n)
        if isinstance(obj, type):
            lines += [f".. autoclass:: {title}.{n}", "   :members:", ""]
        elif callable(obj):
            lines += [f".. autofunction:: {title}.{n}", ""]
        else:
            lines += [f".. autodata:: {title}.{n}", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_pages(app: Sphinx) -> None:
    folder = Path(app.srcdir) / "api"
    for name in MODULES:
        path = folder / f"{name}.rst"
        text = page(name)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", write_pages)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
