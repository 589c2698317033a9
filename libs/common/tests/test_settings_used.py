"""Every setting does something: a field no code reads is a trap (an operator sets it, nothing changes).

Issue 13 item 9: `outbox_shard_count` (8) sat in the shared settings while the outbox used 16 shards. The
check is textual (the field is read as `.<name>` somewhere in the service's or the platform's code, its own
validators included); a setting meant for later belongs in a design note, not in the settings class.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from libs.common.services import REPO_ROOT
from libs.common.settings import ServiceSettings
from services.ledger.config import Settings as LedgerSettings
from services.routing.config import Settings as RoutingSettings

# Where a setting can be read: the platform (libs, the launcher) and each service's own package.
CODE_ROOTS = ("libs", "deploy", "services", "gateway")


def code_text() -> str:
    files = [
        path
        for root in CODE_ROOTS
        for path in (REPO_ROOT / root).rglob("*.py")
        if "tests" not in path.parts and path.name != "settings.py" and "testing" not in path.parts
    ]
    return "\n".join(Path(path).read_text(encoding="utf-8") for path in files)


def own_fields(settings_class: type[BaseSettings]) -> list[str]:
    inherited = set(ServiceSettings.model_fields) if settings_class is not ServiceSettings else set()
    return sorted(set(settings_class.model_fields) - inherited)


@pytest.mark.parametrize("settings_class", [ServiceSettings, LedgerSettings, RoutingSettings])
def test_every_setting_is_read_by_some_code(settings_class: type[BaseSettings]) -> None:
    text = code_text()
    unread = [name for name in own_fields(settings_class) if not re.search(rf"\.{name}\b", text)]
    assert unread == [], f"{settings_class.__module__}: settings no code reads: {unread}"
