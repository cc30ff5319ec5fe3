"""Every rendering validates against the Kubernetes schemas with `kubernetes-validate --strict`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_support import CRD_KINDS, Rendering, run

pytestmark = pytest.mark.deploy

_SKIPPED = re.compile(r"^WARN .* Couldn't find schema for kind (\S+) ")


def validate(kubernetes_validate: Path, files: list[Path]) -> tuple[int, list[str], set[str]]:
    """Run kubernetes-validate --strict; return its exit code, ERROR lines and the kinds it had
    no schema for (it warns and passes those)."""
    result = run([kubernetes_validate, "--strict", "--quiet", *files])
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith(("ERROR", "FATAL"))]
    unknown = {m.group(1) for line in lines if (m := _SKIPPED.match(line))}
    return result.returncode, errors, unknown


def test_every_rendering_validates_strictly(
    kubernetes_validate: Path, renderings: dict[str, Rendering]
) -> None:
    code, errors, unknown = validate(kubernetes_validate, [r.path for r in renderings.values()])
    assert errors == []
    assert code == 0
    # Only the CRDs of cert-manager and Gateway API lack a schema; every built-in kind is checked.
    assert unknown <= CRD_KINDS
    assert {"Certificate", "GRPCRoute"} <= unknown


def test_a_broken_manifest_fails(
    kubernetes_validate: Path, renderings: dict[str, Rendering], tmp_path: Path
) -> None:
    docs = [yaml.safe_load(yaml.safe_dump(d)) for d in renderings["default"].docs]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    code, errors, _ = validate(kubernetes_validate, [broken])
    assert code != 0
    assert any("readOnlyRootFilesytem" in line for line in errors)
