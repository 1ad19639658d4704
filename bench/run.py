"""The benchmark entry point: ``python -m reactmesh.bench SCENARIO [--quick] [--runs N] [--out DIR]``.

SCENARIO is one of core, ingest, shedding, latency, fanout, webfanout, converge, memory, comments, soak, or
``all`` (each in turn; a full ``all`` leaves out the LONG scenarios, which ``all --quick`` runs like the others).
Every scenario prints a Markdown table (median, min and max of its runs, and the issue's targets it has) and writes
``DIR/SCENARIO.json`` (default DIR: bench/results/) with the machine's cores, CPU model and Python, the
parameters, every run's figures and the summary. ``--quick`` shrinks every scenario so that ``all`` takes
under two minutes; it checks that the benchmarks work, not how fast they are. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from reactmesh.bench.common import prepare_environment
from reactmesh.bench.report import Options, Report, knobs, machine_info

SCENARIOS = ("core", "ingest", "shedding", "latency", "fanout", "webfanout", "converge", "memory", "comments", "soak")
LONG = ("soak",)
"""Scenarios a full ``all`` leaves out: one full soak run simulates an hour and takes about 15 minutes here."""
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench", description="reactmesh benchmark scenarios")
    p.add_argument("scenario", choices=(*SCENARIOS, "all"))
    p.add_argument("--quick", action="store_true", help="small and short: every scenario in under two minutes")
    p.add_argument("--runs", type=int, default=None, help="runs per scenario (default 5; --quick: 1)")
    p.add_argument("--out", default=env("REACTMESH_BENCH_OUT", str(DEFAULT_OUT)), help="directory for JSON results")
    return p


def run_scenario(name: str, options: Options) -> Report:
    module = importlib.import_module(f"reactmesh.bench.scenarios.{name}")
    started = time.monotonic()
    report: Report = module.run(options)
    report.seconds = time.monotonic() - started
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if runs < 1:
        print("--runs must be >= 1", file=sys.stderr)
        return 2
    options = Options(quick=args.quick, runs=runs, out=Path(args.out))
    if args.scenario != "all":
        names: tuple[str, ...] = (args.scenario,)
    elif args.quick:
        names = SCENARIOS
    else:
        names = tuple(n for n in SCENARIOS if n not in LONG)
    prepare_environment()
    m = machine_info()
    print(
        f"machine: {m['cores']} cores, {m['cpu_model']}, Python {m['python']}, grpc {m['grpc']}, "
        f"load average {m['loadavg']}",
        flush=True,
    )
    if knobs():
        print(f"experiment knobs: {knobs()}", flush=True)
    left_out = [n for n in SCENARIOS if n not in names] if args.scenario == "all" else []
    if left_out:
        print(f"left out of a full `all` (run each by name): {', '.join(left_out)}", flush=True)
    failed = []
    index = {}
    for name in names:
        print(f"\n== {name}{' (quick)' if args.quick else ''}, {runs} run(s)", flush=True)
        try:
            report = run_scenario(name, options)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            print(f"scenario {name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
            continue
        path = report.write()
        print(report.table())
        print(f"({report.seconds:.1f} s; wrote {path})", flush=True)
        index[name] = str(path)
    if len(names) > 1:
        options.out.mkdir(parents=True, exist_ok=True)
        (options.out / "index.json").write_text(json.dumps({"machine": m, "scenarios": index, "failed": failed}) + "\n")
    return 1 if failed else 0
