"""skaffold.yaml validates against skaffold's JSON schema for v4beta14 (read from ../shared), and
the values it passes to the chart are ones the chart accepts."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.deploy_support import (
    REPO_ROOT,
    Rendering,
    helm_template,
    load_docs,
    missing_tool,
    run,
    skaffold_schema,
)

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """skaffold's schema for v4beta14, from the shared directory next to the repository."""
    path = skaffold_schema()
    if not path.is_file():
        missing_tool(f"the skaffold schema is missing: {path}")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    """skaffold.yaml, parsed."""
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    return loaded


def schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Validation errors of a skaffold config against the schema."""
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)
    ]


def test_skaffold_yaml_validates(skaffold: dict[str, Any], schema: dict[str, Any]) -> None:
    assert skaffold["apiVersion"] == "skaffold/v4beta14"
    assert schema_errors(skaffold, schema) == []


def test_a_broken_skaffold_yaml_fails(skaffold: dict[str, Any], schema: dict[str, Any]) -> None:
    broken = copy.deepcopy(skaffold)
    broken["deploy"]["helm"]["releases"][0]["chart"] = "helm/meshchat"  # chartPath is the key
    assert schema_errors(broken, schema) != []
    wrong_type = copy.deepcopy(skaffold)
    wrong_type["portForward"][0]["port"] = {"number": 8443}
    assert schema_errors(wrong_type, schema) != []


def test_artifacts_are_the_dockerfile_for_each_service(skaffold: dict[str, Any]) -> None:
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    assert set(artifacts) == {"meshchat-auth", "meshchat-chat"}
    for image, artifact in artifacts.items():
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == "Dockerfile"
        assert artifact["docker"]["buildArgs"] == {"SERVICE": image.removeprefix("meshchat-")}


def _release_values(release: dict[str, Any]) -> list[str]:
    """--set arguments for skaffold's values, with the image templates filled in as skaffold would."""
    sets: list[str] = []
    for key, value in release.get("setValueTemplates", {}).items():
        filled = (
            str(value)
            .replace("{{.IMAGE_REPO_meshchat_auth}}", "meshchat-auth")
            .replace("{{.IMAGE_REPO_meshchat_chat}}", "meshchat-chat")
            .replace("{{.IMAGE_TAG_meshchat_auth}}", "0f3a9c1d")
            .replace("{{.IMAGE_TAG_meshchat_chat}}", "7b2e4d6a")
        )
        assert "{{" not in filled, f"{key}: unknown template {value}"
        sets += ["--set-string", f"{key}={filled}"]
    for key, value in release.get("setValues", {}).items():
        sets += ["--set-json", f"{key}={json.dumps(value)}"]
    return sets


def _apply_patches(config: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    patched = copy.deepcopy(config)
    for patch in patches:
        assert patch["op"] == "add"
        *parents, last = patch["path"].strip("/").split("/")
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if last == "-":
            node.append(patch["value"])
        else:
            node[last] = patch["value"]
    return patched


def with_profiles(skaffold: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """skaffold.yaml as skaffold runs it with these profiles active, in order."""
    config = skaffold
    for name in names:
        (found,) = [p for p in skaffold["profiles"] if p["name"] == name]
        config = _apply_patches(config, found["patches"])
    return config


# What `skaffold run -p X` and `skaffold dev -p X` (which also activates "fast") deploy.
PROFILE_SETS = [
    (),
    ("fast",),
    ("cert-manager",),
    ("ingress-nginx",),
    ("fast", "cert-manager"),
    ("fast", "ingress-nginx"),
]


@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=lambda p: "+".join(p) or "none")
def test_the_chart_accepts_skaffolds_values(
    helm: Path, skaffold: dict[str, Any], profiles: tuple[str, ...]
) -> None:
    config = with_profiles(skaffold, profiles)
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO_ROOT / release["chartPath"] / "Chart.yaml").is_file()
    result = helm_template(helm, None, *_release_values(release))
    assert result.returncode == 0, result.stderr
    docs = load_docs(result.stdout)
    images = {
        c["image"]
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] in ("meshchat-auth", "meshchat-chat")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"meshchat-auth:0f3a9c1d", "meshchat-chat:7b2e4d6a"}


