"""skaffold.yaml validates against skaffold's JSON schema for v4beta14 (read from ../shared), and
the values it passes to the chart are ones the chart accepts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.deploy_support import (
    REPO_ROOT,
    SKAFFOLD_SCHEMA,
    Rendering,
    helm_template,
    load_docs,
    missing_tool,
)

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """skaffold's schema for v4beta14, from the shared directory next to the repository."""
    if not SKAFFOLD_SCHEMA.is_file():
        missing_tool(f"the skaffold schema is missing: {SKAFFOLD_SCHEMA}")
    loaded: dict[str, Any] = json.loads(SKAFFOLD_SCHEMA.read_text())
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
        node[last] = patch["value"]
    return patched


@pytest.mark.parametrize("profile", [None, "fast", "cert-manager", "edge"])
def test_the_chart_accepts_skaffolds_values(
    helm: Path, skaffold: dict[str, Any], profile: str | None
) -> None:
    config = skaffold
    if profile is not None:
        (found,) = [p for p in skaffold["profiles"] if p["name"] == profile]
        config = _apply_patches(skaffold, found["patches"])
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
