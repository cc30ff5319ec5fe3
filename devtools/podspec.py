"""A pod of the chart's rendering as container-engine flags: the pod's and the container's
security context, its environment, and its volumes (emptyDir as tmpfs, Secrets and ConfigMaps of
the rendering as files, volume claims as host directories). A field of the security context or of
a volume that has no translation here is an error, so the chart cannot gain one that the
containers silently ignore. Used by tests/containers and by `make mesh-pods` (devtools.pods)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devtools.containers import Engine

__all__ = [
    "Doc",
    "Unsupported",
    "environment",
    "pod_container",
    "resource_data",
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


def resource_data(docs: list[Doc], kind: str, name: str) -> dict[str, bytes]:
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


def volume_flags(
    docs: list[Doc],
    pod_spec: Doc,
    container: Doc,
    workdir: Path,
    claims: Mapping[str, Path] | None = None,
) -> list[str]:
    """The engine's flags for the container's volume mounts; Secret and ConfigMap files are
    written under ``workdir``; ``claims`` are the host directories of a StatefulSet's volume
    claim templates, by name."""
    claims = claims or {}
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes", [])}
    volumes |= {name: {"name": name, "claim": path} for name, path in claims.items()}
    fs_group = (pod_spec.get("securityContext") or {}).get("fsGroup")
    flags: list[str] = []
    for mount in container.get("volumeMounts", []):
        if set(mount) - {"name", "mountPath", "readOnly"}:
            raise Unsupported(f"volumeMount fields: {sorted(mount)}")
        volume, path = volumes[mount["name"]], mount["mountPath"]
        if "claim" in volume:
            flags += ["--volume", f"{volume['claim']}:{path}:rw"]
            continue
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
        files = resource_data(docs, kind, source.get("secretName") or source["name"])
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
            env[entry["name"]] = resource_data(docs, "Secret", ref["name"])[ref["key"]].decode()
        else:
            raise Unsupported(f"env {entry['name']}: {entry}")
    return {**env, **overrides}
