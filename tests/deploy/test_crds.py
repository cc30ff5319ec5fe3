"""Every custom resource of every rendering (the kinds kubernetes-validate has no schema for:
cert-manager's, Gateway API's and CloudNativePG's, and any other group a CRD in ../shared/crds/ defines) validates
against the ``openAPIV3Schema`` of its CRD, as each project publishes it for the release the chart
is written for, with unknown fields refused (as ``kubectl apply --validate=strict`` refuses them).
The CEL rules (``x-kubernetes-validations``) are the API server's and are not checked here."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.deploy_support import CRD_KINDS, Doc, Rendering, missing_tool, shared_dir

pytestmark = pytest.mark.deploy

CRDS_DIR = shared_dir() / "crds"
# Keywords whose value is one schema, and those whose value is a list or a map of schemas.
_ONE = ("items", "additionalProperties", "not")
_MANY = ("allOf", "anyOf", "oneOf")
_MAP = ("properties", "patternProperties")

Schemas = dict[tuple[str, str], dict[str, Any]]


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as a JSON schema that refuses unknown fields: an object with
    ``properties`` allows no others unless it says ``x-kubernetes-preserve-unknown-fields``;
    ``nullable`` allows null."""
    out = dict(schema)
    for key in _ONE:
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in _MANY:
        if key in out:
            out[key] = [strict(sub) for sub in out[key]]
    for key in _MAP:
        if key in out:
            out[key] = {name: strict(sub) for name, sub in out[key].items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserves = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserves:
        out["additionalProperties"] = False
    return out


def load_schemas(directory: Path) -> Schemas:
    """(apiVersion, kind) -> strict schema, for every served version of every CRD there."""
    schemas: Schemas = {}
    for path in sorted(directory.glob("*/*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def custom_resources(docs: list[Doc], schemas: Schemas) -> Iterator[Doc]:
    """The documents that a CRD defines: of a kind kubernetes-validate skips, or of a group one
    of the CRDs has."""
    groups = {api_version.split("/")[0] for api_version, _ in schemas}
    for doc in docs:
        if doc["kind"] in CRD_KINDS or doc["apiVersion"].split("/")[0] in groups:
            yield doc


def errors(doc: Doc, schemas: Schemas) -> list[str]:
    """Why ``doc`` does not validate against its CRD (a served version of its kind)."""
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    schema = schemas.get((doc["apiVersion"], doc["kind"]))
    if schema is None:
        return [f"{where}: no CRD serves {doc['apiVersion']} {doc['kind']}"]
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    """The CRDs' schemas from ../shared/crds/ (read there, never copied into the repository)."""
    if not CRDS_DIR.is_dir():
        missing_tool(f"the CRDs are missing: {CRDS_DIR}")
    return load_schemas(CRDS_DIR)


@pytest.fixture(scope="module")
def samples(renderings: dict[str, Rendering], schemas: Schemas) -> dict[str, Doc]:
    """The first rendered custom resource of each kind."""
    found: dict[str, Doc] = {}
    for rendering in renderings.values():
        for doc in custom_resources(rendering.docs, schemas):
            found.setdefault(doc["kind"], doc)
    return found


def test_every_custom_resource_validates_against_its_crd(
    renderings: dict[str, Rendering], schemas: Schemas
) -> None:
    problems = [
        f"{name}: {problem}"
        for name, rendering in renderings.items()
        for doc in custom_resources(rendering.docs, schemas)
        for problem in errors(doc, schemas)
    ]
    assert problems == []


def test_the_renderings_hold_every_kind_kubernetes_validate_skips(samples: dict[str, Doc]) -> None:
    assert set(samples) >= CRD_KINDS


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A change of the document: the value at a dotted path (numbers index lists)."""

    def change(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


# One mistake an author could make in each kind, and the words of the error it must cause.
BROKEN: dict[str, tuple[Callable[[Doc], None], str]] = {
    "Certificate": (_set("spec.privateKey.algorithm", "EC"), "'EC' is not one of"),
    "Issuer": (_set("spec.selfSigned.crlDistributionPoints", "http://crl"), "is not of type"),
    "Gateway": (_set("spec.listeners.0.port", 70000), "is greater than the maximum"),
    "GRPCRoute": (_set("spec.rules.0.matches.0.method.type", "Prefix"), "'Prefix' is not one of"),
    "BackendTLSPolicy": (
        _set("spec.validation.subjectAltNames.0.type", "DNS"),
        "'DNS' is not one of",
    ),
    "Cluster": (_set("spec.instances", 0), "0 is less than the minimum of 1"),
    "Database": (_set("spec.ensure", "exists"), "'exists' is not one of"),
    "PodMonitor": (_set("spec.podMetricsEndpoints.0.scheme", "gopher"), "'gopher' is not one of"),
    "ServiceMonitor": (_set("spec.endpoints.1.interval", "30 seconds"), "does not match"),
    "PrometheusRule": (_set("spec.groups.0.rules.0.for", "soon"), "does not match"),
}


def test_each_rendered_kind_has_a_broken_value_test(samples: dict[str, Doc]) -> None:
    assert set(samples) <= set(BROKEN)


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_value_fails(samples: dict[str, Doc], schemas: Schemas, kind: str) -> None:
    if kind not in samples:
        pytest.fail(f"no rendering has a {kind}")
    broken = copy.deepcopy(samples[kind])
    change, message = BROKEN[kind]
    change(broken)
    found = errors(broken, schemas)
    assert any(message in problem for problem in found), found


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_an_unknown_field_fails(samples: dict[str, Doc], schemas: Schemas, kind: str) -> None:
    if kind not in samples:
        pytest.fail(f"no rendering has a {kind}")
    broken = copy.deepcopy(samples[kind])
    broken["spec"]["secretNmae"] = "typo"
    assert any("'secretNmae' was unexpected" in problem for problem in errors(broken, schemas))


def test_a_version_no_crd_serves_fails(samples: dict[str, Doc], schemas: Schemas) -> None:
    policy = copy.deepcopy(samples["BackendTLSPolicy"])
    policy["apiVersion"] = "gateway.networking.k8s.io/v1alpha3"  # in the CRD, but not served
    assert errors(policy, schemas) == [
        "BackendTLSPolicy/meshchat-auth: no CRD serves gateway.networking.k8s.io/v1alpha3 "
        "BackendTLSPolicy"
    ]


def test_strict_schemas_keep_what_the_crd_leaves_open() -> None:
    schema = strict(
        {
            "type": "object",
            "properties": {
                "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "maybe": {"type": "string", "nullable": True},
            },
        }
    )
    validator = jsonschema.Draft4Validator(schema)
    assert validator.is_valid({"open": {"anything": 1}, "maybe": None})
    assert not validator.is_valid({"other": 1})
