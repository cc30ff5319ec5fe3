"""Run a container of a rendered pod with podman or docker as the chart declares it: the pod's and
the container's security context, its environment, and its volumes (emptyDir as tmpfs, Secrets and
ConfigMaps of the rendering as read-only files). A field of the security context or of a volume
that has no translation here is an error, so the chart cannot gain one that the test ignores."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.containers import Engine

__all__ = [
    "Container",
    "RunSpec",
    "Unsupported",
    "environment",
    "pod_container",
    "security_context",
    "security_flags",
    "volume_flags",
]

Doc = dict[str, Any]

# Pod-level fields a container inherits unless it sets them itself.
INHERITED = ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")
POD_FIELDS = frozenset({*INHERITED, "fsGroup", "fsGroupChangePolicy"})
CONTAINER_FIELDS = frozenset(
    {*INHERITED, "allowPrivilegeEscalation", "privileged", "readOnlyRootFilesystem", "capabilities"}
)
# seccompProfile.type -> the engine's flags. RuntimeDefault is the engine's default profile
# (podman's /usr/share/containers/seccomp.json, docker's built-in one): no flag.
SECCOMP = {"RuntimeDefault": (), "Unconfined": ("--security-opt", "seccomp=unconfined")}
# Kubernetes quantity suffixes -> tmpfs size suffixes.
SIZES = {"Ki": "k", "Mi": "m", "Gi": "g"}


class Unsupported(ValueError):
    """A part of the pod spec that has no translation to the container engine."""


def pod_container(docs: list[Doc], workload: str, container: str) -> tuple[Doc, Doc]:
    """The pod spec of the Deployment ``workload`` and its container named ``container``."""
    for doc in docs:
        if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == workload:
            spec: Doc = doc["spec"]["template"]["spec"]
            for candidate in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                if candidate["name"] == container:
                    return spec, candidate
    raise KeyError(f"no container {container} in Deployment/{workload}")


def security_context(pod_spec: Doc, container: Doc) -> Doc:
    """The container's effective security context: the pod's inherited fields, overridden by
    its own."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    for where, fields, allowed in (("pod", pod, POD_FIELDS), ("container", own, CONTAINER_FIELDS)):
        unknown = set(fields) - allowed
        if unknown:
            raise Unsupported(f"{where} securityContext fields without a translation: {unknown}")
    return {**{key: pod[key] for key in INHERITED if key in pod}, **own}


