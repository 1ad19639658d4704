"""``reactmesh bench``: run a benchmark scenario (the same as ``python -m reactmesh.bench``).

The benchmarks are a development tool, not part of the product, so the CLI runs them in a child interpreter
instead of importing them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def run_bench(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "reactmesh.bench", args.scenario, *args.rest])
