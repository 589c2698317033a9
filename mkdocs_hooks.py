"""MkDocs hooks (mkdocs.yml `hooks:`): make the docs site stand alone without moving any file.

docs/ links to pages that live next to the code (`../README.md`, `../CONTRIBUTING.md`, the services'
READMEs), and those pages link back into `docs/` and to source files. On GitHub or in an editor these
links work as written; a site built from `docs/` alone would drop them (and `mkdocs build --strict` would
fail on them). So the hook:

- adds the repository's reader-facing Markdown pages (`REPO_PAGES`) to the site under `repo/<path>`;
- rewrites every relative link of every page by where it points in the repository: into `docs/` -> that
  site page, to a page of `REPO_PAGES` -> its `repo/` copy, to any other file or folder that exists
  (source code, a migration, a folder) -> the link text with the path as code (the site does not carry
  code), to nothing -> left alone, so strict mode reports it as the broken link it is.

Nothing outside the build output is written; fenced code blocks and inline code are left untouched.
"""

from __future__ import annotations

import glob
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPO_ROOT = Path(__file__).resolve().parent
SITE_PREFIX = "repo/"
# Reader-facing pages kept next to the code; globs relative to the repository root.
REPO_PAGES = (
    "README.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "gateway/README.md",
    "services/*/README.md",
    "libs/common/README.md",
    "sandboxes/README.md",
    "sandboxes/*/README.md",
    "sdk/python/README.md",
    "web/README.md",
)

# [text](target "title") and ![alt](target); target without spaces or parentheses.
_INLINE_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^()\s]+)((?:\s+\"[^\"]*\")?)\)")
# [label]: target
_REFERENCE_LINK = re.compile(r"^( {0,3}\[[^\]\n]+\]:\s*)(\S+)(.*)$", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")


def repo_pages() -> list[str]:
    """Repository paths (posix, sorted) of the pages copied into the site."""
    found: set[str] = set()
    for pattern in REPO_PAGES:
        for path in glob.glob(pattern, root_dir=REPO_ROOT):
            found.add(Path(path).as_posix())
    return sorted(found)


def on_files(files: Files, config: Any) -> Files:
    """Add the REPO_PAGES to the site under `repo/` (read from their place; nothing is copied on disk)."""
    for path in repo_pages():
        files.append(File.generated(config, SITE_PREFIX + path, abs_src_path=str(REPO_ROOT / path)))
    return files


def _repo_path_of(src_uri: str) -> str:
    """Where a site page's source lives in the repository."""
    if src_uri.startswith(SITE_PREFIX):
        return src_uri[len(SITE_PREFIX) :]
    return "docs/" + src_uri


def _site_uri_of(repo_path: str, pages: frozenset[str]) -> str | None:
    """The site page a repository path is published as, if it is published."""
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/") :]
    if repo_path in pages:
        return SITE_PREFIX + repo_path
    return None


def _rewrite_target(target: str, page_repo_path: str, page_src_uri: str, pages: frozenset[str]) -> str | None:
    """The new link target, "" when the target is a repository file the site does not carry, None to keep it."""
    if _EXTERNAL.match(target):
        return None
    path, hash_, fragment = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path))
    site_uri = _site_uri_of(resolved, pages)
    if site_uri is not None and (REPO_ROOT / resolved).is_file():
        relative = posixpath.relpath(site_uri, posixpath.dirname(page_src_uri) or ".")
        return relative + hash_ + fragment
    if not resolved.startswith("..") and (REPO_ROOT / resolved).exists():
        return ""
    return None


def _rewrite_text(text: str, page_repo_path: str, page_src_uri: str, pages: frozenset[str]) -> str:
    """Rewrite the links of prose (no fenced code) outside inline code spans."""

    def inline(match: re.Match[str]) -> str:
        bang, label, target, title = match.groups()
        new = _rewrite_target(target, page_repo_path, page_src_uri, pages)
        if new is None:
            return match.group(0)
        if new == "":
            code_path = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), target.split("#")[0]))
            if code_path in label or label.strip("`") == code_path:
                return label
            return f"{label} (`{code_path}`)"
        return f"{bang}[{label}]({new}{title})"

    def reference(match: re.Match[str]) -> str:
        head, target, tail = match.groups()
        new = _rewrite_target(target, page_repo_path, page_src_uri, pages)
        return match.group(0) if not new else f"{head}{new}{tail}"

    code_spans = [span.span() for span in _INLINE_CODE.finditer(text)]

    def outside_code(match: re.Match[str]) -> str:
        # a link's label may hold code; a "link" that starts inside a code span is not one
        if any(start <= match.start() < end for start, end in code_spans):
            return match.group(0)
        return inline(match)

    return _REFERENCE_LINK.sub(reference, _INLINE_LINK.sub(outside_code, text))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point each relative link at the site page (or code path) it means in the repository."""
    pages = frozenset(repo_pages())
    src_uri: str = page.file.src_uri
    page_repo_path = _repo_path_of(src_uri)
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if fence is None and opened:
            out.append(_rewrite_text("".join(prose), page_repo_path, src_uri, pages))
            prose = []
            fence = opened.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if line.strip().startswith(fence):
                fence = None
        else:
            prose.append(line)
    out.append(_rewrite_text("".join(prose), page_repo_path, src_uri, pages))
    return "".join(out)
