"""``python -m reactmesh.bench SCENARIO`` (also ``reactmesh bench``): see BENCHMARKS.md."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reactmesh.bench.run import main as run_main


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(argv)


if __name__ == "__main__":
    sys.exit(main())
