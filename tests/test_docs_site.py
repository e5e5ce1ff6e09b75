"""The built documentation site: offline, complete, and rendered as a reader sees it.

The site is built by ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (the
README's docs command; ``.ci/run`` runs it after the test suite, then this file with
``REGTHEORY_DOCS_BUILD`` naming the build). Where that variable is set, a missing build
FAILS in CI (``CI=true``), so a docs build that silently did not happen cannot pass; in
the test suite, which runs before any build, the module is skipped unless a build exists.
The browser checks open the landing page and one API page in headless Chromium, dump the
DOM after MathJax has run, and save screenshots under ``_screenshots/`` of the build.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from _public_api import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("REGTHEORY_DOCS_BUILD", ROOT / "docs" / "_build" / "html")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
THEORY = ROOT / "docs" / "THEORY.md"


def _require(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{why} (CI must build the docs site before this test)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def build() -> Path:
    _require((BUILD / "index.html").is_file(), f"no built site at {BUILD}")
    return BUILD


class _Loads(html.parser.HTMLParser):
    """Every script, stylesheet, image and link address of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"] or "")
        elif tag == "link" and "stylesheet" in (a.get("rel") or "") and a.get("href"):
            self.styles.append(a["href"] or "")
        elif tag == "img" and a.get("src") is not None:
            self.images.append(a["src"] or "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")


def _parse(text: str) -> _Loads:
    parser = _Loads()
    parser.feed(text)
    return parser


def _is_remote(url: str) -> bool:
    return url.startswith(("http:", "https:", "//"))


def _local_target(page: Path, url: str) -> Path:
    return (page.parent / unquote(urlsplit(url).path)).resolve()


def test_no_page_loads_anything_from_the_network(build: Path) -> None:
    pages = sorted(build.rglob("*.html"))
    assert len(pages) > 20, f"only {len(pages)} pages built"
    remote = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        found = _parse(text)
        remote += [f"{page.name}: {u}" for u in found.scripts + found.styles if _is_remote(u)]
        remote += [
            f"{page.name}: {m}" for m in re.findall(r"""<script[^>]+src=["']?https?:""", text)
        ]
        remote += [
            f"{page.name}: @import {m}"
            for m in re.findall(r"@import\s+url\(['\"]?https?:[^)]*", text)
        ]
    assert not remote, remote
    css = [
        p
        for p in build.rglob("*.css")
        if re.search(r"@import\s+url\(['\"]?https?:", p.read_text(errors="replace"))
    ]
    assert not css, css


def test_every_script_stylesheet_and_image_is_in_the_build(build: Path) -> None:
    missing = []
    for page in sorted(build.rglob("*.html")):
        found = _parse(page.read_text(encoding="utf-8"))
        for url in found.scripts + found.styles + found.images:
            local = not _is_remote(url) and not url.startswith("data:")
            if local and not _local_target(page, url).is_file():
                missing.append(f"{page.relative_to(build)}: {url}")
    assert not missing, missing
    assert (build / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_every_public_name_has_an_api_entry(build: Path) -> None:
    missing = []
    for module in PUBLIC_MODULES:
        short = module.__name__.rpartition(".")[2]
        page = build / "api" / f"{short}.html"
        text = page.read_text(encoding="utf-8") if page.is_file() else ""
        missing += [
            f"{module.__name__}.{n}"
            for n in module.__all__
            if f'id="{module.__name__}.{n}"' not in text
        ]
    assert not missing, missing


def _committed_figures() -> tuple[set[str], set[str]]:
    """The committed figures of the gallery, and those of the Reproductions page."""
    from regtheory.figures.reproductions import REPRODUCTIONS

    committed = {p.stem for p in (ROOT / "figures").glob("*.png")}
    return committed - set(REPRODUCTIONS), committed & set(REPRODUCTIONS)


def test_every_committed_figure_is_in_the_gallery(build: Path) -> None:
    gallery, reproductions = _committed_figures()
    for page, committed in (("index.html", gallery), ("reproductions.html", reproductions)):
        parsed = _parse((build / page).read_text(encoding="utf-8"))
        shown = {Path(unquote(src)).stem for src in parsed.images}
        assert committed and committed <= shown, (page, sorted(committed - shown))


def test_formula_numbers_link_to_the_theory_page(build: Path) -> None:
    tags = set(re.findall(r"\\tag\{(\d+)\}", THEORY.read_text(encoding="utf-8")))
    theory = (build / "THEORY.html").read_text(encoding="utf-8")
    assert tags and all(f'id="formula-{k}"' in theory for k in tags)
    fc_page = build / "api" / "fc.html"
    links = set(
        re.findall(r'href="\.\./THEORY\.html#formula-(\d+)"', fc_page.read_text(encoding="utf-8"))
    )
    assert {"1", "2", "3"} <= links, links


def test_notebooks_were_executed_with_figures(build: Path) -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for nb in notebooks:
        page = build / "notebooks" / f"{nb.stem}.html"
        text = page.read_text(encoding="utf-8")
        assert "cell_output" in text, f"{nb.name} has no outputs on its page"
        draws = re.search(r"matplotlib|plt\.|render\(", nb.read_text(encoding="utf-8"))
        assert "<img" in text or not draws, f"{nb.name} draws figures but its page shows none"


def _chromium(url: Path, *extra: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--window-size=1280,2400",
            *extra,
            url.as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("page", ["index.html", "reproductions.html", "api/fc.html"])
def test_browser_typesets_math_and_loads_images(build: Path, page: str) -> None:
    _require(CHROMIUM is not None, "chromium is not installed")
    path = build / page
    dom = _chromium(path, "--dump-dom")
    shots = build / "_screenshots"
    shots.mkdir(exist_ok=True)
    _chromium(path, f"--screenshot={shots / (Path(page).stem + '.png')}")
    typeset = len(re.findall(r"<mjx-container\b", dom))
    print(f"{page}: {typeset} typeset math elements")
    assert typeset >= 5, f"{page}: MathJax typeset {typeset} elements"
    assert "<mjx-merror" not in dom, f"{page}: MathJax reported a TeX error"
    # the TeX sources are gone from the text a reader sees: no raw delimiters are left
    visible = re.sub(r"<(script|style|mjx-assistive-mml)\b.*?</\1>", "", dom, flags=re.DOTALL)
    visible = re.sub(r"<[^>]+>", "", visible)
    assert "$$" not in visible and "\\(" not in visible and "\\[" not in visible, page
    images = _parse(dom).images
    for src in images:
        assert not _is_remote(src) and _local_target(path, src).is_file(), src
    gallery, reproductions = _committed_figures()
    if page in ("index.html", "reproductions.html"):
        assert len(images) >= len(gallery if page == "index.html" else reproductions), images
    assert (shots / (Path(page).stem + ".png")).stat().st_size > 10_000
