"""Session fixtures of the container tests: the engine, the images (built once per session; the
two service images share their dependency layers) and the default rendering of the chart."""

from __future__ import annotations

import pytest

from devtools.containers import Engine, EngineMissing, find_engine
from devtools.images import BuildError, Images, build_images, pip_ca_bundle
from devtools.tools import find_helm, helm_template, load_docs
from tests.containers.container_support import Doc
from tests.deploy.deploy_support import missing_tool, require


@pytest.fixture(scope="session")
def engine() -> Engine:
    """docker or podman; in CI a missing engine is a failure."""
    try:
        return find_engine()
    except EngineMissing as exc:
        missing_tool(str(exc))
        raise AssertionError("unreachable") from exc


@pytest.fixture(scope="session")
def images(engine: Engine) -> Images:
    """Both service images and the Envoy image, as `make images` builds them."""
    try:
        return build_images(engine, ca_bundle=pip_ca_bundle(), quiet=True)
    except BuildError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def rendering() -> list[Doc]:
    """The chart rendered with its default values."""
    result = helm_template(require(find_helm))
    assert result.returncode == 0, result.stderr
    return load_docs(result.stdout)
