"""CONTRIBUTING's newcomer test ("Where is …?", ten features, one step each) still leads into the tree: every
`path.py:name` it cites exists and defines that name, so a move or a rename cannot leave it pointing nowhere."""

from __future__ import annotations

import re

from libs.common.services import REPO_ROOT

CITATION = re.compile(r"`([\w/.-]+\.py)(?::([\w.]+))?`")


def _where_is_section() -> str:
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    start = text.index("## 4. Where is")
    return text[start : text.index("\n## ", start + 1)]


def test_every_file_and_name_the_newcomer_test_cites_exists() -> None:
    section = _where_is_section()
    assert len(re.findall(r"^\| Where ", section, re.MULTILINE)) == 10, "ten questions, one row each"
    broken = []
    for path, name in CITATION.findall(section):
        source = REPO_ROOT / path
        if not source.is_file():
            broken.append(path)
        elif name and not re.search(
            rf"^\s*(?:async\s+)?(?:def|class)\s+{name.split('.')[-1]}\b|^{name}\s*[:=]",
            source.read_text(),
            re.MULTILINE,
        ):
            broken.append(f"{path}:{name}")
    assert broken == []
