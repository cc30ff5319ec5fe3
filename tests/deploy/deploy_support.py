"""Shared helpers of the deployment checks: a missing tool as a skip (or, in CI, a failure), the
value combinations the chart is rendered with, and small readers of the rendered manifests. The
tools are located and the chart rendered by devtools.tools."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.paths import CHART, REPO_ROOT
from devtools.tools import NAMESPACE, Doc, ToolMissing, helm_template, load_docs

__all__ = [
    "CHART",
    "COMBINATIONS",
    "CRD_KINDS",
    "ENVOY_GATEWAY_PROXIES",
    "NAMESPACE",
    "RENDER_ONLY",
    "REPO_ROOT",
    "Doc",
    "Rendering",
    "hardening_problems",
    "helm_template",
    "in_ci",
    "load_docs",
    "missing_tool",
    "pod_specs",
    "require",
    "run",
    "shared_dir",
    "skaffold_schema",
]

# Kinds that kubernetes-validate has no schema for (CRDs of cert-manager, Gateway API,
# prometheus-operator and CloudNativePG).
CRD_KINDS = frozenset(
    {
        "Certificate",
        "Issuer",
        "Gateway",
        "GRPCRoute",
        "BackendTLSPolicy",
        "Cluster",
        "Database",
        "PodMonitor",
        "ServiceMonitor",
        "PrometheusRule",
    }
)


def _checkout_roots() -> list[Path]:
    """This checkout's root, then, for a git worktree, the root of the main checkout."""
    roots = [REPO_ROOT]
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    main = Path(common.stdout.strip()).parent if common.returncode == 0 else REPO_ROOT
    if main != REPO_ROOT:
        roots.append(main)
    return roots


def shared_dir() -> Path:
    """The `shared` directory beside the repository (schemas, CRDs), or beside the main checkout
    when this is a git worktree; the first candidate when neither exists."""
    candidates = [root.parent / "shared" for root in _checkout_roots()]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def skaffold_schema() -> Path:
    """skaffold's v4beta14 JSON schema, from the shared directory."""
    return shared_dir() / "schemas" / "skaffold-v4beta14.json"


def in_ci() -> bool:
    """Whether this is a CI run, where a missing tool is a failure, never a skip."""
    return os.environ.get("CI", "").lower() == "true"


