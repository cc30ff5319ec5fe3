"""The chat sidecar's bootstrap, as the chart renders it, run by the real Envoy against a stand-in
for auth's sidecar (TLS with auth's identity) whose first answer to each method is UNAVAILABLE or
CANCELLED, as a stopping pod's is: an idempotent read is tried again and succeeds, a call with side
effects is not repeated (it may have done its work) and fails."""

from __future__ import annotations

import datetime
import functools
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.mesh.probes import http_get
from devtools.mesh.processes import wait_until
from devtools.processes import free_port
from tests.deploy.deploy_support import NAMESPACE, helm_template, load_docs

pytestmark = pytest.mark.deploy

FULLNAME = "meshchat"
IDEMPOTENT = "/meshchat.auth.v1.AccessService/Check"
IDEMPOTENT_CANCELLED = "/meshchat.auth.v1.UserService/GetUser"
WITH_SIDE_EFFECTS = "/meshchat.auth.v1.AuthService/Login"
# The stand-in's first answer to each method: what a stopping pod answers (UNAVAILABLE once it
# refuses calls; CANCELLED for a call it received as it began to stop).
FIRST_ANSWERS = {
    IDEMPOTENT: grpc.StatusCode.UNAVAILABLE,
    IDEMPOTENT_CANCELLED: grpc.StatusCode.CANCELLED,
    WITH_SIDE_EFFECTS: grpc.StatusCode.UNAVAILABLE,
}


def identity(component: str) -> str:
    """A workload's SAN in a rendering of release "meshchat"."""
    return f"{FULLNAME}-{component}.{NAMESPACE}.mesh.internal"


@dataclass(frozen=True)
class Issuer:
    """A throwaway mesh CA."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def new(cls) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mesh CA")])
        cert = (
            _valid_now(x509.CertificateBuilder().subject_name(name).issuer_name(name))
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self, san: str) -> tuple[bytes, bytes]:
        """A certificate (PEM) for ``san`` and its PKCS#8 key (PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _valid_now(x509.CertificateBuilder())
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _valid_now(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


class FlakyAuth:
    """A gRPC server that answers the first call of each method as FIRST_ANSWERS says, later
    ones OK."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _answer(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                first = self.calls[method] == 0
                self.calls[method] += 1
            if first:
                context.abort(FIRST_ANSWERS[method], "the server is stopping")
            return b""

        return answer

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """Raw-bytes handlers of the two methods."""
        by_service: dict[str, dict[str, Any]] = {}
        for path in FIRST_ANSWERS:
            service, method = path.strip("/").split("/")
            handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
                self._answer(path)
            )
            by_service.setdefault(service, {})[method] = handler
        return [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]


@dataclass(frozen=True)
class Sidecar:
    """chat's sidecar, running, and the stand-in for auth behind it."""

    outbound: int
    auth: FlakyAuth


def _loopback(port: int) -> dict[str, Any]:
    return {"address": "127.0.0.1", "port": port}


def _cluster_has_host(admin: int, host: str) -> bool:
    status, body = http_get(admin, "/clusters")
    return status == 200 and f"auth::{host}::health_flags::healthy" in body


@pytest.fixture
def sidecar(helm: Path, envoy: Path, tmp_path: Path) -> Iterator[Sidecar]:
    """Render the chart with free loopback ports, start the stand-in for auth and chat's Envoy."""
    config_dir, cert_dir = tmp_path / "config", tmp_path / "certs"
    ports = {name: free_port() for name in ("app", "metricsApp", "upstream", "admin")}
    ports |= {name: free_port() for name in ("inbound", "health", "metrics", "outbound")}
    values = {
        "mesh": {
            "envoy": {"configDir": str(config_dir), "certDir": str(cert_dir), "accessLog": False}
        },
        "chat": {
            "listen": _loopback(ports["app"]),
            "metricsListen": _loopback(ports["metricsApp"]),
            "sidecar": {
                **{name: _loopback(ports[name]) for name in ("inbound", "health", "metrics")},
                "admin": _loopback(ports["admin"]),
                "outbound": _loopback(ports["outbound"]),
                "authUpstream": _loopback(ports["upstream"]),
            },
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = helm_template(helm, values_file)
    assert rendered.returncode == 0, rendered.stderr
    (config_map,) = [
        d
        for d in load_docs(rendered.stdout)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{FULLNAME}-chat-envoy"
    ]
    config_dir.mkdir()
    for name, text in config_map["data"].items():
        (config_dir / name).write_text(text)
    issuer = Issuer.new()
    cert_dir.mkdir()
    chat_cert, chat_key = issuer.leaf(identity("chat"))
    (cert_dir / "ca.crt").write_bytes(issuer.pem)
    (cert_dir / "tls.crt").write_bytes(chat_cert)
    (cert_dir / "tls.key").write_bytes(chat_key)

    auth = FlakyAuth()
    server = grpc.server(ThreadPoolExecutor(max_workers=4), handlers=auth.handlers())
    auth_cert, auth_key = issuer.leaf(identity("auth"))
    server.add_secure_port(
        f"127.0.0.1:{ports['upstream']}", grpc.ssl_server_credentials([(auth_key, auth_cert)])
    )
    server.start()
    log = tmp_path / "envoy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [envoy, "--config-path", config_dir / "envoy.yaml", "--disable-hot-restart"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        host = f"127.0.0.1:{ports['upstream']}"
        wait_until(
            functools.partial(_cluster_has_host, ports["admin"], host),
            f"Envoy to resolve auth's address ({log})",
            30,
        )
        yield Sidecar(ports["outbound"], auth)
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.stop(grace=None)


def _call(sidecar: Sidecar, path: str) -> grpc.StatusCode:
    """A raw call through chat's outbound listener: its status code."""
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.outbound}") as channel:
        try:
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            call(b"", timeout=10)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
    return grpc.StatusCode.OK


def test_an_idempotent_read_is_retried_after_unavailable(sidecar: Sidecar) -> None:
    assert _call(sidecar, IDEMPOTENT) == grpc.StatusCode.OK
    assert sidecar.auth.calls[IDEMPOTENT] == 2


def test_an_idempotent_read_is_retried_after_cancelled(sidecar: Sidecar) -> None:
    assert _call(sidecar, IDEMPOTENT_CANCELLED) == grpc.StatusCode.OK
    assert sidecar.auth.calls[IDEMPOTENT_CANCELLED] == 2


def test_a_call_with_side_effects_is_not_repeated(sidecar: Sidecar) -> None:
    assert _call(sidecar, WITH_SIDE_EFFECTS) == grpc.StatusCode.UNAVAILABLE
    assert sidecar.auth.calls[WITH_SIDE_EFFECTS] == 1
    # The same stand-in answers the next call: only the retry policy made the difference.
    assert _call(sidecar, WITH_SIDE_EFFECTS) == grpc.StatusCode.OK
