"""`python -m deploy.migrate <service>`: run one service's migrations (a Kubernetes Job / compose one-shot).

The database URL comes from `JUHE_<SERVICE>_DATABASE_URL`, the same variable the service reads.
"""

from __future__ import annotations

import sys

from libs.common.migrations import upgrade
from libs.common.services import SERVICES


def main(argv: list[str]) -> int:
    names = argv or list(SERVICES)
    for name in names:
        spec = SERVICES[name]
        settings = spec.settings_class()()
        upgrade(spec.migrations_dir, settings.database_url)
        print(f"{name}: migrated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
