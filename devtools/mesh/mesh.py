"""The mesh on this host: PostgreSQL, the apps, their Envoy sidecars and the edge Envoy, started
in order, waited on until healthy, and stopped in reverse order."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from devtools.certs import CertificateAuthority, Leaf
from devtools.mesh.errors import MeshError
from devtools.mesh.pods import COMPONENTS, ENVOYS, Pod, render_pod
from devtools.mesh.ports import Ports
from devtools.mesh.probes import SERVING, answering, healthz_ok, http_get
from devtools.mesh.processes import Child, start_child, wait_until
from devtools.mesh.values import chart_values
from devtools.mesh.volumes import publish_volume
from devtools.paths import VENV_BIN
from devtools.postgres import ThrowawayPostgres, throwaway_postgres
from devtools.processes import health_stub
from devtools.tools import RELEASE, Doc, find_envoy, find_helm

__all__ = ["Mesh", "mesh_ca", "run_mesh"]

# How long each step of starting may take, in seconds.
START_DEADLINE = 60

# The CLI commands `make mesh` suggests, after the export line.
WALK_THROUGH = ("register alice", "login alice", "create chat general", "connect general")


def mesh_ca() -> CertificateAuthority:
    """A new CA for the mesh's certificates."""
    return CertificateAuthority(f"{RELEASE} mesh CA")


