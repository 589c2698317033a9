"""The docs site (mkdocs.yml) builds in strict mode and works offline.

Strict mode fails the build on a broken link or anchor, a page missing from the nav, or a link to a file
that does not exist; the offline promise is checked on the output: no built page or stylesheet loads a
script, stylesheet, font, image or frame from another origin (a CDN or a font service), so the site works
on a machine without network and opened from disk. One build per module (about 10 s).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MKDOCS = [sys.executable, "-m", "mkdocs"]
BUILD_TIMEOUT_SECONDS = 240  # a loaded 2-core machine; a build takes ~10 s alone
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])([^"')\s]+)""")
# (tag, attribute) pairs through which a browser fetches a resource while loading the page
_FETCHING = {
    ("script", "src"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("source", "srcset"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
    ("object", "data"),
}
_FETCHING_LINK_RELS = {"stylesheet", "preload", "modulepreload", "preconnect", "dns-prefetch", "icon", "prefetch"}


class _AssetCollector(HTMLParser):
    """Every URL a page makes the browser fetch (scripts, stylesheets, fonts, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "link":
            if set(values.get("rel", "").lower().split()) & _FETCHING_LINK_RELS:
                self.urls.append(values.get("href", ""))
            return
        self.urls.extend(values[name] for (t, name) in _FETCHING if t == tag and name in values)


def _build(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "build", "--strict", "--config-file", str(config), "--site-dir", str(site_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(site_dir.parent)},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site_dir = tmp_path_factory.mktemp("docs-site") / "site"
    result = _build(REPO_ROOT / "mkdocs.yml", site_dir)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    yield site_dir


def test_every_docs_page_is_built(site: Path) -> None:
    """Each Markdown file in docs/ becomes a page (README.md becomes its folder's index.html)."""
    missing = []
    for source in (REPO_ROOT / "docs").rglob("*.md"):
        relative = source.relative_to(REPO_ROOT / "docs")
        name = "index.html" if relative.name == "README.md" else relative.with_suffix(".html").name
        if not (site / relative.parent / name).is_file():
            missing.append(str(relative))
    assert missing == []


def test_pages_next_to_the_code_are_published_and_linked(site: Path) -> None:
    """README, CONTRIBUTING, CHANGELOG and the parts' READMEs are in the site; docs/index.md links reach them."""
    for page in (
        "repo/index.html",
        "repo/CONTRIBUTING.html",
        "repo/CHANGELOG.html",
        "repo/services/cashier/index.html",
        "repo/gateway/index.html",
    ):
        assert (site / page).is_file(), page
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="repo/index.html"' in index
    assert 'href="repo/CONTRIBUTING.html"' in index
    # the README's links into docs/ lead back to the site's pages
    assert 'href="../architecture.html"' in (site / "repo" / "CONTRIBUTING.html").read_text(encoding="utf-8")


def test_no_page_loads_anything_from_another_origin(site: Path) -> None:
    """Offline: scripts, stylesheets, fonts, images and frames all come from the site itself."""
    external: list[str] = []
    for page in site.rglob("*.html"):
        collector = _AssetCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        external += [f"{page.relative_to(site)}: {url}" for url in collector.urls if _EXTERNAL.match(url)]
    for stylesheet in site.rglob("*.css"):
        urls = _CSS_URL.findall(stylesheet.read_text(encoding="utf-8"))
        external += [f"{stylesheet.relative_to(site)}: {url}" for url in urls if _EXTERNAL.match(url)]
    assert external == []
    # the search works opened from disk: its index is inlined as a script
    assert (site / "search" / "search_index.js").is_file()


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The same configuration refuses a page whose link points nowhere (what keeps docs/ links honest)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Index\n\nSee [the ledger](ledgr.md).\n", encoding="utf-8")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {REPO_ROOT / 'mkdocs.yml'}\n"
        f"docs_dir: {docs}\n"
        "nav: [index.md]\n"
        f"hooks: [{REPO_ROOT / 'mkdocs_hooks.py'}]\n"
        "watch: []\n"
        "plugins: [search]\n"
        "theme: {name: material, font: false}\n"
        "extra: {polyfills: []}\n",
        encoding="utf-8",
    )
    result = _build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "ledgr.md" in result.stdout + result.stderr
