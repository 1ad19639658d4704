"""The ``reactmesh`` command line.

    reactmesh serve --target=all|edge|aggregator|broadcaster[,..] --config FILE
    reactmesh up [--demo] [--regions a,b,c]      three simulated regions on loopback
    reactmesh load --edge HOST:PORT [...]         simulated viewers through the SDK
    reactmesh watch STREAM --broadcaster HOST:PORT
    reactmesh poll create|vote|close|watch ...   live polls
    reactmesh export --db FILE [...] --out PATH.parquet   history as Parquet for analytics
    reactmesh bench SCENARIO [--quick]

Defaults come from environment variables (REACTMESH_CONFIG, REACTMESH_TARGET, REACTMESH_EDGE,
REACTMESH_BROADCASTER, REACTMESH_EXPORT_DB, REACTMESH_EXPORT_OUT, REACTMESH_LOG_LEVEL, REACTMESH_TLS_CA), so a
container needs no arguments. ``up --tls`` runs the mesh with mTLS; ``--tls-ca`` makes load, watch and poll speak TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.cli.tlsopts import add_tls_ca


def _targets(value: str) -> frozenset[str]:
    from reactmesh.region_node.config import ROLES

    parts = {p.strip() for p in value.split(",") if p.strip()}
    if parts == {"all"}:
        return frozenset(ROLES)
    bad = parts - set(ROLES)
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"expected all or a comma list of {', '.join(ROLES)}, got {value!r}")
    return frozenset(parts)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="reactmesh", description="Live-reactions backend.")
    parser.add_argument("--log-level", default=env("REACTMESH_LOG_LEVEL", "WARNING"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one or more roles in this process")
    serve.add_argument("--target", type=_targets, default=_targets(env("REACTMESH_TARGET", "all")))
    serve.add_argument("--config", default=env("REACTMESH_CONFIG"), required=env("REACTMESH_CONFIG") is None)

    up = sub.add_parser("up", help="start simulated regions on loopback (Ctrl-C stops them)")
    up.add_argument("--regions", default="a,b,c")
    up.add_argument("--base-port", type=int, default=int(env("REACTMESH_BASE_PORT", "7100")))
    up.add_argument("--data-dir", default=env("REACTMESH_DATA_DIR"), help="default: a new temporary directory")
    up.add_argument("--demo", action="store_true", help="also drive a demo load and show live counts")
    up.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    up.add_argument("--tls", action="store_true", help="a throwaway CA in the data dir; mTLS between every node")

    load = sub.add_parser("load", help="drive simulated viewers through the client SDK")
    load.add_argument("--edge", action="append", default=None, help="edge address; repeat for failover")
    load.add_argument("--viewers", type=int, default=200)
    load.add_argument("--streams", type=int, default=20)
    load.add_argument("--duration", type=float, default=10.0)
    load.add_argument("--taps-per-second", type=float, default=5.0, help="per viewer")
    load.add_argument("--hot-share", type=float, default=0.5, help="share of viewers on the hot stream")
    load.add_argument("--stream-prefix", default="demo")
    load.add_argument("--seed", type=int, default=1)
    load.add_argument("--no-progress", action="store_true")
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_tls_ca(load)

    watch = sub.add_parser("watch", help="show live counts of a stream")
    watch.add_argument("stream")
    watch.add_argument("--broadcaster", action="append", default=None)
    watch.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    add_tls_ca(watch)

    from reactmesh.region_node.cli.poll import add_poll_commands

    add_poll_commands(sub)

    from reactmesh.region_node.cli.export import add_export_command

    add_export_command(sub)

    bench = sub.add_parser("bench", help="run a benchmark scenario (see BENCHMARKS.md)")
    bench.add_argument("scenario")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is on Linux), else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return int(uvloop.run(coro))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            from reactmesh.region_node.cli.serve import run_serve

            return run_async(run_serve(args))
        if args.command == "up":
            from reactmesh.region_node.cli.up import run_up

            return run_async(run_up(args))
        if args.command == "load":
            from reactmesh.region_node.cli.load import run_load

            args.edge = args.edge or [os.environ.get("REACTMESH_EDGE", "127.0.0.1:7100")]
            return run_async(run_load(args))
        if args.command == "watch":
            from reactmesh.region_node.cli.watch import run_watch

            args.broadcaster = args.broadcaster or [os.environ.get("REACTMESH_BROADCASTER", "127.0.0.1:7300")]
            return run_async(run_watch(args))
        if args.command == "poll":
            from reactmesh.region_node.cli.poll import run_poll

            return run_async(run_poll(args))
        if args.command == "export":
            from reactmesh.region_node.cli.export import run_export

            return run_export(args)
        if args.command == "bench":
            from reactmesh.region_node.cli.bench import run_bench

            return run_bench(args)
    except ConfigError as exc:
        print(f"reactmesh: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
