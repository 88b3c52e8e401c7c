"""The docs site renders in a real browser: the landing page and the FewShotClassifier API page.

Opens the site that ``make docs`` built (``site/``) in Debian's ``chromium``, headless, and
reads back the DOM after the theme's scripts ran (``--dump-dom``) and a screenshot. Skips,
saying why, when chromium or the built site is missing (CI's ``.ci/run`` installs chromium
and runs ``make docs`` before ``make test``).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

import jaxmaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
CHROMIUM = shutil.which("chromium")
# The theme's primary colour (Material's indigo, --md-primary-fg-color #4051b5): the header
# is painted in it only when the stylesheets loaded.
HEADER_RGB = (0x40, 0x51, 0xB5)

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install "
                       "chromium); the docs site is not opened in a browser"),
    pytest.mark.skipif(not (SITE / "index.html").exists(), reason="the docs site is not built "
                       "(site/index.html missing): run `make docs` first"),
]


def _chromium(tmp_path: Path, page: str, *args: str) -> str:
    """Run headless chromium on ``site/<page>`` with ``args``; its stdout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=3000", *args, (SITE / page).as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _nav_titles(nav: list) -> list[str]:
    """Every title in mkdocs.yml's nav (sections and pages)."""
    titles = []
    for item in nav:
        for title, value in item.items():
            titles.append(title)
            if isinstance(value, list):
                titles += _nav_titles(value)
    return titles


def _text(dom: str) -> str:
    """The visible text of a DOM, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def _opening(doc: str, words: int) -> str:
    """The first ``words`` words of a docstring as the page shows them: Sphinx roles as their
    target (``~`` keeps the last component), no backticks."""
    doc = re.sub(r":\w+:`(~?)([^`]+)`",
                 lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), doc)
    return " ".join(doc.replace("``", "").split()[:words])


def _primary_nav(dom: str) -> str:
    start = dom.index("md-nav--primary")
    return dom[start:dom.index('class="md-content"', start)]


def test_landing_page_renders_with_the_whole_nav(tmp_path):
    dom = _chromium(tmp_path, "index.html", "--dump-dom")
    assert re.search(r"<title>\s*jaxmaml\s*</title>", dom)
    text = _text(dom)
    assert "Meta-learning for pretrained BERT text encoders" in text
    assert "make demo" in text and "make test" in text
    nav = _text(_primary_nav(dom))
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    for title in _nav_titles(config["nav"]):
        assert title in nav, f"nav entry {title!r} is not in the rendered navigation"
    # Every page of docs/ is linked from the navigation, as a file that opens from disk.
    hrefs = {h.split("#")[0] for h in re.findall(r'href="([^"]+)"', _primary_nav(dom))}
    pages = {p.with_suffix(".html").name for p in (ROOT / "docs").glob("*.md")}
    assert pages <= hrefs | {"index.html"}, sorted(pages - hrefs)
    assert all((SITE / h).is_file() for h in hrefs if h), sorted(hrefs)
    # The copy buttons on code blocks are added by the theme's JavaScript: their presence in
    # the DOM (they are not in the HTML file) shows the scripts ran.
    assert "md-code__button" not in (SITE / "index.html").read_text()
    assert "md-code__button" in dom


def test_fewshotclassifier_api_page_renders_the_docstrings(tmp_path):
    dom = _chromium(tmp_path, "api.html", "--dump-dom")
    assert re.search(r"<title>[^<]*Using a model[^<]*</title>", dom)
    text = _text(dom)
    summary = jaxmaml.FewShotClassifier.__doc__.strip().splitlines()[0]
    assert summary in text
    for method in ("from_run", "from_pretrained", "fit", "predict", "predict_proba", "embed"):
        assert f'id="jaxmaml.FewShotClassifier.{method}"' in dom, method
        assert _opening(getattr(jaxmaml.FewShotClassifier, method).__doc__, 4) in text, method
    for name in jaxmaml.learners.__all__:  # every learner factory, with its docstring
        assert f'id="jaxmaml.learners.{name}"' in dom, name
        assert _opening(getattr(jaxmaml.learners, name).__doc__, 4) in text, name
    assert ":class:" not in text and ":func:" not in text  # Sphinx roles shown as code
    assert "Using a model" in _text(_primary_nav(dom))


def test_api_page_is_painted_by_the_theme(tmp_path):
    png = tmp_path / "api.png"
    _chromium(tmp_path, "api.html", "--hide-scrollbars", "--window-size=1280,1000",
              f"--screenshot={png}")
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape == (1000, 1280, 3)
    assert tuple(pixels[10, 400]) == HEADER_RGB  # the header, in the theme's colour
    assert tuple(pixels[900, 1270]) == (255, 255, 255)  # the page background
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # text drawn, not a blank page
