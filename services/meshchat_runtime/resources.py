"""The CPU and memory a process may use: the container's cgroup limits (v2, or v1) when
there are any, else the CPUs it may run on and the machine's memory."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CGROUP_ROOT", "ContainerResources", "container_resources", "whole_cpus"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """CPUs (a CFS quota may make it fractional) and memory in bytes."""

    cpus: float
    memory_bytes: int


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_cpus(root: Path) -> float | None:
    v2 = _read(root / "cpu.max")  # "max 100000" or "150000 100000"
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return int(quota) / int(period) if quota != "max" and period else None
    quota_v1 = _read(root / "cpu" / "cpu.cfs_quota_us")
    period_v1 = _read(root / "cpu" / "cpu.cfs_period_us")
    if quota_v1 and period_v1 and int(quota_v1) > 0:
        return int(quota_v1) / int(period_v1)
    return None


def _cgroup_memory(root: Path) -> int | None:
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        text = _read(path)
        if text is not None and text.isdigit():
            return int(text)
    return None


def container_resources(root: Path = CGROUP_ROOT) -> ContainerResources:
    """What this process may use; a cgroup limit counts when it is below the machine's."""
    host_cpus = len(os.sched_getaffinity(0))
    host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus = _cgroup_cpus(root)
    memory = _cgroup_memory(root)
    return ContainerResources(
        cpus=min(host_cpus, cpus) if cpus is not None else float(host_cpus),
        memory_bytes=min(host_memory, memory) if memory is not None else host_memory,
    )


def whole_cpus(resources: ContainerResources) -> int:
    """The CPUs rounded down, at least one."""
    return max(1, math.floor(resources.cpus))
