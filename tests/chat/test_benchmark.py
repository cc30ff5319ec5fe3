"""`python -m benchmarks --quick`: the benchmark runs end to end (real processes, a throwaway
PostgreSQL) and writes what it promises; every delivery of its load curve arrives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.paths import REPO_ROOT

pytestmark = pytest.mark.postgres


def test_the_quick_benchmark_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
        capture_output=True,
    )
    results = json.loads((out / "results.json").read_text())
    assert {"python", "grpcio", "postgresql", "cores", "date"} <= results["machine"].keys()
    figures = results["figures"]
    for name in (
        "1. echo ceiling (bare grpc.aio unary)",
        "2. GetChat, local authz / echo ceiling",
        "2. GetChat, local authz, tracing on / echo ceiling",
        "3. durable SendMessage, 1 chat / echo ceiling",
        "5. server memory per idle Connect stream",
    ):
        assert figures[name] > 0, name
    curve = results["curve"]
    assert len(curve) >= 2
    assert [step["offered"] for step in curve] == sorted(step["offered"] for step in curve)
    for step in curve:
        assert step["sent"] > 0
        assert step["missing"] == 0, step
        assert step["in_order"], step
        assert 0 < step["p50_ms"] <= step["p99_ms"] <= step["max_ms"] * 1.02, step
        assert step["streaming_ratio"] > 0
    assert "| offered msg/s |" in (out / "results.md").read_text()
    assert (out / "load-curve.png").read_bytes().startswith(b"\x89PNG")


def test_the_load_curve_runs_alone(tmp_path: Path) -> None:
    out = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--load-curve", "--out", str(out)],
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
        capture_output=True,
    )
    results = json.loads((out / "results.json").read_text())
    assert results["figures"]["1. streaming ceiling (bare grpc.aio, 10 streams)"] > 0
    assert "2. GetChat, local authz" not in results["figures"]
    assert len(results["curve"]) >= 2
    assert all(step["missing"] == 0 and step["in_order"] for step in results["curve"])
