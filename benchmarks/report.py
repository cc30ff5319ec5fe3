"""What a benchmark run measured, written to bench-results/ as JSON, Markdown and a plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks.load import bucket_ms

KNEE_P99_MS = 25.0


@dataclass(frozen=True)
class Step:
    """One offered rate of the load curve and what the chat service delivered."""

    offered: float
    sent: int
    send_errors: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    in_order: bool
    streaming_ratio: float


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """The latency (ms) below which ``fraction`` of the counted deliveries lie."""
    total = sum(histogram.values())
    if total == 0:
        return float("nan")
    wanted, seen = fraction * total, 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= wanted:
            return bucket_ms(key)
    return bucket_ms(max(histogram))


@dataclass
class Report:
    """The figures of a run, the load curve and the machine it ran on."""

    machine: dict[str, Any]
    figures: dict[str, float] = field(default_factory=dict)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    curve: list[Step] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, target: str = "") -> None:
        """A figure, and what it should be."""
        self.figures[name] = value
        self.rows.append((name, f"{value:,.2f}", unit, target))
        print(f"  {name}: {value:,.2f} {unit} {target}", flush=True)

    def knee(self) -> Step | None:
        """The step with the highest offered rate whose p99 is at most 25 ms, nothing lost."""
        good = [
            s
            for s in self.curve
            if s.p99_ms <= KNEE_P99_MS and s.missing == 0 and s.send_errors == 0 and s.in_order
        ]
        return max(good, key=lambda s: s.offered, default=None)

    def markdown(self) -> str:
        """The figures and the load curve as Markdown tables, with the machine."""
        lines = ["| measure | value | unit | target |", "|---|---:|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        lines += [
            "",
            "Load curve (one chat, every member connected):",
            "",
            "| offered msg/s | sent | send errors | deliveries/s | / streaming ceiling | p50 ms "
            "| p99 ms | max ms | missing | in order |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {s.offered:,.0f} | {s.sent:,} | {s.send_errors:,} | {s.deliveries_per_s:,.0f} | "
            f"{s.streaming_ratio:.2f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.max_ms:.1f} | "
            f"{s.missing:,} | {'yes' if s.in_order else 'NO'} |"
            for s in self.curve
        ]
        knee = self.knee()
        lines += [
            "",
            f"Knee (highest offered rate with p99 <= {KNEE_P99_MS:.0f} ms, nothing missing): "
            + (f"{knee.offered:,.0f} msg/s" if knee else "none"),
            "",
            ", ".join(f"{k} {v}" for k, v in self.machine.items()),
        ]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> None:
        """results.json, results.md and load-curve.png in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        knee = self.knee()
        document = {
            "machine": self.machine,
            "figures": self.figures,
            "curve": [asdict(s) for s in self.curve],
            "knee_offered_per_s": knee.offered if knee else None,
        }
        (directory / "results.json").write_text(json.dumps(document, indent=2) + "\n")
        (directory / "results.md").write_text(self.markdown())
        self.plot(directory / "load-curve.png")

    def plot(self, path: Path) -> None:
        """Latency (p50, p99, max) against offered load, log-log, with the 25 ms line."""
        figure = Figure(figsize=(8, 5))
        axes = figure.subplots()
        offered = [s.offered for s in self.curve]
        for label, values in (
            ("p50", [s.p50_ms for s in self.curve]),
            ("p99", [s.p99_ms for s in self.curve]),
            ("max", [s.max_ms for s in self.curve]),
        ):
            axes.plot(offered, values, marker="o", label=label)
        axes.axhline(KNEE_P99_MS, color="grey", linestyle="--", label="25 ms")
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("offered messages/s to one chat")
        axes.set_ylabel("delivery latency, ms")
        members = self.figures.get("members", 0)
        axes.set_title(f"meshchat fan-out to {members:.0f} connected members")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
        figure.text(0.01, 0.01, self.machine.get("date", ""), fontsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
