"""`make mesh-pods`: the Helm chart's pods as podman pods on one machine, each with its own
address on a podman network, the sidecar and the app sharing the pod's network namespace, and the
cluster's Service names as DNS aliases, so that the rendered Envoy configurations bind and connect
exactly as in a cluster. See docs/mesh.md for what is and is not rehearsed."""

from __future__ import annotations

from devtools.pods.engine import PodsUnavailable
from devtools.pods.mesh import PodMesh, run_pod_mesh

__all__ = ["PodMesh", "PodsUnavailable", "run_pod_mesh"]