def test_the_chart_rejects_a_value_skaffold_might_misspell(
    helm: Path, skaffold: dict[str, Any]
) -> None:
    (release,) = copy.deepcopy(skaffold["deploy"]["helm"]["releases"])
    release["setValues"]["auth.image.pullPolcy"] = "IfNotPresent"
    result = helm_template(helm, None, *_release_values(release))
    assert result.returncode != 0
    assert "pullPolcy" in result.stderr


def test_port_forwards_name_rendered_services(
    skaffold: dict[str, Any], renderings: dict[str, Rendering]
) -> None:
    services = {
        s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
        for s in renderings["default"].of_kind("Service")
    }
    forwarded = {(f["resourceName"], f["port"]) for f in skaffold["portForward"]}
    assert forwarded == {
        ("meshchat-auth", 8443),
        ("meshchat-chat", 8443),
        ("meshchat-auth", 9090),
        ("meshchat-chat", 9090),
    }
    for name, port in forwarded:
        assert port in services[name]


def _notes(helm: Path, release: dict[str, Any]) -> str:
    """NOTES.txt as helm prints it after installing the release with skaffold's values."""
    args = [helm, "install", release["name"], REPO_ROOT / release["chartPath"]]
    args += ["--namespace", release["namespace"], "--dry-run=client", *_release_values(release)]
    result = run(args)
    assert result.returncode == 0, result.stderr
    assert "NOTES:" in result.stdout
    return result.stdout.split("NOTES:", 1)[1]


def notes_port_problems(notes: str, config: dict[str, Any], kind_host_ports: set[int]) -> list[str]:
    """Ports that NOTES names and skaffold does not provide: a `kubectl port-forward` skaffold does
    not do the same way, an address for the CLI or grpcurl on a local port that skaffold forwards to
    something other than the way in (or that kind does not map), a metrics port not forwarded."""
    forwards = {(f["resourceName"], f["port"]): f["localPort"] for f in config["portForward"]}
    by_local = {local: name for (name, _), local in forwards.items()}
    problems: list[str] = []
    ways_in: dict[int, str] = {port: "kind's port mapping" for port in kind_host_ports}
    for name, local, remote in re.findall(r"port-forward svc/(\S+) (\d+):(\d+)", notes):
        if forwards.get((name, int(remote))) != int(local):
            problems.append(f"NOTES forwards {name}:{remote} to {local}; skaffold does not")
        ways_in[int(local)] = name
    for host, port in re.findall(r"\b([a-z0-9-]+(?:\.[a-z0-9-]+)+):(\d+)\b", notes):
        number = int(port)
        if number not in ways_in:
            problems.append(f"{host}:{port}: nothing forwards or maps local port {port}")
        elif number in by_local and by_local[number] != ways_in[number]:
            problems.append(f"{host}:{port}: skaffold forwards {port} to {by_local[number]}")
    for port, *services in re.findall(r"port (\d+) of the (\S+) and (\S+) Services", notes):
        for service in services:
            if (service, int(port)) not in forwards:
                problems.append(f"port {port} of {service} is not forwarded by skaffold")
    return problems


def _kind_host_ports() -> set[int]:
    cluster = yaml.safe_load((REPO_ROOT / "deploy" / "kind" / "cluster.yaml").read_text())
    return {m["hostPort"] for node in cluster["nodes"] for m in node.get("extraPortMappings", [])}


@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=lambda p: "+".join(p) or "none")
def test_every_port_notes_names_is_one_skaffold_forwards(
    helm: Path, skaffold: dict[str, Any], profiles: tuple[str, ...]
) -> None:
    config = with_profiles(skaffold, profiles)
    (release,) = config["deploy"]["helm"]["releases"]
    notes = _notes(helm, release)
    assert "MESHCHAT_SERVER=" in notes
    assert notes_port_problems(notes, config, _kind_host_ports()) == []


def test_the_notes_check_finds_the_edge_on_a_sidecars_port(skaffold: dict[str, Any]) -> None:
    # The mistake an edge profile once made: the edge told to use 8443, which is auth's sidecar.
    notes = (
        "kubectl --namespace meshchat port-forward svc/meshchat-edge 8443:443\n"
        "export MESHCHAT_SERVER=meshchat.127.0.0.1.nip.io:8443\n"
        "Metrics: port 9090 of the meshchat-auth and meshchat-chat Services\n"
    )
    config = with_profiles(skaffold, ())
    assert notes_port_problems(notes, config, {80, 443}) == [
        "NOTES forwards meshchat-edge:443 to 8443; skaffold does not",
        "meshchat.127.0.0.1.nip.io:8443: skaffold forwards 8443 to meshchat-auth",
    ]


