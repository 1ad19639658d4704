"""Type-check every reactmesh package with mypy under its import name (``python .ci/typecheck.py``).

The ``reactmesh`` namespace maps the design card's folders (``edge/``, ``merge/``, ``region_node/``, ``bench/``)
onto ``reactmesh.edge`` and friends with setuptools ``package-dir``. mypy cannot follow that mapping: it names a
file after its folder (``edge/service.py`` would be ``edge.service``) and does not run the editable install's
import hook (pypa/setuptools#3518). So this script reads the mapping from pyproject.toml and hands mypy every
source file with its module name; the rest of the configuration is ``[tool.mypy]`` in pyproject.toml.
Extra arguments go to mypy unchanged.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent
STUBS = "reactmesh.v1"  # generated; found through mypy_path and checked only as far as the code uses them


def sources() -> list[BuildSource]:
    """One BuildSource per .py file of every mapped package except the generated stubs."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out: list[BuildSource] = []
    for package, folder in sorted(mapping.items()):
        if package == STUBS:
            continue
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append(BuildSource(str(path), ".".join([package, *parts])))
    return out


def main(argv: list[str]) -> int:
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), "-p", STUBS, *argv])
    try:
        result = build.build(sources(), options)
    except CompileError as e:
        print("\n".join(e.messages), file=sys.stderr)
        return 2
    for line in result.errors:
        print(line)
    files = len(result.files)
    if result.errors:
        print(f"typecheck: {len(result.errors)} lines of errors over {files} modules", file=sys.stderr)
        return 1
    print(f"typecheck: no issues in {len(sources())} source files ({files} modules with dependencies)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
