"""The Helm chart: `helm lint --strict`, the values schema, the chart's own checks of impossible
values, and the properties every rendering must have."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.deploy.deploy_support import (
    CHART,
    COMBINATIONS,
    ENVOY_GATEWAY_PROXIES,
    NAMESPACE,
    Doc,
    Rendering,
    hardening_problems,
    helm_template,
    load_docs,
    pod_specs,
    run,
)

pytestmark = pytest.mark.deploy

FULLNAME = "meshchat"


def test_helm_lint_strict_passes_for_every_combination(
    helm: Path, values_files: dict[str, Path]
) -> None:
    for name, values in values_files.items():
        result = run([helm, "lint", "--strict", CHART, "--namespace", NAMESPACE, "-f", values])
        assert result.returncode == 0, (
            f"helm lint --strict ({name}):\n{result.stdout}{result.stderr}"
        )


def test_helm_lint_strict_fails_on_a_broken_chart(helm: Path, tmp_path: Path) -> None:
    broken = tmp_path / "meshchat"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text(
        "kind: ConfigMap\n{{ .Values.nope.missing }\n"
    )
    result = run([helm, "lint", "--strict", broken])
    assert result.returncode != 0
    assert "broken.yaml" in result.stdout + result.stderr


def test_every_combination_renders(renderings: dict[str, Rendering]) -> None:
    assert set(renderings) == set(COMBINATIONS)
    for rendering in renderings.values():
        kinds = {d["kind"] for d in rendering.docs}
        assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds, rendering.name


def _write_values(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth": {"bogus": 1}}, "additional properties 'bogus' not allowed"),
        ({"unknownTopLevel": True}, "additional properties 'unknownTopLevel' not allowed"),
        ({"auth": {"listen": {"port": "fifty"}}}, "/auth/listen/port"),
        ({"chat": {"sidecar": {"inbound": {"port": 70000}}}}, "/chat/sidecar/inbound/port"),
        ({"chat": {"authzMode": "sometimes"}}, "/chat/authzMode"),
        (
            {"mesh": {"envoy": {"timeouts": {"request": "1 minute"}}}},
            "/mesh/envoy/timeouts/request",
        ),
        ({"auth": {"image": {"digest": "md5:abc"}}}, "/auth/image/digest"),
        ({"auth": {"resources": {"limits": {"memory": None}}}}, "/auth/resources/limits"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    ],
)
def test_values_schema_rejects_bad_values(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = helm_template(helm, _write_values(tmp_path, values))
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"auth": {"listen": {"address": "0.0.0.0"}}},  # noqa: S104
            'auth.listen.address is "0.0.0.0": the app must listen on a loopback address only',
        ),
        (
            {"chat": {"sidecar": {"admin": {"address": "0.0.0.0"}}}},  # noqa: S104
            "chat.sidecar.admin.address",
        ),
        (
            {"chat": {"sidecar": {"health": {"port": 9090}}}},
            "chat.sidecar.health.port and chat.sidecar.metrics.port are both 9090",
        ),
        (
            {"chat": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}},
            "chat.autoscaling.maxReplicas (2) is below chat.autoscaling.minReplicas (4)",
        ),
        (
            {"postgresql": {"enabled": False}},
            "postgresql.enabled is false: set externalDatabase.host",
        ),
        (
            {"externalDatabase": {"host": "db.example.internal"}},
            "postgresql.enabled is true and externalDatabase.host is set: choose one",
        ),
        (
            {"gateway": {"enabled": True}},
            "gateway.create is true: set gateway.gatewayClassName",
        ),
        (
            {"ingress": {"enabled": False}, "gateway": {"enabled": True, "gatewayClassName": "eg"}},
            "networkPolicy.gatewayPeers is empty: with gateway.enabled and NetworkPolicies on",
        ),
        (
            {"auth": {"terminationGracePeriodSeconds": 20}},
            "auth.terminationGracePeriodSeconds (20) must exceed auth.preStopSleepSeconds plus "
            "auth.gracePeriodSeconds (10 + 10)",
        ),
        (
            {"edge": {"enabled": True, "admin": {"port": 8443}, "listener": {"port": 8443}}},
            "edge.listener.port and edge.admin.port are both 8443",
        ),
        (
            {"mesh": {"envoy": {"configDir": "/etc/envoy", "certDir": "/etc/envoy/certs"}}},
            "mesh.envoy.configDir (/etc/envoy) and mesh.envoy.certDir (/etc/envoy/certs) overlap",
        ),
        (
            {"postgresql": {"chat": {"username": "meshchat_auth"}}},
            "must differ: each service has its own credentials",
        ),
        (
            {"cloudnativePg": {"enabled": True}},
            "postgresql.enabled and cloudnativePg.enabled are both true: choose one",
        ),
        (
            {
                "postgresql": {"enabled": False},
                "cloudnativePg": {"enabled": True, "chat": {"database": "meshchat_auth"}},
            },
            "cloudnativePg.auth.database and cloudnativePg.chat.database must differ",
        ),
    ],
)
def test_impossible_values_fail_with_a_readable_message(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = helm_template(helm, _write_values(tmp_path, values))
    assert result.returncode != 0
    assert "VALUES VALIDATION" in result.stderr
    assert message in result.stderr


def test_every_container_is_hardened(renderings: dict[str, Rendering]) -> None:
    for rendering in renderings.values():
        assert hardening_problems(rendering.docs) == [], rendering.name


def test_hardening_check_finds_a_weak_container(renderings: dict[str, Rendering]) -> None:
    docs = [yaml.safe_load(yaml.safe_dump(d)) for d in renderings["default"].docs]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
    sidecar["securityContext"]["readOnlyRootFilesystem"] = False
    del sidecar["resources"]["limits"]
    problems = hardening_problems(docs)
    assert any("envoy: readOnlyRootFilesystem is not true" in p for p in problems)
    assert any("envoy: no limits.cpu" in p for p in problems)


def _pod(rendering: Rendering, component: str) -> Doc:
    spec: Doc = rendering.get("Deployment", f"{FULLNAME}-{component}")["spec"]["template"]
    return spec


@pytest.mark.parametrize("component", ["auth", "chat"])
def test_pod_layout(renderings: dict[str, Rendering], component: str) -> None:
    pod = _pod(renderings["default"], component)
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "envoy"
    assert sidecar["restartPolicy"] == "Always", "Envoy runs as a native sidecar"
    assert "--disable-hot-restart" in sidecar["args"]
    (app,) = spec["containers"]
    env = {e["name"]: e for e in app["env"]}
    assert env["MESHCHAT_LISTEN"]["value"].startswith("127.0.0.1:")
    assert env["MESHCHAT_METRICS_LISTEN"]["value"].startswith("127.0.0.1:")
    # The database URL (its password included) is a mounted Secret file, never a variable.
    assert "MESHCHAT_DATABASE_URL" not in env
    assert env["MESHCHAT_DATABASE_URL_FILE"]["value"] == "/var/run/meshchat/database/url"
    database = next(m for m in app["volumeMounts"] if m["name"] == "database-url")
    assert database == {
        "name": "database-url",
        "mountPath": "/var/run/meshchat/database",
        "readOnly": True,
    }
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["database-url"]["secret"]["secretName"].endswith("-database")
    assert [p["name"] for p in app.get("ports", [])] == [], "the app exposes no port itself"
    # The app's probes ask its sidecar's health listener, by number (named ports are per
    # container): liveness only whether the app answers, readiness whether it is SERVING.
    health = {p["name"]: p["containerPort"] for p in sidecar["ports"]}["health"]
    assert app["startupProbe"]["httpGet"] == {"path": "/livez/app", "port": health}
    assert app["livenessProbe"]["httpGet"] == {"path": "/livez/app", "port": health}
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": health}
    # A pause before SIGTERM while Services and the sidecars' DNS stop sending new calls.
    assert app["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert spec["terminationGracePeriodSeconds"] > 10 + 10
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = renderings["default"].get("Service", f"{FULLNAME}-{component}")
    target_ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert target_ports == {"grpc-mesh": 8443, "http-metrics": 9090}
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert "subPath" not in mounts["mesh-certs"], "a whole-directory mount, so rotation works"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["mesh-certs"]["secret"]["secretName"] == f"{FULLNAME}-{component}-mesh-tls"
    assert pod["metadata"]["annotations"]["checksum/config"]
    if component == "auth":
        assert env["MESHCHAT_GENERATE_KEY"]["value"] == "false"
        assert {m["name"]: m for m in app["volumeMounts"]}["jwt-keys"]["readOnly"] is True
    else:
        assert env["MESHCHAT_AUTH_ADDR"]["value"] == "127.0.0.1:15001"


def test_envoy_config_change_restarts_the_pods(helm: Path, tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        result = helm_template(helm, _write_values(tmp_path, values))
        assert result.returncode == 0, result.stderr
        docs = load_docs(result.stdout)
        deployment = next(
            d
            for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{FULLNAME}-chat"
        )
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"mesh": {"envoy": {"timeouts": {"request": "61s"}}}})


def test_chat_replicas_and_autoscaler(renderings: dict[str, Rendering]) -> None:
    default = renderings["default"]
    assert "replicas" not in default.get("Deployment", f"{FULLNAME}-chat")["spec"]
    hpa = default.get("HorizontalPodAutoscaler", f"{FULLNAME}-chat")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULLNAME}-chat"
    for name, replicas in (("chat-one-replica", 1), ("chat-three-replicas", 3)):
        rendering = renderings[name]
        assert rendering.get("Deployment", f"{FULLNAME}-chat")["spec"]["replicas"] == replicas
        assert rendering.of_kind("HorizontalPodAutoscaler") == []
    scaled = renderings["chat-autoscaled-three"].get("HorizontalPodAutoscaler", f"{FULLNAME}-chat")
    assert scaled["spec"]["minReplicas"] == 3
    assert len(scaled["spec"]["metrics"]) == 2
    pdbs = renderings["chat-three-replicas"].of_kind("PodDisruptionBudget")
    assert {p["metadata"]["name"]: p["spec"].get("minAvailable") for p in pdbs}[
        f"{FULLNAME}-auth"
    ] == 2


def _secret_text(doc: Doc, key: str) -> str:
    return base64.b64decode(doc["data"][key]).decode()


def test_generated_certificates_chain_to_the_mesh_ca(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    ca_secret = rendering.get("Secret", f"{FULLNAME}-mesh-ca")
    assert ca_secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    ca = x509.load_pem_x509_certificate(_secret_text(ca_secret, "tls.crt").encode())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    for component in ("auth", "chat", "ingress"):
        secret = rendering.get("Secret", f"{FULLNAME}-{component}-mesh-tls")
        assert secret["type"] == "kubernetes.io/tls"
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _secret_text(secret, "ca.crt") == _secret_text(ca_secret, "tls.crt")
        cert = x509.load_pem_x509_certificate(_secret_text(secret, "tls.crt").encode())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sans.get_values_for_type(x509.DNSName)
        assert names[0] == f"{FULLNAME}-{component}.{NAMESPACE}.mesh.internal"
        if component != "ingress":
            assert f"{FULLNAME}-{component}.{NAMESPACE}.svc.cluster.local" in names
        key = load_pem_private_key(_secret_text(secret, "tls.key").encode(), None)
        assert key.public_key() == cert.public_key()
    ingress_tls = rendering.get("Secret", f"{FULLNAME}-ingress-tls")
    cert = x509.load_pem_x509_certificate(_secret_text(ingress_tls, "tls.crt").encode())
    cert.verify_directly_issued_by(ca)
    hosts = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(hosts.get_values_for_type(x509.DNSName)) == {
        "meshchat.127.0.0.1.nip.io",
        "auth.meshchat.127.0.0.1.nip.io",
        "chat.meshchat.127.0.0.1.nip.io",
    }


def test_jwt_signing_key_is_pkcs8_p256_and_kept(renderings: dict[str, Rendering]) -> None:
    secret = renderings["default"].get("Secret", f"{FULLNAME}-auth-jwt")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    ((name, _),) = secret["data"].items()
    assert name.endswith(".pem")
    pem = _secret_text(secret, name)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n"), "PKCS#8, not SEC1"
    assert all(len(line) <= 64 for line in pem.splitlines())
    key = load_pem_private_key(pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_render_only_values_render_no_secret_and_the_same_every_time(
    helm: Path, values_files: dict[str, Path], renderings: dict[str, Rendering]
) -> None:
    again = helm_template(helm, values_files["render-only"])
    assert again.returncode == 0, again.stderr
    assert again.stdout == renderings["render-only"].path.read_text()
    rendering = renderings["render-only"]
    assert rendering.of_kind("Secret") == []
    issuers = {i["metadata"]["name"]: i["spec"] for i in rendering.of_kind("Issuer")}
    assert issuers == {f"{FULLNAME}-mesh-ca": {"ca": {"secretName": "mesh-ca"}}}
    for component in ("auth", "chat"):
        app = _pod(rendering, component)["spec"]["containers"][0]
        env = {e["name"]: e for e in app["env"]}
        assert env["MESHCHAT_DATABASE_URL"]["value"] == (
            f"postgresql://meshchat_{component}@{FULLNAME}-postgresql.{NAMESPACE}.svc.cluster.local"
            f":5432/meshchat_{component}"
        )
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "pg-passwords",
            "key": f"{component}-password",
        }
    postgres = rendering.get("StatefulSet", f"{FULLNAME}-postgresql")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in postgres["volumes"]}
    assert volumes["passwords"]["secret"]["secretName"] == "pg-passwords"
    jwt = {v["name"]: v for v in _pod(rendering, "auth")["spec"]["volumes"]}["jwt-keys"]
    assert jwt["secret"]["secretName"] == "jwt-keys"


def test_the_defaults_render_new_secrets_every_time(
    helm: Path, renderings: dict[str, Rendering]
) -> None:
    # Why render-only tools need the values above: without a cluster, lookup finds nothing.
    again = helm_template(helm)
    assert again.returncode == 0, again.stderr
    secrets = {
        s["metadata"]["name"]: s["data"] for s in load_docs(again.stdout) if s["kind"] == "Secret"
    }
    first = {s["metadata"]["name"]: s["data"] for s in renderings["default"].of_kind("Secret")}
    assert secrets.keys() == first.keys()
    assert secrets[f"{FULLNAME}-mesh-ca"] != first[f"{FULLNAME}-mesh-ca"]
    assert secrets[f"{FULLNAME}-postgresql"] != first[f"{FULLNAME}-postgresql"]


def test_postgresql_keeps_on_root_mismatch_whatever_the_value(helm: Path, tmp_path: Path) -> None:
    values = {"podSecurityContext": {"fsGroupChangePolicy": "Always"}}
    result = helm_template(helm, _write_values(tmp_path, values))
    assert result.returncode == 0, result.stderr
    policies = {
        where: spec["securityContext"]["fsGroupChangePolicy"]
        for where, spec in pod_specs(load_docs(result.stdout))
    }
    assert policies.pop(f"StatefulSet/{FULLNAME}-postgresql") == "OnRootMismatch"
    assert set(policies.values()) == {"Always"}, "the other pods follow the value"


def test_cert_manager_certificates_fit_long_names(helm: Path, tmp_path: Path) -> None:
    namespace = "n" * 63
    values = {"certManager": {"enabled": True}, "namespaceOverride": namespace}
    result = helm_template(helm, _write_values(tmp_path, values))
    assert result.returncode == 0, result.stderr
    certificates = [d for d in load_docs(result.stdout) if d["kind"] == "Certificate"]
    identity = f"{FULLNAME}-auth.{namespace}.mesh.internal"
    assert len(identity) > 64, "longer than cert-manager allows a commonName"
    assert identity in [n for c in certificates for n in c["spec"].get("dnsNames", [])]
    # cert-manager rejects a commonName over 64 characters; only the CA keeps one (a short one).
    names = {c["metadata"]["name"]: c["spec"].get("commonName") for c in certificates}
    assert {name for name, cn in names.items() if cn} == {f"{FULLNAME}-mesh-ca"}
    assert all(len(cn) <= 64 for cn in names.values() if cn)


def test_cert_manager_certificates(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["cert-manager"]
    assert not [s for s in rendering.of_kind("Secret") if s["metadata"]["name"].endswith("-tls")]
    certs = {c["metadata"]["name"]: c["spec"] for c in rendering.of_kind("Certificate")}
    assert certs[f"{FULLNAME}-mesh-ca"]["isCA"] is True
    chat = certs[f"{FULLNAME}-chat-mesh-tls"]
    assert chat["dnsNames"][0] == f"{FULLNAME}-chat.{NAMESPACE}.mesh.internal"
    assert chat["issuerRef"]["name"] == f"{FULLNAME}-mesh-ca"
    assert chat["privateKey"]["algorithm"] == "ECDSA"
    external = renderings["cert-manager-cluster-issuer"]
    assert external.of_kind("Issuer") == []
    issuer_refs = {c["spec"]["issuerRef"]["kind"] for c in external.of_kind("Certificate")}
    assert issuer_refs == {"ClusterIssuer"}


def test_database_urls(renderings: dict[str, Rendering]) -> None:
    bundled = renderings["default"]
    auth_url = _secret_text(bundled.get("Secret", f"{FULLNAME}-auth-database"), "url")
    chat_url = _secret_text(bundled.get("Secret", f"{FULLNAME}-chat-database"), "url")
    host = f"{FULLNAME}-postgresql.{NAMESPACE}.svc.cluster.local:5432"
    assert auth_url.startswith("postgresql://meshchat_auth:")
    assert auth_url.endswith(f"@{host}/meshchat_auth")
    assert chat_url.startswith("postgresql://meshchat_chat:")
    assert chat_url.endswith(f"@{host}/meshchat_chat")
    pg = bundled.get("Secret", f"{FULLNAME}-postgresql")
    assert pg["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert _secret_text(pg, "auth-password") in auth_url
    assert bundled.get("StatefulSet", f"{FULLNAME}-postgresql")["spec"]["volumeClaimTemplates"]

    external = renderings["external-database"]
    assert external.of_kind("StatefulSet") == []
    url = _secret_text(external.get("Secret", f"{FULLNAME}-auth-database"), "url")
    assert url == (
        "postgresql://meshchat_auth:s3cret%2Fwith%3Achars@pg.db.svc.cluster.local:5432/"
        "meshchat_auth?sslmode=verify-full"
    )
    chat = external.get("Deployment", f"{FULLNAME}-chat")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in chat["containers"][0]["env"]}
    assert env["MESHCHAT_DATABASE_URL_FILE"] == {
        "name": "MESHCHAT_DATABASE_URL_FILE",
        "value": "/var/run/meshchat/database/uri",
    }
    volumes = {v["name"]: v for v in chat["volumes"]}
    assert volumes["database-url"]["secret"]["secretName"] == "chat-database"


def test_cloudnativepg_runs_three_instances_with_a_database_and_role_per_service(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["cloudnativepg"]
    assert rendering.of_kind("StatefulSet") == []
    cluster = rendering.get("Cluster", f"{FULLNAME}-pg")["spec"]
    assert cluster["instances"] == 3
    assert cluster["affinity"]["enablePodAntiAffinity"] is True
    assert cluster["enableSuperuserAccess"] is False
    roles = {r["name"]: r for r in cluster["managed"]["roles"]}
    assert set(roles) == {"meshchat_auth", "meshchat_chat"}
    for component in ("auth", "chat"):
        role = f"meshchat_{component}"
        database = rendering.get("Database", f"{FULLNAME}-pg-{component}")["spec"]
        assert database["cluster"] == {"name": f"{FULLNAME}-pg"}
        assert (database["name"], database["owner"]) == (role, role)
        login = rendering.get("Secret", roles[role]["passwordSecret"]["name"])
        assert login["type"] == "kubernetes.io/basic-auth"
        assert _secret_text(login, "username") == role
        url = _secret_text(rendering.get("Secret", f"{FULLNAME}-{component}-database"), "url")
        # The read-write Service follows the primary through a failover.
        assert url == (
            f"postgresql://{role}:{_secret_text(login, 'password')}@{FULLNAME}-pg-rw.{NAMESPACE}.svc"
            f":5432/{role}?sslmode=verify-full&sslrootcert=/var/run/meshchat/database-ca/ca.crt"
        )
        pod = _pod(rendering, component)["spec"]
        volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        # The operator's CA Secret holds its key too: only ca.crt is mounted.
        assert volumes["database-ca"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert volumes["database-ca"]["secretName"] == f"{FULLNAME}-pg-ca"
    policies = {p["metadata"]["name"]: p["spec"] for p in rendering.of_kind("NetworkPolicy")}
    assert {
        "ports": [{"port": 5432, "protocol": "TCP"}],
        "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": f"{FULLNAME}-pg"}}}],
    } in policies[f"{FULLNAME}-chat"]["egress"]


def test_network_policies_deny_by_default(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["default"]
    policies = {p["metadata"]["name"]: p["spec"] for p in rendering.of_kind("NetworkPolicy")}
    deny = policies[f"{FULLNAME}-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    assert "egress" not in deny
    assert deny["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "meshchat"
    chat_egress = policies[f"{FULLNAME}-chat"]["egress"]
    to_auth = [
        rule
        for rule in chat_egress
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            == "auth"
            for peer in rule["to"]
        )
    ]
    assert [r["ports"] for r in to_auth] == [[{"port": 8443, "protocol": "TCP"}]]
    auth_ingress = policies[f"{FULLNAME}-auth"]["ingress"]
    assert [r["ports"] for r in auth_ingress] == [[{"port": 8443, "protocol": "TCP"}]]
    assert policies[f"{FULLNAME}-postgresql"]["egress"] == []
    edge = {
        p["metadata"]["name"]: p["spec"] for p in renderings["edge-envoy"].of_kind("NetworkPolicy")
    }
    assert "from" not in edge[f"{FULLNAME}-edge"]["ingress"][0], "clients come from anywhere"
    edge_egress_ports = [r["ports"][0]["port"] for r in edge[f"{FULLNAME}-edge"]["egress"]]
    assert edge_egress_ports == [53, 8443, 8443]
    for component in ("auth", "chat"):
        sources = edge[f"{FULLNAME}-{component}"]["ingress"][0]["from"]
        assert {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "meshchat",
                    "app.kubernetes.io/instance": "meshchat",
                    "app.kubernetes.io/component": "edge",
                }
            }
        } in sources
    external = renderings["external-database"]
    ext_policies = {p["metadata"]["name"]: p["spec"] for p in external.of_kind("NetworkPolicy")}
    assert {"ipBlock": {"cidr": "10.20.0.5/32"}} in [
        peer for rule in ext_policies[f"{FULLNAME}-auth"]["egress"] for peer in rule["to"]
    ]


INGRESS_NGINX = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
}


def _selector(component: str) -> Doc:
    return {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": FULLNAME,
                "app.kubernetes.io/instance": "meshchat",
                "app.kubernetes.io/component": component,
            }
        }
    }


@pytest.mark.parametrize(
    ("rendering", "way_in"),
    [
        ("default", [_selector("edge")]),
        ("ingress-nginx", [INGRESS_NGINX]),
        ("gateway-api-cert-manager", [ENVOY_GATEWAY_PROXIES]),
        ("edge-envoy", [_selector("edge")]),
    ],
)
def test_network_policies_let_in_exactly_the_chosen_way_in(
    renderings: dict[str, Rendering], rendering: str, way_in: list[Doc]
) -> None:
    policies = {
        p["metadata"]["name"]: p["spec"] for p in renderings[rendering].of_kind("NetworkPolicy")
    }
    assert policies[f"{FULLNAME}-chat"]["ingress"][0]["from"] == way_in
    assert policies[f"{FULLNAME}-auth"]["ingress"][0]["from"] == [*way_in, _selector("chat")]


def test_extra_egress_reaches_a_collector(helm: Path, tmp_path: Path) -> None:
    collector = {
        "to": [{"ipBlock": {"cidr": "10.30.0.7/32"}}],
        "ports": [{"port": 4317, "protocol": "TCP"}],
    }
    result = helm_template(
        helm, _write_values(tmp_path, {"networkPolicy": {"extraEgress": [collector]}})
    )
    assert result.returncode == 0, result.stderr
    policies = {
        d["metadata"]["name"]: d["spec"]
        for d in load_docs(result.stdout)
        if d["kind"] == "NetworkPolicy"
    }
    for component in ("auth", "chat"):
        assert policies[f"{FULLNAME}-{component}"]["egress"][-1] == collector
    assert collector not in policies[f"{FULLNAME}-postgresql"]["egress"]


def test_the_default_way_in_is_the_edge_envoy_without_any_snippet(
    renderings: dict[str, Rendering],
) -> None:
    rendering = renderings["default"]
    assert rendering.of_kind("Ingress") == []
    assert rendering.get("Deployment", f"{FULLNAME}-edge")
    assert "snippet" not in rendering.path.read_text()


def test_ingress_routes_by_grpc_service_over_mtls(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["ingress-nginx"]
    for component, services in (
        (
            "auth",
            [
                "/meshchat.auth.v1.UserService",
                "/meshchat.auth.v1.AuthService",
                "/meshchat.auth.v1.AccessService",
            ],
        ),
        ("chat", ["/meshchat.chat.v1.ChatService"]),
    ):
        ingress = rendering.get("Ingress", f"{FULLNAME}-{component}")
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
        assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-secret"] == (
            f"{NAMESPACE}/{FULLNAME}-ingress-mesh-tls"
        )
        assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-verify"] == "on"
        # proxy-ssl-* does not reach grpc_pass: the snippet gives nginx its client certificate.
        snippet = annotations["nginx.ingress.kubernetes.io/configuration-snippet"].splitlines()
        pem = f"/etc/ingress-controller/ssl/{NAMESPACE}-{FULLNAME}-ingress-mesh-tls.pem"
        assert f"grpc_ssl_certificate {pem};" in snippet
        assert f"grpc_ssl_certificate_key {pem};" in snippet
        assert "grpc_ssl_verify on;" in snippet
        assert f"grpc_ssl_name {FULLNAME}-{component}.{NAMESPACE}.mesh.internal;" in snippet
        main, own = ingress["spec"]["rules"]
        assert main["host"] == "meshchat.127.0.0.1.nip.io"
        assert [p["path"] for p in main["http"]["paths"]] == services
        assert own["host"] == f"{component}.meshchat.127.0.0.1.nip.io"
        assert [p["path"] for p in own["http"]["paths"]] == ["/"]
        assert ingress["spec"]["tls"][0]["secretName"] == f"{FULLNAME}-ingress-tls"
    chat = rendering.get("Ingress", f"{FULLNAME}-chat")["metadata"]["annotations"]
    assert chat["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"


def test_gateway_api_alternative(renderings: dict[str, Rendering]) -> None:
    rendering = renderings["gateway-api"]
    assert rendering.of_kind("Ingress") == []
    gateway = rendering.get("Gateway", FULLNAME)
    assert gateway["spec"]["tls"]["backend"]["clientCertificateRef"]["name"] == (
        f"{FULLNAME}-ingress-mesh-tls"
    )
    main = rendering.get("GRPCRoute", FULLNAME)["spec"]
    services = [m["method"]["service"] for rule in main["rules"] for m in rule["matches"]]
    assert "meshchat.chat.v1.ChatService" in services
    policy = rendering.get("BackendTLSPolicy", f"{FULLNAME}-chat")["spec"]["validation"]
    assert policy["subjectAltNames"] == [
        {"type": "Hostname", "hostname": f"{FULLNAME}-chat.{NAMESPACE}.mesh.internal"}
    ]
    assert rendering.get("ConfigMap", f"{FULLNAME}-mesh-ca")["data"]["ca.crt"]
    shared = renderings["gateway-api-cert-manager"]
    assert shared.of_kind("Gateway") == []
    route = shared.get("GRPCRoute", f"{FULLNAME}-auth")["spec"]
    assert route["parentRefs"] == [
        {"name": "shared", "namespace": "gateways", "sectionName": "https"}
    ]


def leaf_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every value (a non-empty mapping is not a value itself, its keys are)."""
    paths: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths |= leaf_paths(value, f"{path}.")
        else:
            paths.add(path)
    return paths


