"""The chart's alerts: valid for promtool as rendered, and each one fires and resolves in the
unit tests of rules_test.yaml and rules_test_long.yaml (the alerts that need days of series)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.observe.support import RULES, alert_names, find_prometheus_tool, render_monitoring
from tests.support.docs import DOCS, headings, slug

HERE = Path(__file__).parent
RULE_TESTS = (HERE / "rules_test.yaml", HERE / "rules_test_long.yaml")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_prometheus_tool("promtool")), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def rendered_rule_spec(*extra: str) -> dict[str, object]:
    docs = render_monitoring(*extra)
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    spec: dict[str, object] = rule["spec"]
    return spec


def test_the_rendered_rules_pass_promtool_check(tmp_path: Path) -> None:
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump(rendered_rule_spec()))
    result = promtool("check", "rules", rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_the_rendered_rules_are_the_file_plus_runbook_urls() -> None:
    assert rendered_rule_spec() == yaml.safe_load(RULES.read_text())
    spec = rendered_rule_spec(
        "--set", "metrics.prometheusRule.runbookBaseUrl=https://docs.example/observability/"
    )
    urls = [
        r["annotations"]["runbook_url"]
        for g in spec["groups"]  # type: ignore[attr-defined]
        for r in g["rules"]
        if "alert" in r
    ]
    assert urls == [f"https://docs.example/observability#{a.lower()}" for a in alert_names()]


def test_a_broken_rule_fails_promtool_check(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.read_text().replace("meshchat_chat_jwks_age_seconds >", "rate(", 1))
    assert promtool("check", "rules", broken).returncode != 0


def test_every_alert_fires_and_resolves_in_the_unit_tests() -> None:
    files = [yaml.safe_load(path.read_text()) for path in RULE_TESTS]
    cases = [c for f in files for t in f["tests"] for c in t["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert set(alert_names()) == fired == quiet
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_summary_a_severity_and_a_runbook() -> None:
    content = yaml.safe_load(RULES.read_text())
    for group in content["groups"]:
        for rule in (r for r in group["rules"] if "alert" in r):
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            anchor = rule["alert"].lower()
            assert rule["annotations"]["runbook"] == f"docs/observability.md#{anchor}"


def test_every_alert_has_a_runbook_section_and_no_section_is_left_over() -> None:
    page = headings((DOCS / "observability.md").read_text())
    runbooks = [h for h in page if h.startswith("Meshchat")]
    assert runbooks == alert_names()
    assert all(slug(h) == h.lower() for h in runbooks)
