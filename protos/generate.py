"""Regenerate (or check) the committed Python stubs of the reactmesh wire contract.

    python protos/generate.py           # rewrite protos/reactmesh/v1/*_pb2*.py{,i}
    python protos/generate.py --check   # exit 1 if the committed stubs drift from the .proto files

protoc (grpcio-tools) writes the messages (*_pb2.py), their type stubs (*_pb2.pyi) and the gRPC
modules (*_pb2_grpc.py); mypy-protobuf's protoc-gen-mypy_grpc plugin writes the type stubs of the
gRPC modules (*_pb2_grpc.pyi: stubs, servicers and add_*_to_server, for grpc and grpc.aio alike).
Both generators are pinned in pyproject.toml because other versions write different bytes, so
--check names the versions it ran with.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "reactmesh" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
GENERATORS = ("grpcio-tools", "mypy-protobuf")
MYPY_GRPC_PLUGIN = "protoc-gen-mypy_grpc"


def mypy_grpc_plugin() -> str:
    """Path of mypy-protobuf's gRPC plugin: beside this interpreter's scripts, else on PATH."""
    found = shutil.which(MYPY_GRPC_PLUGIN, path=sysconfig.get_path("scripts")) or shutil.which(MYPY_GRPC_PLUGIN)
    if found is None:
        raise SystemExit(f"{MYPY_GRPC_PLUGIN} not found: pip install -e '.[dev]' (it comes with mypy-protobuf)")
    return found


def generate(out: Path) -> None:
    """Run protoc over every .proto of the contract, writing stubs under ``out``."""
    from grpc_tools import protoc  # imported late: only needed here

    protos = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        # The plugin's path goes to protoc only; nothing of it reaches the generated files.
        f"--plugin={MYPY_GRPC_PLUGIN}={mypy_grpc_plugin()}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_grpc_out=quiet:{out}",
        *[str(ROOT / p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(base: Path) -> dict[str, Path]:
    v1 = base / "reactmesh" / "v1"
    return {p.name: p for p in v1.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def check() -> list[str]:
    """Return the names of stubs that differ from a fresh generation (empty when in sync)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "reactmesh" / "v1").mkdir(parents=True)
        generate(out)
        fresh = generated_files(out)
        committed = generated_files(ROOT)
        names = sorted(set(fresh) | set(committed))
        return [
            n
            for n in names
            if n not in fresh or n not in committed or not filecmp.cmp(fresh[n], committed[n], shallow=False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift, write nothing")
    ns = parser.parse_args(argv)
    if ns.check:
        drift = check()
        if drift:
            versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in GENERATORS)
            print(f"stubs drift from the .proto files ({versions}): {', '.join(drift)}")
            print("run: python protos/generate.py")
            return 1
        print("stubs are in sync with the .proto files")
        return 0
    for stale in generated_files(ROOT).values():
        stale.unlink()
    generate(ROOT)
    print(f"regenerated {len(generated_files(ROOT))} files under {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
