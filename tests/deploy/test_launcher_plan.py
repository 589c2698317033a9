"""The launcher's plan, without starting anything: which processes it will run and the URLs it hands out."""

from __future__ import annotations

import sys
from pathlib import Path

from libs.common.services import FRONTENDS, REPO_ROOT, SANDBOXES, SERVICES

sys.path.insert(0, str(REPO_ROOT))  # `deploy` is not an installed package (it runs as `python -m deploy.…`)
from deploy.launcher.main import Platform, _runnable_specs


def _planned(tmp_path: Path, replicas: int) -> Platform:
    platform = Platform(data_dir=tmp_path, replicas=replicas)
    platform.plan({name: f"postgresql://unused/{name}" for name in SERVICES}, "127.0.0.1:1")
    return platform


def test_the_sandboxes_share_one_process_and_every_url_is_the_usual_port(tmp_path: Path) -> None:
    platform = _planned(tmp_path, replicas=1)
    hosting = [child for child in platform.children if child.hosts]
    assert len(hosting) == 1 and set(hosting[0].hosts) == {s.name for s in _runnable_specs() if s.name in SANDBOXES}
    assert len(platform.children) == len(SERVICES) + len(FRONTENDS) + 1
    usual = {spec.name: f"http://127.0.0.1:{Platform._port(spec)}" for spec in _runnable_specs()}
    assert platform.urls() == usual


def test_under_replicas_the_urls_are_the_balancers_not_a_replicas(tmp_path: Path) -> None:
    platform = _planned(tmp_path, replicas=2)
    assert len(platform.children) == 4 * len(SERVICES) + len(FRONTENDS) + 1  # 2 API + 2 worker per service
    balanced = {b.name: f"http://127.0.0.1:{b.port}" for b in platform.balancers}
    assert set(balanced) == set(SERVICES)
    assert {name: platform.urls()[name] for name in SERVICES} == balanced
    served = [name for child in platform.children for name in child.urls]  # the summary's rows: one per replica
    assert len(served) == len(set(served)) and "cashier-worker-2" in served and "wechatpay" in served
