"""The container's CPU and memory limits, read from cgroup files, and the password-hashing
pool sized from them; the client address of a gRPC peer string."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshchat_auth.config import Argon2Parameters, HashingPoolSize
from meshchat_auth.passwords import pool_workers
from meshchat_runtime.clients import peer_address
from meshchat_runtime.resources import ContainerResources, container_resources

GIB = 2**30


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return root


def test_cgroup_v2_limits_count(tmp_path: Path) -> None:
    root = write(tmp_path, {"cpu.max": "150000 100000", "memory.max": str(512 * 2**20)})
    assert container_resources(root) == ContainerResources(1.5, 512 * 2**20)


def test_cgroup_v1_limits_count(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "cpu/cpu.cfs_quota_us": "100000",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": str(GIB),
        },
    )
    assert container_resources(root) == ContainerResources(1.0, GIB)


def test_without_limits_the_machine_counts(tmp_path: Path) -> None:
    root = write(tmp_path, {"cpu.max": "max 100000", "memory.max": "max"})
    machine = container_resources(tmp_path / "nothing here")
    assert container_resources(root) == machine
    assert machine.cpus >= 1
    assert machine.memory_bytes > 0


@pytest.mark.parametrize(
    ("cpus", "memory", "workers"),
    [
        (1.0, GIB, 1),  # one CPU: one worker beside the event loop
        (2.0, GIB, 1),
        (4.0, GIB, 3),
        (8.0, 64 * 2**20, 1),  # 32 MiB for hashing hold one 19 MiB hash
        (16.0, 100 * 2**20, 2),
    ],
)
def test_the_pool_leaves_a_cpu_to_the_loop_and_fits_half_the_memory(
    cpus: float, memory: int, workers: int
) -> None:
    resources = ContainerResources(cpus, memory)
    assert pool_workers(HashingPoolSize(), resources, Argon2Parameters()) == workers
    assert pool_workers(HashingPoolSize(workers=7), resources, Argon2Parameters()) == 7


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.1.2.3:50000", "10.1.2.3"),
        ("ipv6:[::1]:50000", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
    ],
)
def test_peer_addresses(peer: str, address: str) -> None:
    assert peer_address(peer) == address