@dataclass
class Mesh:
    """PostgreSQL, auth and chat behind their Envoy sidecars, and the edge Envoy, on this host.
    Use :func:`run_mesh`, or :meth:`start` and :meth:`stop`."""

    workdir: Path
    edge_port: int = 0
    values: Doc = field(default_factory=dict)
    ca: CertificateAuthority = field(default_factory=mesh_ca)
    ports: Ports = field(init=False)
    hosts: dict[str, str] = field(init=False)
    pods: dict[str, Pod] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    databases: dict[str, str] = field(default_factory=dict)
    postgres: ThrowawayPostgres | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        self.ports = Ports.free(self.edge_port)
        ingress = chart_values()["ingress"]
        self.hosts = {
            "main": ingress["host"],
            "auth": ingress["authHost"],
            "chat": ingress["chatHost"],
        }

    @property
    def logs(self) -> Path:
        """The directory of every process's log."""
        return self.workdir / "logs"

    @property
    def edge_address(self) -> str:
        """The edge listener, HOST:PORT: where clients connect."""
        return f"127.0.0.1:{self.ports.edge}"

    @property
    def ca_file(self) -> Path:
        """The CA that clients trust (ca.crt of the edge's client TLS Secret)."""
        return self.pods["edge"].mesh_certs.parent / "client-tls" / "ca.crt"

    def identity(self, envoy: str) -> str:
        """The SAN identity in the mesh certificate of an Envoy (auth, chat, edge)."""
        return self.pods[envoy].identity

    def admin_port(self, envoy: str) -> int:
        """The admin port of an Envoy (auth, chat, edge)."""
        return self.ports.component(envoy)["admin"]

    def meshchat_command(self) -> list[str]:
        """The CLI pointed at the edge; append a command (register, login, ...)."""
        return [
            str(VENV_BIN / "meshchat"),
            "--server",
            self.edge_address,
            "--ca-file",
            str(self.ca_file),
            "--server-name",
            self.hosts["main"],
        ]

    def cli_environment(self) -> dict[str, str]:
        """The variables that point the CLI at the edge, as :meth:`meshchat_command`'s flags do."""
        return {
            "MESHCHAT_SERVER": self.edge_address,
            "MESHCHAT_CA_FILE": str(self.ca_file),
            "MESHCHAT_SERVER_NAME": self.hosts["main"],
        }

    def export_line(self) -> str:
        """One shell line that sets :meth:`cli_environment` in a terminal."""
        variables = self.cli_environment().items()
        return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables)

    def grpcurl_command(self, component: str) -> list[str]:
        """grpcurl at one service through the edge (by its host name); append list, describe..."""
        return [
            str(VENV_BIN / "grpcurl"),
            "-cacert",
            str(self.ca_file),
            "-authority",
            self.hosts[component],
            self.edge_address,
        ]

    def edge_channel(self, host: str) -> grpc.Channel:
        """A gRPC channel to the edge, verifying its certificate, for one of its host names."""
        credentials = grpc.ssl_channel_credentials(self.ca.pem)
        options = (("grpc.ssl_target_name_override", host), ("grpc.default_authority", host))
        return grpc.secure_channel(self.edge_address, credentials, options)

    def health_through_edge(self, component: str) -> int | None:
        """grpc.health.v1 of a service through the edge and its sidecar, or None."""
        with self.edge_channel(self.hosts[component]) as channel:
            try:
                reply = health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return None
        return int(reply.status)

    def serving_through_edge(self, component: str) -> bool:
        """Whether a service answers SERVING through the edge and its sidecar."""
        return self.health_through_edge(component) == SERVING

    def envoy_stats(self, envoy: str) -> dict[str, int]:
        """The counters and gauges of an Envoy's admin interface."""
        status, body = http_get(self.admin_port(envoy), "/stats?format=json")
        if status != 200:
            raise MeshError(f"the admin interface of {envoy} answered {status}")
        return {
            stat["name"]: stat["value"]
            for stat in json.loads(body)["stats"]
            if isinstance(stat.get("value"), int)
        }

    def rotate_certificate(self, envoy: str) -> Leaf:
        """Issue a new mesh certificate (same subject and SANs) for an Envoy and publish it into
        its mounted directory, as the kubelet does when the Secret changes."""
        pod = self.pods[envoy]
        common_name, sans = pod.tls_subjects[pod.mesh_certs]
        leaf = self.ca.issue(common_name, sans)
        publish_volume(
            pod.mesh_certs,
            {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": self.ca.pem},
            0o600,
        )
        return leaf

    # --- starting and stopping ---

    def start(self) -> None:
        """Render, materialise, start everything and wait until it is healthy."""
        helm, envoy = find_helm(), find_envoy()
        self.logs.mkdir(parents=True, exist_ok=True)
        for component in ENVOYS:
            self.pods[component] = render_pod(
                helm, component, self.ports, self.workdir / component, self.ca, self.values
            )
        self.postgres = self._stack.enter_context(throwaway_postgres())
        for component in COMPONENTS:
            self.databases[component] = self.postgres.create_database(component)
        for component in COMPONENTS:
            self._start_app(component)
        # Each app answers first; chat turns SERVING only once it has the auth service's keys,
        # which it fetches through its sidecar, so SERVING is awaited through the edge below.
        for component in COMPONENTS:
            address = f"127.0.0.1:{self.ports.component(component)['app']}"
            self._wait(functools.partial(answering, address), f"{component} to answer on {address}")
        for component in ENVOYS:
            args = [str(envoy), *self.pods[component].containers["envoy"]["args"]]
            name = f"{component}-envoy"
            self.children[name] = start_child(
                name, args, os.environ, self.workdir / component, self.logs
            )
        for component in ENVOYS:
            port = self.ports.component(component)["health"]
            self._wait(functools.partial(healthz_ok, port), f"the {component} Envoy's /healthz")
        for component in COMPONENTS:
            self._wait(
                functools.partial(self.serving_through_edge, component),
                f"{component} to be SERVING through the edge",
            )

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        wait_until(condition, what, START_DEADLINE, self.children)

    def _start_app(self, component: str) -> None:
        container = self.pods[component].containers[component]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCHAT_")}
        for variable in container["env"]:
            if variable["name"] == "MESHCHAT_DATABASE_URL_FILE":
                # The mounted Secret's file, holding this host's database instead of the cluster's.
                url_file = Path(variable["value"])
                url = self.databases[component].encode()
                publish_volume(url_file.parent, {url_file.name: url}, 0o600)
                env[variable["name"]] = str(url_file)
            elif "value" in variable:
                env[variable["name"]] = str(variable["value"])
            else:
                raise MeshError(f"{component}: no local value for {variable['name']}")
        args = [str(VENV_BIN / f"meshchat-{component}"), *container["args"]]
        self.children[component] = start_child(
            component, args, env, self.workdir / component, self.logs
        )

    def stop(self) -> None:
        """Stop the Envoys, then the apps (SIGTERM by PID, in that order), then PostgreSQL."""
        order = ["edge-envoy", "chat-envoy", "auth-envoy", "chat", "auth"]
        for name in order:
            if name in self.children:
                self.children[name].stop()
        self._stack.close()

    def dead_children(self) -> list[Child]:
        """The processes that have exited."""
        return [child for child in self.children.values() if not child.alive]

    def describe(self) -> str:
        """What runs where, and the commands that reach the edge: one ``export`` line, then the
        CLI and grpcurl (both in .venv/bin) as they are typed with it."""
        lines = [
            "The mesh is up (shared host: every process on 127.0.0.1, distinct ports).",
            f"  edge Envoy (TLS for clients)  {self.edge_address}",
        ]
        for component in COMPONENTS:
            ports = self.ports.component(component)
            lines.append(
                f"  {component}: app 127.0.0.1:{ports['app']}, sidecar mTLS 127.0.0.1:"
                f"{ports['inbound']}, health :{ports['health']}/healthz, "
                f"metrics :{ports['metrics']}/metrics and /stats/prometheus"
            )
        lines += [
            f"  logs: {self.logs}",
            "",
            "In each terminal (with .venv/bin on PATH), point the CLI at the edge:",
            f"  {self.export_line()}",
            "then:",
            *(f"  meshchat {command}" for command in WALK_THROUGH),
            "grpcurl through the edge (reflection and health, one host name per service):",
        ]
        for component in COMPONENTS:
            authority = shlex.quote(self.hosts[component])
            lines.append(
                f'  grpcurl -cacert "$MESHCHAT_CA_FILE" -authority {authority} '
                '"$MESHCHAT_SERVER" list'
            )
        lines += ["", "Ctrl-C stops everything."]
        return "\n".join(lines)


@contextlib.contextmanager
def run_mesh(
    workdir: Path | None = None, edge_port: int = 0, values: Doc | None = None
) -> Iterator[Mesh]:
    """A started :class:`Mesh` (the chart rendered with ``values`` laid over the host's own);
    stopped (and a temporary ``workdir`` removed) on exit."""
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="meshchat-mesh-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    mesh = Mesh(root, edge_port, values or {})
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
