"""Rendered Kubernetes overlays for the deploy tests (no cluster: `kubectl kustomize` renders locally)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from libs.common.services import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
RENDER_TIMEOUT_SECONDS = 120


def render(path: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` (kustomize v5 built in). kubectl is part of this project's machine image; on a host
    without it, install it (e.g. Debian's `kubernetes-client` is too old for kustomize v5 patches)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: tests/deploy renders the overlays with `kubectl kustomize`")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / path)],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"kustomize {path} failed:\n{result.stderr[-3000:]}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, render(f"overlays/{name}")


@pytest.fixture(scope="module")
def prod() -> list[dict[str, Any]]:
    return render("overlays/prod")


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    return render("overlays/dev")


RunModule = Callable[..., subprocess.CompletedProcess[str]]
MODULE_TIMEOUT_SECONDS = 180


@pytest.fixture(scope="session")
def run_module() -> RunModule:
    """`python -m <module> <args>` from the repository root, as a Job, a container or a developer runs it."""

    def run(
        module: str, *args: str, env: dict[str, str] | None = None, timeout: float = MODULE_TIMEOUT_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
