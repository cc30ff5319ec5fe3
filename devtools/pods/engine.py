"""Podman as `make mesh-pods` needs it: the project's podman (devtools.containers: runc, cgroupfs,
explicit ulimits), and a containers.conf whose default ulimits also reach the containers podman
makes itself (each pod's infra container, which holds the pod's network namespace), since the
machine refuses podman's own defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from devtools.containers import Engine, EngineMissing, find_engine, podman_ulimits

__all__ = ["PodsUnavailable", "pod_engine"]


class PodsUnavailable(RuntimeError):
    """Pods cannot run here (no podman); the message says why."""


def pod_engine(workdir: Path) -> Engine:
    """Podman, with a containers.conf in ``workdir`` giving every container the ulimits."""
    try:
        engine = find_engine({"MESHCHAT_CONTAINER_ENGINE": "podman"})
    except EngineMissing as exc:
        raise PodsUnavailable(f"make mesh-pods needs podman (pods): {exc}") from exc
    limits = ", ".join(f'"{name}={soft}:{hard}"' for name, soft, hard in podman_ulimits())
    conf = workdir / "containers.conf"
    conf.write_text(f"[containers]\ndefault_ulimits = [{limits}]\n")
    environment = {**engine.environment, "CONTAINERS_CONF": str(conf)}
    return dataclasses.replace(engine, environment=environment)