def security_flags(engine: Engine, pod_spec: Doc, container: Doc) -> list[str]:
    """The engine's flags for the container's security context."""
    context = security_context(pod_spec, container)
    user, group = context.get("runAsUser"), context.get("runAsGroup")
    if user is None or group is None:
        raise Unsupported("the container has no runAsUser and runAsGroup")
    if context.get("runAsNonRoot") and user == 0:
        raise Unsupported("runAsNonRoot with runAsUser 0")
    flags = ["--user", f"{user}:{group}"]
    fs_group = (pod_spec.get("securityContext") or {}).get("fsGroup")
    if fs_group is not None:
        flags += ["--group-add", str(fs_group)]
    if context.get("readOnlyRootFilesystem"):
        flags += engine.read_only_flags
    capabilities = context.get("capabilities") or {}
    if set(capabilities) - {"drop", "add"}:
        raise Unsupported(f"capabilities fields: {sorted(capabilities)}")
    flags += [f"--cap-drop={cap}" for cap in capabilities.get("drop", [])]
    flags += [f"--cap-add={cap}" for cap in capabilities.get("add", [])]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if context.get("privileged"):
        flags.append("--privileged")
    seccomp = (context.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp not in SECCOMP:
        raise Unsupported(f"seccompProfile type {seccomp}")
    return flags + list(SECCOMP[seccomp])


def _tmpfs_size(quantity: str) -> str:
    for suffix, tmpfs in SIZES.items():
        if quantity.endswith(suffix):
            return quantity.removesuffix(suffix) + tmpfs
    if quantity.isdigit():
        return quantity
    raise Unsupported(f"emptyDir sizeLimit {quantity}")


def _data(docs: list[Doc], kind: str, name: str) -> dict[str, bytes]:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            if kind == "Secret":
                encoded = doc.get("data") or {}
                plain = {k: v.encode() for k, v in (doc.get("stringData") or {}).items()}
                return {**{k: base64.b64decode(v) for k, v in encoded.items()}, **plain}
            return {k: v.encode() for k, v in (doc.get("data") or {}).items()}
    raise KeyError(f"{kind}/{name} is not in the rendering")


def _write_files(directory: Path, files: Mapping[str, bytes], mode: int, group: int | None) -> None:
    """The files of a Secret or ConfigMap volume, as the kubelet writes them: ``mode``, and
    owned by the fsGroup (as root only; otherwise readable by everyone instead)."""
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        if group is not None and os.geteuid() == 0:
            os.chown(path, 0, group)
            path.chmod(mode)
        else:
            path.chmod(mode | 0o444)


def volume_flags(docs: list[Doc], pod_spec: Doc, container: Doc, workdir: Path) -> list[str]:
    """The engine's flags for the container's volume mounts; Secret and ConfigMap files are
    written under ``workdir``."""
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    fs_group = (pod_spec.get("securityContext") or {}).get("fsGroup")
    flags: list[str] = []
    for mount in container.get("volumeMounts", []):
        if set(mount) - {"name", "mountPath", "readOnly"}:
            raise Unsupported(f"volumeMount fields: {sorted(mount)}")
        volume, path = volumes[mount["name"]], mount["mountPath"]
        if "emptyDir" in volume:
            options = ["rw", "mode=0777"]
            if "sizeLimit" in (volume["emptyDir"] or {}):
                options.append(f"size={_tmpfs_size(volume['emptyDir']['sizeLimit'])}")
            flags += ["--tmpfs", f"{path}:{','.join(options)}"]
            continue
        kind = "Secret" if "secret" in volume else "ConfigMap" if "configMap" in volume else None
        if kind is None:
            raise Unsupported(f"volume {volume['name']}: {sorted(volume)}")
        source = volume["secret" if kind == "Secret" else "configMap"]
        if set(source) - {"secretName", "name", "defaultMode"}:
            raise Unsupported(f"volume {volume['name']}: {sorted(source)}")
        files = _data(docs, kind, source.get("secretName") or source["name"])
        directory = workdir / mount["name"]
        _write_files(directory, files, source.get("defaultMode", 0o644), fs_group)
        flags += ["--volume", f"{directory}:{path}:{'ro' if mount.get('readOnly') else 'rw'}"]
    return flags


def environment(docs: list[Doc], container: Doc, overrides: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: its values, and Secret keys it refers to, from the
    rendering; then ``overrides``."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = _data(docs, "Secret", ref["name"])[ref["key"]].decode()
        else:
            raise Unsupported(f"env {entry['name']}: {entry}")
    return {**env, **overrides}


@dataclass(frozen=True)
class RunSpec:
    """What ``Container.start`` runs: an image with flags and arguments."""

    name: str
    image: str
    flags: tuple[str, ...]
    args: tuple[str, ...]


@dataclass(frozen=True)
class Container:
    """A started container."""

    engine: Engine
    name: str

    @classmethod
    def start(cls, engine: Engine, spec: RunSpec) -> Container:
        """Start ``spec`` detached."""
        engine.run("run", "--detach", "--name", spec.name, *spec.flags, spec.image, *spec.args)
        return cls(engine, spec.name)

    def published(self, port: int) -> str:
        """HOST:PORT where the container's ``port`` is published."""
        lines = self.engine.run("port", self.name, f"{port}/tcp").stdout.split()
        return lines[0].replace("0.0.0.0:", "127.0.0.1:")

    def ip_address(self) -> str:
        """The container's address on its network."""
        result = self.engine.run("inspect", "--format", "{{.NetworkSettings.IPAddress}}", self.name)
        return result.stdout.strip()

    def running(self) -> bool:
        """Whether it still runs."""
        result = self.engine.run(
            "inspect", "--format", "{{.State.Running}}", self.name, check=False
        )
        return result.stdout.strip() == "true"

    def logs(self) -> str:
        """What it wrote to stdout and stderr."""
        result = self.engine.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in it, under its security context, as its user or ``user``."""
        as_user = ("--user", user) if user is not None else ()
        return self.engine.run("exec", *as_user, self.name, *command, check=False)

    def remove(self) -> None:
        """Stop it (SIGTERM, SIGKILL after 2 s) and remove it."""
        self.engine.run("stop", "--time", "2", self.name, check=False)
        self.engine.run("rm", "--force", self.name, check=False)

    def wait_serving(self, address: str, deadline: float = 60.0) -> None:
        """Return once ``address`` reports SERVING; fail when the container stops first."""
        end = time.monotonic() + deadline
        serving = health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < end:
                if not self.running():
                    raise AssertionError(f"{self.name} stopped:\n{self.logs()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == serving:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)  # polling interval of a condition with a deadline
        raise AssertionError(f"{self.name} was not SERVING within {deadline} s:\n{self.logs()}")
