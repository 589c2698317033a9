"""The heads of a migrations folder, cached by its listing (libs/common/migrations.py `script_heads`): the launcher
reads them at every start to leave a database already at head alone (docs/performance.md, "Fifth pass")."""

from __future__ import annotations

import json
from pathlib import Path

from libs.common.migrations import script_heads

REVISION = """revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
"""


def _revision(folder: Path, rev: str, down: str | None) -> None:
    (folder / "versions" / f"{rev}_step.py").write_text(REVISION.format(rev=rev, down=repr(down)))


def test_heads_are_read_again_when_the_folder_changes_and_cached_while_it_does_not(tmp_path: Path) -> None:
    folder, cache = tmp_path / "migrations", tmp_path / "migration-heads.json"
    (folder / "versions").mkdir(parents=True)
    _revision(folder, "0001", None)
    _revision(folder, "0002", "0001")
    assert script_heads(folder) == {"0002"}
    assert script_heads(folder, cache) == {"0002"}

    # Unchanged listing: the cache answers (a planted head proves Alembic was not asked).
    planted = json.loads(cache.read_text())
    planted[str(folder.resolve())]["heads"] = ["planted"]
    cache.write_text(json.dumps(planted))
    assert script_heads(folder, cache) == {"planted"}

    _revision(folder, "0003", "0002")  # a new revision: the listing changed, the heads are read again
    assert script_heads(folder, cache) == {"0003"}
    assert script_heads(folder, cache) == {"0003"}

    cache.write_text("{not json")  # a damaged cache is read past, then rewritten
    assert script_heads(folder, cache) == {"0003"}
    assert json.loads(cache.read_text())[str(folder.resolve())]["heads"] == ["0003"]
