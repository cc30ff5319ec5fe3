"""The pods of the chart's rendering, made real on this host: each Deployment's containers, and
its volumes materialised in directories (ConfigMaps as rendered, Secrets with certificates of
the rendered subjects signed by the mesh CA)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from devtools.certs import CertificateAuthority
from devtools.mesh.errors import MeshError
from devtools.mesh.ports import Ports
from devtools.mesh.values import merged, shared_host_values
from devtools.mesh.volumes import publish_volume
from devtools.tools import RELEASE, Doc, helm_template, load_docs

__all__ = ["COMPONENTS", "ENVOYS", "Pod", "render", "render_pod", "subject_of"]

COMPONENTS = ("auth", "chat")
ENVOYS = ("auth", "chat", "edge")


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


def render(helm: Path, values: Doc, workdir: Path) -> list[Doc]:
    """The chart rendered with these values (written to ``workdir/values.yaml``)."""
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm_template(helm, values_file)
    if result.returncode != 0:
        raise MeshError(f"helm template failed:\n{result.stderr}")
    return load_docs(result.stdout)


def subject_of(secret: Doc) -> tuple[str, list[str]]:
    """The common name and DNS SANs of the certificate in a rendered kubernetes.io/tls Secret."""
    certificate = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(common_name), [str(n) for n in sans.get_values_for_type(x509.DNSName)]


def _document(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise MeshError(f"{kind}/{name} is not in the rendering")


def render_pod(
    helm: Path,
    component: str,
    ports: Ports,
    base: Path,
    ca: CertificateAuthority,
    overrides: Doc | None = None,
) -> Pod:
    """Render the chart for this host (``overrides`` laid over the host's values), take
    ``component``'s Deployment and materialise its volumes under ``base`` (certificates signed
    by ``ca``)."""
    base.mkdir(parents=True, exist_ok=True)
    dirs = {
        "envoyConfig": base / "envoy-config",
        "envoyCerts": base / "mesh-certs",
        "edgeTls": base / "client-tls",
        "jwtKeys": base / "jwt-keys",
        "databaseUrl": base / "database-url",
    }
    docs = render(helm, merged(shared_host_values(ports, dirs), overrides or {}), base)
    deployment = _document(docs, "Deployment", f"{RELEASE}-{component}")
    spec = deployment["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    pod = Pod(component, containers, dirs["envoyCerts"])
    for container in containers.values():
        for mount in container.get("volumeMounts", []):
            _materialise(pod, docs, volumes[mount["name"]], Path(mount["mountPath"]), ca)
    return pod


def _materialise(
    pod: Pod, docs: list[Doc], volume: Doc, path: Path, ca: CertificateAuthority
) -> None:
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
        leaf = ca.issue(common_name, sans)
        files = {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.pem}
    else:  # the JWT signing key and the database URL the chart generates
        files = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    publish_volume(path, files, 0o600)
