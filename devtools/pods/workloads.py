"""The workloads of a rendering as pods to run: each Deployment's and StatefulSet's pod spec, its
labels, the DNS names the cluster would give it (every Service that selects it, in each form a
pod's resolver accepts), and its containers in the kubelet's order."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from devtools.podspec import Doc, Unsupported

__all__ = ["Workload", "dns_names", "workloads"]

WORKLOAD_KINDS = ("StatefulSet", "Deployment")


@dataclass(frozen=True)
class Workload:
    """One pod of a Deployment or StatefulSet."""

    kind: str
    name: str
    spec: Doc
    labels: dict[str, str]
    claims: tuple[str, ...]
    aliases: tuple[str, ...]

    @property
    def sidecars(self) -> list[Doc]:
        """Native sidecars: init containers with restartPolicy Always (started first)."""
        init = self.spec.get("initContainers", [])
        plain = [c["name"] for c in init if c.get("restartPolicy") != "Always"]
        if plain:
            raise Unsupported(f"{self.name}: init containers that run to completion: {plain}")
        return list(init)

    @property
    def containers(self) -> list[Doc]:
        """The app containers (started once the sidecars are)."""
        return list(self.spec["containers"])

    def container_port(self, target: int | str) -> int:
        """A Service's targetPort in this pod: a number, or the name of a container's port."""
        if isinstance(target, int):
            return target
        for container in [*self.sidecars, *self.containers]:
            for port in container.get("ports", []):
                if port.get("name") == target:
                    return int(port["containerPort"])
        raise Unsupported(f"{self.name}: no container port named {target}")


def dns_names(service: str, namespace: str, cluster_domain: str) -> tuple[str, ...]:
    """The names of a Service: short, with its namespace, ``.svc`` and fully qualified."""
    base = f"{service}.{namespace}"
    return (service, base, f"{base}.svc", f"{base}.svc.{cluster_domain}")


def _selects(service: Doc, labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def workloads(docs: list[Doc], cluster_domain: str = "cluster.local") -> list[Workload]:
    """The rendering's workloads, StatefulSets first (PostgreSQL before its clients). A pod gets
    a Service's names only where the Service's ports are the pod's own (port == targetPort), as
    a DNS alias of the pod's address cannot translate ports; the others (the edge's 443 to 8443,
    a client's way in from outside) are reached as published ports instead."""
    found = [
        Workload(
            kind=doc["kind"],
            name=doc["metadata"]["name"],
            spec=doc["spec"]["template"]["spec"],
            labels=dict(doc["spec"]["template"]["metadata"]["labels"]),
            claims=tuple(
                t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])
            ),
            aliases=(),
        )
        for kind in WORKLOAD_KINDS
        for doc in docs
        if doc.get("kind") == kind
    ]
    services = [doc for doc in docs if doc.get("kind") == "Service"]
    return [dataclasses.replace(w, aliases=_aliases(w, services, cluster_domain)) for w in found]


def _aliases(workload: Workload, services: list[Doc], cluster_domain: str) -> tuple[str, ...]:
    aliases: list[str] = []
    for service in services:
        if not _selects(service, workload.labels):
            continue
        ports = service["spec"]["ports"]
        if all(workload.container_port(p.get("targetPort", p["port"])) == p["port"] for p in ports):
            meta = service["metadata"]
            aliases += dns_names(meta["name"], meta["namespace"], cluster_domain)
    return tuple(aliases)
