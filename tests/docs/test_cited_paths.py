"""Every repository file the docs cite exists, so a "Where is …?" answer cannot rot when a file moves.

The docs answer "where is X" with backticked paths (`services/cashier/flows/refunds.py`,
`gateway/api/gatekeeper.py:Gatekeeper`, in a service README `flows/outcomes.apply_trade_result`). Files move
(issue 22 moves many); a doc that still names the old path sends a newcomer nowhere and nothing else notices:
mkdocs checks links, not code spans. This reads the pages as text (no process, about a second) and checks
each cited path against the tree: relative to the repository root, or to the citing page's folder (a service
README cites its own `tests/unit/…`). A `path.py:name` or `path/module.name` citation must also still define
or import that name. Placeholders (`services/<svc>/context.py`, `…`, `*`, `$JUHE_DATA_DIR/…`) and run-time
files (`.juhe/…`) are not citations of the tree and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from libs.common.services import REPO_ROOT


def cited_docs() -> list[Path]:
    """The pages a newcomer is sent to: CONTRIBUTING, the README, the docs site, every service's and
    package's README."""
    pages = [REPO_ROOT / "CONTRIBUTING.md", REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    for pattern in (
        "services/*/README.md",
        "gateway/README.md",
        "web/README.md",
        "libs/*/README.md",
        "sdk/*/README.md",
    ):
        pages.extend(sorted(REPO_ROOT.glob(pattern)))
    pages.extend(sorted((REPO_ROOT / "sandboxes").rglob("README.md")))
    return pages


CODE_SPAN = re.compile(r"`([^`\n]+)`")
PLACEHOLDER = re.compile(r"[<>*{}…$]|\.\.\.")
# a path with at least one slash, then optionally `:name` or `:line[-line]`
CITATION = re.compile(r"(?P<path>[\w.-]+(?:/[\w.-]+)+/?|[\w.-]+/)(?::(?P<name>[A-Za-z_][\w.]*)|:\d+(?:-\d+)?)?")
FILE_SUFFIXES = frozenset(
    {
        "py",
        "md",
        "toml",
        "yaml",
        "yml",
        "json",
        "sh",
        "html",
        "js",
        "css",
        "txt",
        "cfg",
        "ini",
        "po",
        "csv",
        "lock",
        "sqlite3",
    }
)


def citations(page: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line, path, name or None) for each repository path the page cites in a code span."""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        for span in CODE_SPAN.findall(line):
            if PLACEHOLDER.search(span):
                continue
            for token in re.split(r"[\s,;()\[\]|=\"']+", span):
                match = CITATION.fullmatch(token)
                if match is None or match["path"].startswith("."):
                    continue
                path, name = match["path"], match["name"]
                stem, _, suffix = path.rpartition("/")[2].partition(".")
                if suffix and suffix not in FILE_SUFFIXES and not path.endswith("/"):
                    # `flows/outcomes.apply_trade_result`: a module and a name in it
                    path, name = f"{path.rpartition('/')[0]}/{stem}.py", suffix
                elif not suffix and not path.endswith("/"):
                    continue  # `tests/unit`, `make docs-serve`: a folder named loosely, or not a path at all
                yield number, path, name


def resolve(page: Path, path: str) -> Path | None:
    """The cited file, from the repository root or from the citing page's folder; None when the first folder
    of the path is neither (then it is not a citation of this tree, e.g. a URL path)."""
    first = path.split("/", 1)[0]
    bases = [base for base in (REPO_ROOT, page.parent) if (base / first).exists()]
    if not bases:
        return None
    return next((base / path for base in bases if (base / path).exists()), bases[0] / path)


def defines(source: str, name: str) -> bool:
    """Whether a module defines (def, class, assignment) or imports `name`'s last part."""
    last = re.escape(name.rsplit(".", 1)[-1])
    return bool(
        re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{last}\b|^\s*{last}\s*(?::|=)", source, re.MULTILINE)
        or re.search(rf"^\s*from\s+\S+\s+import\s+[^#\n]*\b{last}\b|^\s+{last},?$", source, re.MULTILINE)
    )


# Stale citations in pages whose owner is moving files today (issue 22), told to the coordinator: (page, citation).
# Remove an entry when its page is mended; never add one to make a new move pass.


def stale_citations() -> list[str]:
    stale = []
    for page in cited_docs():
        for number, path, name in citations(page):
            target = resolve(page, path)
            if target is None:
                continue
            page_name = str(page.relative_to(REPO_ROOT))
            cited = f"{path}:{name}" if name else path
            if not target.exists():
                stale.append(f"{page_name}:{number}: {path}")
            elif name and target.suffix == ".py" and not defines(target.read_text(), name):
                stale.append(f"{page_name}:{number}: {cited}")
    return stale


def test_the_docs_cite_enough_paths_for_the_check_to_mean_something() -> None:
    cited = sum(1 for page in cited_docs() for _ in citations(page))
    assert cited > 500, cited  # the docs cite ~800 paths: a parser that found few would pass vacuously


def test_every_cited_repository_path_exists() -> None:
    assert stale_citations() == []


def test_the_parser_tells_citations_from_the_rest(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(
        "`services/cashier/flows/refunds.py:return_money`, `libs/common/web.py`, `docs/adr/` and\n"
        "`flows/outcomes.apply_trade_result`; not `services/<svc>/context.py`, `.juhe/ports.json`, `tests/unit`,\n"
        "`GET /v1/payments/{id}` or `$JUHE_DATA_DIR/sandboxes/bank/store.sqlite3`.\n"
    )
    assert list(citations(page)) == [
        (1, "services/cashier/flows/refunds.py", "return_money"),
        (1, "libs/common/web.py", None),
        (1, "docs/adr/", None),
        (2, "flows/outcomes.py", "apply_trade_result"),
    ]
    assert resolve(page, "flows/outcomes.py") is None  # no flows/ beside this page or at the root
    assert defines("from x import (\n    a,\n    return_money,\n)\n", "return_money")
    assert defines("class Gatekeeper:\n", "gatekeeper.Gatekeeper")
    assert not defines("def return_money_later(): ...\n", "return_money")
