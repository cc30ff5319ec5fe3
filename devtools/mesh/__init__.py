"""The mesh in a box: the Helm chart's pods as processes on one machine, with real Envoy and mTLS.

``make mesh`` (``python -m scripts.mesh``) renders the chart with ``helm template``, takes the
Envoy bootstraps, commands and volume mounts of the auth, chat and edge Deployments from that
rendering, and runs them side by side on this host:

    PostgreSQL (throwaway) <- auth app (127.0.0.1) <- auth sidecar  <-+
                           <- chat app (127.0.0.1) <- chat sidecar <-+- edge Envoy <- CLI, grpcurl
                              chat -> chat sidecar outbound -> auth sidecar (mTLS)

Shared host, not network namespaces: every pod shares the host's loopback, so the only values
changed are addresses (127.0.0.1), ports (free ones, distinct per process) and the directories
the volumes are mounted at. Nothing else of the rendering is changed. Certificates are made
here with the Secrets' layout (tls.crt, tls.key, ca.crt, published the way the kubelet
publishes a Secret volume: a ``..data`` symlink swapped atomically), with the subjects and SANs
of the Secrets the chart renders, all signed by one mesh CA made here.

The same :class:`Mesh` is what tests/mesh starts. Foreground; Ctrl-C (or SIGTERM) stops it all.

Modules, one concern each: ``ports`` (every listener's port), ``values`` (the chart values for
one host), ``pods`` (the rendering made real: containers and volumes), ``volumes`` (publishing
as the kubelet does), ``processes`` (child processes and waiting on them), ``probes`` (health
checks), ``mesh`` (:class:`Mesh` and :func:`run_mesh`), ``cli`` (``make mesh`` itself).
"""

from __future__ import annotations

from devtools.mesh.errors import MeshError
from devtools.mesh.mesh import Mesh, run_mesh
from devtools.mesh.pods import COMPONENTS, ENVOYS, Pod, render_pod
from devtools.mesh.ports import Ports
from devtools.mesh.probes import envoy_stats, healthz_ok, http_get
from devtools.mesh.processes import Child, wait_until
from devtools.mesh.values import shared_host_values

__all__ = [
    "COMPONENTS",
    "ENVOYS",
    "Child",
    "Mesh",
    "MeshError",
    "Pod",
    "Ports",
    "envoy_stats",
    "healthz_ok",
    "http_get",
    "render_pod",
    "run_mesh",
    "shared_host_values",
    "wait_until",
]
