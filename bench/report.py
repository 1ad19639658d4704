"""Run statistics and their report: options, targets, medians with min and max, tables and JSON, machine facts.

Every figure a scenario reports is the median of its runs with the min and max beside it. A ratio is computed
inside each run from figures measured in that run, and its median is reported (never a ratio of medians).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from reactmesh.bench.procs import optional_module

KNOB_PREFIX = "REACTMESH_BENCH_"


def knobs() -> dict[str, str]:
    """The experiment knobs set in the environment (recorded with every result):

    - REACTMESH_BENCH_OVERRIDES: JSON {section: {field: value}} merged into every mesh's config, e.g.
      '{"aggregator": {"tick_ms": 50}}';
    - REACTMESH_BENCH_SWITCH_INTERVAL_S: ``sys.setswitchinterval`` for the bench and every process it starts;
    - REACTMESH_BENCH_LINK_DELAY_MS, REACTMESH_BENCH_PARTITION_S: see the latency and converge scenarios.
    """
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(KNOB_PREFIX) and k != "REACTMESH_BENCH_OUT"}


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    quick: bool
    runs: int
    out: Path


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``figure`` (its median) compared with ``limit`` by ``op`` (">=" or "<=")."""

    name: str
    figure: str
    op: str
    limit: float


@dataclass
class Report:
    """What one scenario measured: per-run figures, their summary, and what they mean."""

    scenario: str
    title: str
    options: Options
    params: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0

    def add_run(self, figures: Mapping[str, float]) -> None:
        self.runs.append({k: float(v) for k, v in figures.items()})

    def summary(self) -> dict[str, dict[str, float]]:
        """figure -> {median, min, max, n} over the runs that reported it."""
        names: list[str] = []
        for run in self.runs:
            names.extend(k for k in run if k not in names)
        out: dict[str, dict[str, float]] = {}
        for name in names:
            values = [run[name] for run in self.runs if name in run]
            out[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
        return out

    def verdicts(self) -> list[dict[str, Any]]:
        summary = self.summary()
        out = []
        for t in self.targets:
            value = summary.get(t.figure, {}).get("median")
            met = None if value is None else (value >= t.limit if t.op == ">=" else value <= t.limit)
            out.append({"target": t.name, "figure": t.figure, "op": t.op, "limit": t.limit, "value": value, "met": met})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "quick": self.options.quick,
            "runs_requested": self.options.runs,
            "machine": machine_info(),
            "knobs": knobs(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "seconds": round(self.seconds, 1),
            "params": self.params,
            "units": self.units,
            "figures": self.summary(),
            "runs": self.runs,
            "targets": self.verdicts(),
            "notes": self.notes,
            "extra": self.extra,
        }

    def table(self) -> str:
        """The scenario's figures as a Markdown table (median, min, max over the runs)."""
        lines = [f"{self.title}: median of {len(self.runs)} run(s)", ""]
        if knobs():
            lines += ["experiment knobs: " + ", ".join(f"{k}={v}" for k, v in knobs().items()), ""]
        lines += [
            "| figure | median | min | max | unit |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for name, s in self.summary().items():
            unit = self.units.get(name, "")
            lines.append(f"| {name} | {fmt(s['median'])} | {fmt(s['min'])} | {fmt(s['max'])} | {unit} |")
        verdicts = self.verdicts()
        if verdicts:
            lines += ["", "| target | figure | median | met |", "| --- | --- | ---: | --- |"]
            for v in verdicts:
                met = "n/a" if v["met"] is None else ("met" if v["met"] else "missed")
                value = "n/a" if v["value"] is None else fmt(v["value"])
                lines.append(f"| {v['target']} | {v['figure']} {v['op']} {fmt(v['limit'])} | {value} | {met} |")
        for note in self.notes:
            lines.append(f"\n- {note}")
        return "\n".join(lines)

    def write(self) -> Path:
        self.options.out.mkdir(parents=True, exist_ok=True)
        path = self.options.out / f"{self.scenario}.json"
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
        return path


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); NaN for no samples."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    return float(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))])


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "grpc": grpc.__version__,
        "loadavg": load,
        "psutil": optional_module("psutil") is not None,
    }