def missing_tool(message: str) -> None:
    """Fail (in CI) or skip (elsewhere) because a tool is missing."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing tool is a failure)")
    pytest.skip(message)


def require(find: Callable[[], Path]) -> Path:
    """The tool that ``find`` (one of devtools.tools' finders) locates; a skip, or in CI a
    failure, when it is missing."""
    try:
        return find()
    except ToolMissing as exc:
        missing_tool(str(exc))
        raise AssertionError("unreachable") from exc


def run(args: Sequence[str | Path], *, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool without raising on failure; the caller asserts on the result."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


# Each meaningful combination of values is rendered once per session.
_SHARED_HOST_PORTS: dict[str, Any] = {
    # As issue 6's "shared host" would set them: both sidecars on one machine, distinct ports.
    "auth": {
        "sidecar": {
            "inbound": {"address": "127.0.0.1", "port": 18443},
            "health": {"address": "127.0.0.1", "port": 18081},
            "metrics": {"address": "127.0.0.1", "port": 19090},
            "admin": {"address": "127.0.0.1", "port": 19901},
        }
    },
    "chat": {
        "listen": {"address": "127.0.0.1", "port": 50052},
        "sidecar": {
            "inbound": {"address": "127.0.0.1", "port": 28443},
            "health": {"address": "127.0.0.1", "port": 28081},
            "metrics": {"address": "127.0.0.1", "port": 29090},
            "admin": {"address": "127.0.0.1", "port": 29901},
            "outbound": {"address": "127.0.0.1", "port": 25001},
            "authUpstream": {"address": "127.0.0.1", "port": 18443},
        },
    },
    "edge": {
        "enabled": True,
        "listener": {"address": "127.0.0.1", "port": 38443},
        "health": {"address": "127.0.0.1", "port": 38081},
        "metrics": {"address": "127.0.0.1", "port": 39090},
        "admin": {"address": "127.0.0.1", "port": 39901},
        "upstreams": {
            "auth": {"address": "127.0.0.1", "port": 18443},
            "chat": {"address": "127.0.0.1", "port": 28443},
        },
        "tlsDir": "/srv/mesh/edge-tls",
    },
    "mesh": {"envoy": {"configDir": "/srv/mesh/envoy", "certDir": "/srv/mesh/certs"}},
}

# Envoy Gateway's proxy pods, in its own namespace.
ENVOY_GATEWAY_PROXIES: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
    "podSelector": {
        "matchLabels": {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy"}
    },
}

# Values that name existing Secrets for everything the chart would otherwise generate.
RENDER_ONLY: dict[str, Any] = {
    "certManager": {"enabled": True, "existingCaSecret": "mesh-ca"},
    "auth": {"jwt": {"existingSecret": "jwt-keys"}},
    "postgresql": {"existingSecret": "pg-passwords"},
}

COMBINATIONS: dict[str, dict[str, Any]] = {
    # Chart-generated certificates, the edge Envoy, bundled PostgreSQL, chat autoscaled from 1.
    "default": {},
    # The opt-in ingress-nginx with its configuration snippet (the client certificate).
    "ingress-nginx": {"ingress": {"enabled": True}, "edge": {"enabled": False}},
    "cert-manager": {"certManager": {"enabled": True}},
    "cert-manager-cluster-issuer": {
        "certManager": {
            "enabled": True,
            "issuerRef": {"name": "mesh-issuer", "kind": "ClusterIssuer"},
        },
        "ingress": {"tls": {"existingSecret": "public-tls"}},
    },
    "gateway-api": {
        "edge": {"enabled": False},
        "gateway": {"enabled": True, "gatewayClassName": "envoy-gateway"},
        "networkPolicy": {
            "gatewayPeers": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}}}
            ]
        },
    },
    "gateway-api-cert-manager": {
        "certManager": {"enabled": True},
        "edge": {"enabled": False},
        "gateway": {
            "enabled": True,
            "create": False,
            "parentRefs": [{"name": "shared", "namespace": "gateways", "sectionName": "https"}],
            "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "mesh-ca-bundle"}],
        },
        "networkPolicy": {"gatewayPeers": [ENVOY_GATEWAY_PROXIES]},
    },
    "external-database": {
        "postgresql": {"enabled": False},
        "externalDatabase": {
            "host": "pg.db.svc.cluster.local",
            "sslMode": "verify-full",
            "auth": {"password": "s3cret/with:chars"},
            "chat": {"existingSecret": "chat-database", "existingSecretKey": "uri"},
        },
        "networkPolicy": {"externalDatabasePeers": [{"ipBlock": {"cidr": "10.20.0.5/32"}}]},
    },
    # PostgreSQL as a CloudNativePG Cluster of three instances.
    "cloudnativepg": {"postgresql": {"enabled": False}, "cloudnativePg": {"enabled": True}},
    "chat-one-replica": {"chat": {"autoscaling": {"enabled": False}, "replicaCount": 1}},
    "chat-three-replicas": {
        "auth": {"replicaCount": 3, "pdb": {"minAvailable": 2, "maxUnavailable": ""}},
        "chat": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    },
    "chat-autoscaled-three": {
        "chat": {
            "autoscaling": {
                "minReplicas": 3,
                "maxReplicas": 9,
                "targetMemoryUtilizationPercentage": 80,
            }
        }
    },
    "edge-envoy": {
        "edge": {"service": {"type": "NodePort", "nodePort": 30443}},
        "networkPolicy": {"metricsPeers": [{"namespaceSelector": {}}]},
    },
    # Every monitoring object and tracing to a collector (docs/observability.md).
    "observability": {
        "ingress": {"enabled": False},
        "edge": {"enabled": True},
        "metrics": {
            "monitoringNamespace": "monitoring",
            "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "runbookBaseUrl": "https://docs.example/o11y"},
            "dashboard": {"enabled": True, "annotations": {"grafana_folder": "meshchat"}},
        },
        "tracing": {"collector": {"address": "otel-collector.monitoring"}, "samplingRatio": 0.25},
        "networkPolicy": {
            "extraEgress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                            }
                        }
                    ],
                    "ports": [{"port": 4317, "protocol": "TCP"}],
                }
            ]
        },
    },
    # What `helm template`, `skaffold render` or Argo CD need (no lookup): nothing secret rendered.
    "render-only": RENDER_ONLY,
    # Where issue 6 runs the mesh on one machine: every address and port changed by values.
    "shared-host-ports": _SHARED_HOST_PORTS,
}


@dataclass
class Rendering:
    """One `helm template` output."""

    name: str
    path: Path
    docs: list[Doc] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Doc]:
        """Documents of one kind."""
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind: str, name: str) -> Doc:
        """The one document of this kind and name."""
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name} not in rendering {self.name}")


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(kind/name, pod spec) of every workload in a rendering."""
    for doc in docs:
        kind = doc.get("kind")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{kind}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"]


def hardening_problems(docs: list[Doc]) -> list[str]:
    """What keeps the workloads from the "restricted" Pod Security Standard, a read-only root
    file system, and requests and limits on every container (init and sidecar included)."""
    problems: list[str] = []
    for where, spec in pod_specs(docs):
        pod_sc = spec.get("securityContext") or {}
        if pod_sc.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if (pod_sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{where}: {flag} is set")
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                problems.append(f"{where}: hostPath volume {volume['name']}")
        containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
        for container in containers:
            cname = f"{where}/{container['name']}"
            sc = container.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cname}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{cname}: privileged")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cname}: readOnlyRootFilesystem is not true")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                problems.append(f"{cname}: capabilities.drop is not [ALL]")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{cname}: capabilities are added")
            if sc.get("runAsUser") == 0:
                problems.append(f"{cname}: runs as root")
            resources = container.get("resources") or {}
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(part) or {}):
                        problems.append(f"{cname}: no {part}.{resource}")
    return problems
