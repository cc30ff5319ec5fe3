"""checkov's Kubernetes checks pass on every rendering, with only the documented skips."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import COMBINATIONS, REPO_ROOT, Rendering, run

pytestmark = pytest.mark.deploy

SKIPS_FILE = REPO_ROOT / "tests" / "deploy" / "checkov-skips.yaml"


@dataclass(frozen=True)
class CheckovResult:
    """What one checkov run found."""

    passed: int
    failed: list[str]
    skipped: int


def skipped_rules() -> dict[str, Any]:
    """The skipped rules with their reasons."""
    rules: dict[str, Any] = yaml.safe_load(SKIPS_FILE.read_text())
    return rules


def run_checkov(checkov: Path, directory: Path, skips: list[str]) -> CheckovResult:
    """Scan a directory of manifests with checkov's Kubernetes framework, offline."""
    args: list[str | Path] = [
        checkov,
        "--directory",
        directory,
        "--framework",
        "kubernetes",
        "--output",
        "json",
        "--quiet",
        "--compact",
        "--skip-download",
    ]
    if skips:
        args += ["--skip-check", ",".join(skips)]
    result = run(args)
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    passed = failed_count = skipped = 0
    failed: list[str] = []
    for one in reports:
        if "summary" not in one:
            continue
        passed += one["summary"]["passed"]
        failed_count += one["summary"]["failed"]
        skipped += one["summary"]["skipped"]
        failed += [
            f"{c['check_id']} {c['resource']} ({c['file_path']})"
            for c in one.get("results", {}).get("failed_checks", [])
        ]
    assert failed_count == len(failed)
    return CheckovResult(passed=passed, failed=failed, skipped=skipped)


def assert_clean(result: CheckovResult) -> None:
    """No failed check, and checks did run (zero checks is a failure, not a pass)."""
    assert result.passed + len(result.failed) > 0, "checkov ran zero checks"
    assert result.failed == []


# What the default rendering may skip: skaffold's local images have no registry digest.
DEFAULT_SKIPS = ["CKV_K8S_15", "CKV_K8S_43"]


def skips_for(rendering: str) -> list[str]:
    """The rules skipped for one rendering: those without ``renderings``, and those naming it."""
    return sorted(
        rule_id
        for rule_id, entry in skipped_rules().items()
        if rendering in entry.get("renderings", [rendering])
    )


def test_every_skip_has_a_written_reason() -> None:
    rules = skipped_rules()
    assert rules
    for rule_id, entry in rules.items():
        assert rule_id.startswith("CKV"), rule_id
        assert entry["rule"].strip(), rule_id
        assert len(entry["reason"].split()) >= 10, f"{rule_id}: the reason is too short"
        assert set(entry.get("renderings", [])) <= set(COMBINATIONS), rule_id


def test_the_default_rendering_skips_only_the_digest_and_pull_policy_rules() -> None:
    assert skips_for("default") == DEFAULT_SKIPS


def test_checkov_passes_on_every_rendering(
    checkov: Path, renderings: dict[str, Rendering], tmp_path: Path
) -> None:
    """One checkov run per set of skips, over the renderings that share it."""
    groups: dict[tuple[str, ...], list[Rendering]] = {}
    for name, rendering in renderings.items():
        groups.setdefault(tuple(skips_for(name)), []).append(rendering)
    assert len(groups) > 1, "some rendering skips more than the default"
    for index, (skips, members) in enumerate(sorted(groups.items())):
        directory = tmp_path / f"group-{index}"
        directory.mkdir()
        for rendering in members:
            (directory / rendering.path.name).write_text(rendering.path.read_text())
        result = run_checkov(checkov, directory, list(skips))
        assert_clean(result)
        # Every rendering's workloads were scanned: dozens of checks per container.
        assert result.passed > 100 * len(members), skips


def test_the_default_rendering_fails_the_skipped_rules_it_would_need_without_them(
    checkov: Path, renderings: dict[str, Rendering], tmp_path: Path
) -> None:
    (tmp_path / "default.yaml").write_text(renderings["default"].path.read_text())
    result = run_checkov(checkov, tmp_path, [])
    failed_rules = {failure.split()[0] for failure in result.failed}
    assert failed_rules == set(DEFAULT_SKIPS)


def test_checkov_fails_on_a_privileged_pod(checkov: Path, tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "meshchat"},
        "spec": {
            "containers": [
                {"name": "bad", "image": "busybox:1.37", "securityContext": {"privileged": True}}
            ]
        },
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(pod))
    result = run_checkov(checkov, tmp_path, sorted(skipped_rules()))
    assert any(f.startswith("CKV_K8S_16 ") for f in result.failed), result.failed
    with pytest.raises(AssertionError):
        assert_clean(result)


def test_zero_checks_is_a_failure(checkov: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.yaml").write_text("just: a mapping\nnot: a kubernetes resource\n")
    result = run_checkov(checkov, tmp_path, [])
    assert result.passed == 0
    assert result.failed == []
    with pytest.raises(AssertionError, match="zero checks"):
        assert_clean(result)