def loose_schema_objects(
    schema: dict[str, Any], path: str = "", defs: dict[str, Any] | None = None
) -> list[str]:
    """Objects of the values schema that accept unknown keys, and values without a description.
    A `$ref` to `#/$defs/<name>` is followed (its own description may stand beside it)."""
    defs = schema.get("$defs", {}) if defs is None else defs
    problems: list[str] = []
    properties = schema.get("properties")
    if properties is not None:
        if schema.get("additionalProperties") is not False and path != "":
            problems.append(f"{path}: additionalProperties is not false")
        for key, sub in properties.items():
            child = f"{path}.{key}" if path else key
            target = _resolve(sub, defs)
            if "properties" not in target and "description" not in sub | target:
                problems.append(f"{child}: no description")
            problems += loose_schema_objects(target, child, defs)
    return problems


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema a `$ref` names (only local `#/$defs/...` references), else the node itself."""
    ref = node.get("$ref")
    if ref is None:
        return node
    prefix = "#/$defs/"
    assert ref.startswith(prefix), f"only local $defs references: {ref}"
    resolved: dict[str, Any] = defs[ref.removeprefix(prefix)]
    return _resolve(resolved, defs)


def test_every_value_is_documented_and_the_schema_is_strict() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"## @param (\S+) \S", text))
    assert leaf_paths(yaml.safe_load(text)) == documented
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert loose_schema_objects(schema) == []


def test_chart_readme_lists_every_parameter() -> None:
    documented = re.findall(r"## @param (\S+) \S", (CHART / "values.yaml").read_text())
    listed = re.findall(r"^\| `([^`]+)` \|", (CHART / "README.md").read_text(), re.MULTILINE)
    assert listed == documented


def test_documentation_checks_find_gaps() -> None:
    assert leaf_paths({"a": {"b": 1, "c": {}}, "d": []}) == {"a.b", "a.c", "d"}
    loose = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "auth": {"type": "object", "properties": {"port": {"type": "integer"}}},
            "chat": {"$ref": "#/$defs/open"},
        },
        "$defs": {
            "open": {"type": "object", "properties": {"host": {"$ref": "#/$defs/host"}}},
            "host": {"type": "string"},
        },
    }
    assert loose_schema_objects(loose) == [
        "auth: additionalProperties is not false",
        "auth.port: no description",
        "chat: additionalProperties is not false",
        "chat.host: no description",
    ]
