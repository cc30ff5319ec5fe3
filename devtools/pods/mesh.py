"""The chart's pods as podman pods (`make mesh-pods`): the default rendering, each workload a pod
with its own address on a podman network of its own, the containers of its pod spec under their
security contexts with the chart's ConfigMaps and Secrets mounted at the chart's paths, and the
cluster's Service names as the pods' DNS aliases, so that every Envoy bootstrap binds and
connects exactly as rendered. Only the images (those this machine has, see devtools.pods.images)
and the certificates (re-issued for the rendered subjects by a CA the tests hold) differ from
the rendering."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shlex
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from cryptography import x509
from grpc_health.v1 import health_pb2

from devtools.certs import CertificateAuthority
from devtools.containers import Engine
from devtools.mesh.errors import MeshError
from devtools.mesh.pods import subject_of
from devtools.mesh.probes import SERVING
from devtools.mesh.processes import wait_until
from devtools.mesh.values import chart_values
from devtools.paths import VENV_BIN
from devtools.pods.engine import pod_engine
from devtools.pods.images import pod_images
from devtools.pods.probes import probe_passes
from devtools.pods.workloads import Workload, workloads
from devtools.podspec import Doc, environment, security_flags, volume_flags
from devtools.processes import health_stub
from devtools.tools import RELEASE, find_helm, helm_template, load_docs

__all__ = ["PodMesh", "run_pod_mesh"]

# How long each workload may take to pass its startup probes, in seconds.
START_DEADLINE = 90
# The edge's Service: the way in for clients, whose listener is published on the host.
EDGE = f"{RELEASE}-edge"


def grace_period(workload: Workload) -> str:
    """The seconds a container of the workload gets between SIGTERM and SIGKILL."""
    return str(workload.spec.get("terminationGracePeriodSeconds", 30))


@dataclass
class Pod:
    """A started pod: its workload, its podman name and its address on the network."""

    workload: Workload
    name: str
    address: str = ""

    def container(self, name: str) -> str:
        """The podman name of one of its containers."""
        return f"{self.name}-{name}"


@dataclass
class PodMesh:
    """Every workload of the default rendering as a podman pod. Use :func:`run_pod_mesh`, or
    :meth:`start` and :meth:`stop`."""

    workdir: Path
    edge_port: int = 0
    ca: CertificateAuthority = field(default_factory=lambda: CertificateAuthority("mesh CA"))
    engine: Engine = field(init=False)
    docs: list[Doc] = field(default_factory=list)
    pods: dict[str, Pod] = field(default_factory=dict)
    network: str = field(default_factory=lambda: f"meshchat-pods-{uuid.uuid4().hex[:8]}")
    edge_address: str = ""

    def __post_init__(self) -> None:
        self.engine = pod_engine(self.workdir)

    # --- what the rendering says ---

    def resource(self, kind: str, name: str) -> Doc:
        """A rendered document."""
        for doc in self.docs:
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name} is not in the rendering")

    @property
    def hosts(self) -> dict[str, str]:
        """The ways-in host names: main (routed by gRPC service), auth and chat."""
        ingress = chart_values()["ingress"]
        return {"main": ingress["host"], "auth": ingress["authHost"], "chat": ingress["chatHost"]}

    def identity(self, component: str) -> str:
        """The workload identity (common name) of a component's mesh certificate."""
        name = "ingress" if component == "edge" else component
        secret = self.resource("Secret", f"{RELEASE}-{name}-mesh-tls")
        return subject_of(secret)[0]

    @property
    def ca_file(self) -> Path:
        """The CA that clients trust."""
        return self.workdir / "ca.crt"

    def pod(self, component: str) -> Pod:
        """The pod of a component (auth, chat, edge, postgresql)."""
        return self.pods[f"{RELEASE}-{component}"]

    # --- clients ---

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

    def grpcurl_command(self, component: str) -> list[str]:
        """grpcurl at one service through the edge (by its host name)."""
        return [
            str(VENV_BIN / "grpcurl"),
            "-cacert",
            str(self.ca_file),
            "-authority",
            self.hosts[component],
            self.edge_address,
        ]

    def health_through_edge(self, component: str) -> int | None:
        """grpc.health.v1 of a service through the edge and its sidecar, or None."""
        credentials = grpc.ssl_channel_credentials(self.ca.pem)
        host = self.hosts[component]
        options = (("grpc.ssl_target_name_override", host), ("grpc.default_authority", host))
        with grpc.secure_channel(self.edge_address, credentials, options) as channel:
            try:
                reply = health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return None
        return int(reply.status)

    def serving_through_edge(self, component: str) -> bool:
        """Whether a service answers SERVING through the edge and its sidecar."""
        return self.health_through_edge(component) == SERVING

    def sidecar_address(self, component: str, listener: str) -> tuple[str, int]:
        """Where a component's sidecar listener (inbound, health, metrics) is: its pod's
        address and the port the chart's values give it."""
        port = int(chart_values()[component]["sidecar"][listener]["port"])
        return self.pod(component).address, port

    # --- starting and stopping ---

    def start(self) -> None:
        """Build the images, render, create the network and start the pods in order, each once
        its predecessors passed their startup probes; then wait until the edge serves both."""
        images = pod_images(self.engine)
        self._render(images.values())
        self.engine.run("network", "create", self.network)
        for workload in workloads(self.docs):
            self._start_pod(workload)
        for component in ("auth", "chat"):
            self._wait(
                functools.partial(self.serving_through_edge, component),
                f"{component} to be SERVING through the edge",
            )

    def _render(self, image_values: Doc) -> None:
        helm = find_helm()
        values_file = self.workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(image_values))
        result = helm_template(helm, values_file)
        if result.returncode != 0:
            raise MeshError(f"helm template failed:\n{result.stderr}")
        self.docs = load_docs(result.stdout)
        self._reissue_certificates()

    def _reissue_certificates(self) -> None:
        """Give every TLS Secret a certificate of its rendered subject from :attr:`ca`, whose
        key the tests hold (the chart's generated CA's key stays in its Secret)."""
        for doc in self.docs:
            if doc.get("kind") != "Secret" or doc.get("type") != "kubernetes.io/tls":
                continue
            data = doc["data"]
            certificate = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
            if constraints.value.ca:
                continue  # the CA itself: no pod mounts it
            leaf = self.ca.issue(*subject_of(doc))
            for key, pem in (("tls.crt", leaf.cert_pem), ("tls.key", leaf.key_pem)):
                data[key] = base64.b64encode(pem).decode()
            data["ca.crt"] = base64.b64encode(self.ca.pem).decode()
        self.ca_file.write_bytes(self.ca.pem)

    def _start_pod(self, workload: Workload) -> None:
        pod = Pod(workload, f"{self.network}-{workload.name.removeprefix(f'{RELEASE}-')}")
        args = [
            "--name",
            pod.name,
            "--infra-name",
            f"{pod.name}-infra",
            "--hostname",
            workload.name,
        ]
        args += ["--network", self.network]
        args += [arg for alias in workload.aliases for arg in ("--network-alias", alias)]
        edge_listener = self._edge_listener(workload)
        if edge_listener is not None:
            args += ["--publish", f"127.0.0.1:{self.edge_port or ''}:{edge_listener}"]
        self.engine.run("pod", "create", *args)
        self.pods[workload.name] = pod
        self.engine.run("pod", "start", pod.name)
        pod.address = self._address(pod)
        if edge_listener is not None:
            published = self.engine.run("port", f"{pod.name}-infra", f"{edge_listener}/tcp")
            self.edge_address = published.stdout.split()[0]
        # The kubelet's order: each native sidecar started and past its startup probe, then
        # the app containers.
        claims = self._claims(pod)
        for container in [*workload.sidecars, *workload.containers]:
            self._start_container(pod, container, claims)

    def _claims(self, pod: Pod) -> dict[str, Path]:
        """A host directory per volume claim template, owned by the pod's user and fsGroup."""
        context = pod.workload.spec.get("securityContext") or {}
        user = context.get("runAsUser")
        claims = {}
        for claim in pod.workload.claims:
            directory = self.workdir / pod.name / "claims" / claim
            directory.mkdir(parents=True)
            if os.geteuid() == 0 and user is not None:
                os.chown(directory, int(user), int(context.get("fsGroup", user)))
            directory.chmod(0o700)
            claims[claim] = directory
        return claims

    def _edge_listener(self, workload: Workload) -> int | None:
        """The edge pod's TLS listener (the edge Service's first port's target), else None."""
        service = self.resource("Service", EDGE)
        if not service["spec"]["selector"].items() <= workload.labels.items():
            return None
        return workload.container_port(service["spec"]["ports"][0]["targetPort"])

    def _address(self, pod: Pod) -> str:
        result = self.engine.run(
            "inspect", "--format", "{{json .NetworkSettings.Networks}}", f"{pod.name}-infra"
        )
        networks = json.loads(result.stdout)
        return str(networks[self.network]["IPAddress"])

    def _start_container(self, pod: Pod, container: Doc, claims: dict[str, Path]) -> None:
        workload = pod.workload
        workdir = self.workdir / pod.name / container["name"]
        flags = [
            *security_flags(self.engine, workload.spec, container),
            *volume_flags(self.docs, workload.spec, container, workdir, claims),
            *(
                f"--env={key}={value}"
                for key, value in environment(self.docs, container, {}).items()
            ),
        ]
        name = pod.container(container["name"])
        if "command" in container:
            flags += ["--entrypoint", json.dumps(container["command"])]
        self.engine.run(
            "run",
            "--detach",
            "--pod",
            pod.name,
            "--name",
            name,
            *flags,
            container["image"],
            *container.get("args", []),
        )
        probe = container.get("startupProbe")
        if probe is not None:
            self._wait(
                functools.partial(
                    probe_passes, self.engine, name, pod.address, probe, workload.container_port
                ),
                f"the startup probe of {name}",
            )

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        wait_until(condition, what, START_DEADLINE)

    def stop_container(self, component: str, container: str) -> None:
        """Stop one container (SIGTERM, as the kubelet would), keeping the pod."""
        pod = self.pod(component)
        self.engine.run("stop", "--time", grace_period(pod.workload), pod.container(container))

    def start_container(self, component: str, container: str) -> None:
        """Start a stopped container again, as the kubelet restarts it."""
        self.engine.run("start", self.pod(component).container(container))

    def stop(self) -> None:
        """Stop the pods in reverse order (app containers before their sidecars), remove them
        and the network."""
        for pod in reversed(list(self.pods.values())):
            seconds = grace_period(pod.workload)
            for container in [*pod.workload.containers, *reversed(pod.workload.sidecars)]:
                name = pod.container(container["name"])
                self.engine.run("stop", "--time", seconds, name, check=False)
            self.engine.run("pod", "rm", "--force", pod.name, check=False)
        self.engine.run("network", "rm", "--force", self.network, check=False)

    def describe(self) -> str:
        """What runs where, and the commands that reach the edge."""
        meshchat = shlex.join(self.meshchat_command())
        lines = ["The chart's pods run as podman pods, each with its own address:"]
        for pod in self.pods.values():
            containers = [c["name"] for c in [*pod.workload.sidecars, *pod.workload.containers]]
            lines.append(f"  {pod.workload.name}  {pod.address}  ({', '.join(containers)})")
        lines += [
            f"  edge Envoy (TLS for clients) published on {self.edge_address}",
            "",
            "The CLI through the edge:",
            f"  {meshchat} register alice",
            f"  {meshchat} login alice",
            f"  {meshchat} create chat general",
            f"  {meshchat} connect general",
            "grpcurl through the edge (reflection and health, one host name per service):",
        ]
        for component in ("auth", "chat"):
            lines.append(f"  {shlex.join([*self.grpcurl_command(component), 'list'])}")
        lines += ["", "Ctrl-C stops everything."]
        return "\n".join(lines)


@contextlib.contextmanager
def run_pod_mesh(workdir: Path | None = None, edge_port: int = 0) -> Iterator[PodMesh]:
    """A started :class:`PodMesh`; stopped (and a temporary ``workdir`` removed) on exit."""
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="meshchat-pods-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    try:
        mesh = PodMesh(root, edge_port)
        try:
            mesh.start()
            yield mesh
        finally:
            mesh.stop()
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