# Fields Kubernetes refuses to change on an existing object, by kind.
IMMUTABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "StatefulSet": (
        ("spec", "selector"),
        ("spec", "serviceName"),
        ("spec", "podManagementPolicy"),
        ("spec", "volumeClaimTemplates"),
    ),
    "Deployment": (("spec", "selector"),),
    "Service": (("spec", "clusterIP"),),
    "PersistentVolumeClaim": (("spec",),),
}


def immutable_fields(docs: list[dict[str, Any]]) -> dict[tuple[str, str, tuple[str, ...]], Any]:
    """The immutable fields of a rendering, by kind, name and path."""
    found: dict[tuple[str, str, tuple[str, ...]], Any] = {}
    for doc in docs:
        for path in IMMUTABLE.get(doc["kind"], ()):
            node: Any = doc
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            found[(doc["kind"], doc["metadata"]["name"], path)] = node
    return found


def immutable_differences(
    a: dict[tuple[str, str, tuple[str, ...]], Any], b: dict[tuple[str, str, tuple[str, ...]], Any]
) -> list[str]:
    """Immutable fields of objects in both renderings whose values differ."""
    return [
        f"{kind}/{name} {'.'.join(path)}: {a[key]!r} != {b[key]!r}"
        for key in sorted(a.keys() & b.keys())
        for kind, name, path in [key]
        if a[key] != b[key]
    ]


@pytest.fixture(scope="module")
def profile_immutables(
    helm: Path, skaffold: dict[str, Any]
) -> dict[tuple[str, ...], dict[tuple[str, str, tuple[str, ...]], Any]]:
    """The immutable fields of what each set of profiles deploys."""
    found = {}
    for profiles in PROFILE_SETS:
        (release,) = with_profiles(skaffold, profiles)["deploy"]["helm"]["releases"]
        result = helm_template(helm, None, *_release_values(release))
        assert result.returncode == 0, result.stderr
        found[profiles] = immutable_fields(load_docs(result.stdout))
    return found


def test_profiles_change_no_immutable_field(
    profile_immutables: dict[tuple[str, ...], dict[tuple[str, str, tuple[str, ...]], Any]],
) -> None:
    # `skaffold run` then `skaffold dev` (or another -p) upgrades the same release in place.
    base = profile_immutables[()]
    assert any(kind == "StatefulSet" for kind, _, _ in base)
    for profiles, fields in profile_immutables.items():
        assert immutable_differences(base, fields) == [], profiles


def test_the_immutable_check_finds_a_changed_volume_size(
    profile_immutables: dict[tuple[str, ...], dict[tuple[str, str, tuple[str, ...]], Any]],
) -> None:
    base = profile_immutables[()]
    changed = copy.deepcopy(base)
    key = ("StatefulSet", "meshchat-postgresql", ("spec", "volumeClaimTemplates"))
    changed[key][0]["spec"]["resources"]["requests"]["storage"] = "1Gi"
    (difference,) = immutable_differences(base, changed)
    assert difference.startswith("StatefulSet/meshchat-postgresql spec.volumeClaimTemplates")


def _startup_budget(spec: dict[str, Any]) -> int:
    """Seconds the kubelet gives a pod's slowest container to pass its startup probe."""
    probes = [
        c["startupProbe"]
        for c in spec.get("initContainers", []) + spec["containers"]
        if "startupProbe" in c
    ]
    return max(int(p.get("periodSeconds", 10)) * int(p.get("failureThreshold", 3)) for p in probes)


def test_the_status_check_tolerates_a_slow_first_start(
    skaffold: dict[str, Any], renderings: dict[str, Rendering]
) -> None:
    deploy = skaffold["deploy"]
    assert deploy["statusCheck"] is True
    assert deploy["tolerateFailuresUntilDeadline"] is True
    # PostgreSQL starts first (pull, initdb), then the services reach it: both budgets fit.
    postgres = renderings["default"].get("StatefulSet", "meshchat-postgresql")
    app = renderings["default"].get("Deployment", "meshchat-chat")
    needed = _startup_budget(postgres["spec"]["template"]["spec"]) + _startup_budget(
        app["spec"]["template"]["spec"]
    )
    assert deploy["statusCheckDeadlineSeconds"] > needed
