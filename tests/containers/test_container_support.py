"""The translation of a pod spec into engine flags: what it maps, and that a field it cannot map
is an error rather than silently dropped (no engine needed)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devtools.containers import ENGINE_ENV, EngineMissing, docker, find_engine, podman
from tests.containers.container_support import (
    Doc,
    Unsupported,
    environment,
    security_flags,
    volume_flags,
)

CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD = {"securityContext": {"runAsNonRoot": True, "fsGroup": 10001, "runAsUser": 1}}


def test_the_charts_context_becomes_engine_flags() -> None:
    flags = security_flags(podman(), POD, {"securityContext": CONTEXT})
    assert flags == [
        "--user", "10001:10001", "--group-add", "10001", "--read-only", "--read-only-tmpfs=false",
        "--cap-drop=ALL", "--security-opt", "no-new-privileges",
    ]  # fmt: skip
    assert "--read-only-tmpfs=false" not in security_flags(
        docker(), POD, {"securityContext": CONTEXT}
    )


def test_the_pods_user_applies_where_the_container_sets_none() -> None:
    pod = {"securityContext": {"runAsUser": 7, "runAsGroup": 8}}
    assert security_flags(docker(), pod, {})[:2] == ["--user", "7:8"]


@pytest.mark.parametrize(
    ("pod", "container"),
    [
        ({}, {"securityContext": {**CONTEXT, "appArmorProfile": {"type": "RuntimeDefault"}}}),
        ({"securityContext": {"sysctls": []}}, {"securityContext": CONTEXT}),
        ({}, {"securityContext": {**CONTEXT, "seccompProfile": {"type": "Localhost"}}}),
        ({}, {"securityContext": {**CONTEXT, "runAsUser": 0}}),
        ({}, {"securityContext": {"readOnlyRootFilesystem": True}}),
    ],
)
def test_what_has_no_translation_is_refused(pod: Doc, container: Doc) -> None:
    with pytest.raises(Unsupported):
        security_flags(podman(), pod, container)


SECRET = {
    "kind": "Secret",
    "metadata": {"name": "keys"},
    "data": {"k.pem": base64.b64encode(b"PEM").decode(), "url": base64.b64encode(b"db").decode()},
}


def test_volumes_become_tmpfs_and_read_only_files(tmp_path: Path) -> None:
    pod = {
        "securityContext": {"fsGroup": 10001},
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "keys", "secret": {"secretName": "keys", "defaultMode": 0o440}},
        ],
    }
    container = {
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "keys", "mountPath": "/keys", "readOnly": True},
        ]
    }
    flags = volume_flags([SECRET], pod, container, tmp_path)
    assert flags == [
        "--tmpfs", "/tmp:rw,mode=0777,size=64m", "--volume", f"{tmp_path / 'keys'}:/keys:ro",
    ]  # fmt: skip
    assert (tmp_path / "keys" / "k.pem").read_bytes() == b"PEM"


def test_a_sub_path_or_a_host_path_is_refused(tmp_path: Path) -> None:
    pod = {"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}
    with pytest.raises(Unsupported):
        volume_flags([], pod, {"volumeMounts": [{"name": "v", "mountPath": "/v"}]}, tmp_path)
    pod = {"volumes": [{"name": "v", "emptyDir": {}}]}
    mount = {"name": "v", "mountPath": "/v", "subPath": "x"}
    with pytest.raises(Unsupported):
        volume_flags([], pod, {"volumeMounts": [mount]}, tmp_path)


def test_the_environment_resolves_secret_keys_then_overrides() -> None:
    container = {
        "env": [
            {"name": "A", "value": "1"},
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "url"}}},
        ]
    }
    assert environment([SECRET], container, {}) == {"A": "1", "URL": "db"}
    assert environment([SECRET], container, {"URL": "other"}) == {"A": "1", "URL": "other"}
    with pytest.raises(Unsupported):
        environment([], {"env": [{"name": "F", "valueFrom": {"fieldRef": {}}}]}, {})


def test_the_engine_is_the_one_named_or_a_clear_error() -> None:
    with pytest.raises(EngineMissing, match="expected one of"):
        find_engine({ENGINE_ENV: "rkt"})
    assert podman().command("run", "x")[:5] == [
        "podman",
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
    ]
    assert "--ulimit" in podman().command("build", ".")
    assert "--ulimit" not in podman().command("inspect", "x")
    assert docker().command("run", "x") == ["docker", "run", "x"]
