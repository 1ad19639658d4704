"""The ``reactmesh`` command line.

    reactmesh serve --target=all|edge|aggregator|broadcaster|gateway[,..] --config FILE
    reactmesh up [--demo] [--regions a,b,c]      three simulated regions on loopback
    reactmesh load --edge HOST:PORT [...]         simulated viewers through the SDK
    reactmesh watch STREAM --broadcaster HOST:PORT
    reactmesh poll create|vote|close|watch ...   live polls
    reactmesh comments post|watch|history|pin|delete ...   live comments
    reactmesh admin mute|unmute|drain|muted|flagged ...   moderation in every region (a moderator token)
    reactmesh token --sub VIEWER [--role R] [--stream S]   a development token (JWT)
    reactmesh export --db FILE [...] --out PATH.parquet   history as Parquet for analytics
    reactmesh certs --ca-dir DIR --out DIR --name HOST [...]   a CA and a node certificate (k8s Secret files)
    reactmesh bench SCENARIO [--quick]

Defaults come from environment variables (REACTMESH_CONFIG, REACTMESH_TARGET, REACTMESH_EDGE,
REACTMESH_BROADCASTER, REACTMESH_EXPORT_DB, REACTMESH_EXPORT_OUT, REACTMESH_LOG_LEVEL, REACTMESH_TOKEN,
REACTMESH_AUTH_KEY, REACTMESH_TLS_CA), so a container needs no arguments. ``up --tls`` runs the mesh with mTLS;
``--tls-ca`` makes load, watch and poll speak TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.cli.tlsopts import add_tls_ca
from reactmesh.region_node.logs import FORMATS
from reactmesh.region_node.logs import configure as configure_logs


def _targets(value: str) -> frozenset[str]:
    from reactmesh.region_node.config import ROLES

    parts = {p.strip() for p in value.split(",") if p.strip()}
    if parts == {"all"}:
        return frozenset(ROLES)
    bad = parts - set(ROLES)
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"expected all or a comma list of {', '.join(ROLES)}, got {value!r}")
    return frozenset(parts)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)} (any case), got {value!r}")
    return level


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reactmesh")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from reactmesh.region_node.cli.common import HelpFormatter, number

    env = os.environ.get
    shown = HelpFormatter
    parser = argparse.ArgumentParser(prog="reactmesh", description="Live-reactions backend.", formatter_class=shown)
    parser.add_argument("--version", action="version", version=f"reactmesh {_version()}")
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=env("REACTMESH_LOG_LEVEL", "WARNING"),
        help=f"one of {', '.join(LOG_LEVELS)} ($REACTMESH_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=env("REACTMESH_LOG_FORMAT", "text"),
        help="text, or json: one object per line with region, role and node ($REACTMESH_LOG_FORMAT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run one or more roles in this process", formatter_class=shown)
    serve.add_argument(
        "--target",
        type=_targets,
        default=env("REACTMESH_TARGET", "all"),
        help="all, or a comma list of edge, aggregator, broadcaster, gateway ($REACTMESH_TARGET)",
    )
    serve.add_argument(
        "--config",
        default=env("REACTMESH_CONFIG"),
        required=env("REACTMESH_CONFIG") is None,
        help="the node's TOML file ($REACTMESH_CONFIG)",
    )
    serve.add_argument(
        "--supervisor-fd",
        type=int,
        default=None,
        metavar="FD",
        help="a socket to the supervising process (reactmesh up): 'ready' is written to it once serving, and its"
        " end of file stops this process",
    )

    up = sub.add_parser("up", help="start simulated regions on loopback (Ctrl-C stops them)", formatter_class=shown)
    up.add_argument("--regions", default="a,b,c", help="comma list of region names")
    up.add_argument(
        "--base-port",
        type=number(int, 1, 65_000),
        default=env("REACTMESH_BASE_PORT", "7100"),
        help="region i uses base+10i .. base+10i+8 ($REACTMESH_BASE_PORT)",
    )
    up.add_argument(
        "--data-dir",
        default=env("REACTMESH_DATA_DIR"),
        help="where the stores and logs go ($REACTMESH_DATA_DIR; default: a new temporary directory)",
    )
    up.add_argument("--demo", action="store_true", help="also drive a demo load and show live counts")
    up.add_argument(
        "--duration", type=number(float, 0), default=0.0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    up.add_argument("--auth", action="store_true", help="require tokens, signed with a generated dev key")
    up.add_argument("--tls", action="store_true", help="a throwaway CA in the data dir; mTLS between every node")

    load = sub.add_parser("load", help="drive simulated viewers through the client SDK", formatter_class=shown)
    load.add_argument(
        "--edge",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="edge address; repeat for failover (default: $REACTMESH_EDGE, else 127.0.0.1:7100)",
    )
    load.add_argument(
        "--viewers", type=number(int, 1, 100_000), default=200, help="simulated viewers, one session each"
    )
    load.add_argument("--streams", type=number(int, 1, 100_000), default=20, help="streams they watch")
    load.add_argument("--duration", type=number(float, 0.001), default=10.0, help="seconds of tapping")
    load.add_argument("--taps-per-second", type=number(float, 0.001), default=5.0, help="per viewer")
    load.add_argument("--hot-share", type=number(float, 0, 1), default=0.5, help="share of viewers on the hot stream")
    load.add_argument("--stream-prefix", default="demo", help="streams are PREFIX-0 (the hot one), PREFIX-1, ...")
    load.add_argument("--seed", type=number(int), default=1, help="seed of the viewers' random choices")
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    load.add_argument("--key", default=env("REACTMESH_AUTH_KEY"), help="mint a token per viewer with this key file")
    add_tls_ca(load)
    load.add_argument(
        "--connect-timeout", type=number(float, 0.1), default=5.0, help="seconds to wait for an edge to answer"
    )

    watch = sub.add_parser("watch", help="show live counts of a stream", formatter_class=shown)
    watch.add_argument("stream", help="stream id")
    watch.add_argument(
        "--broadcaster",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="broadcaster address; repeat to compare (default: $REACTMESH_BROADCASTER, else 127.0.0.1:7300)",
    )
    watch.add_argument("--duration", type=number(float, 0), default=0.0, help="stop after this many seconds (0: never)")
    watch.add_argument(
        "--connect-timeout", type=number(float, 0.1), default=5.0, help="seconds to wait for a broadcaster to answer"
    )
    watch.add_argument("--token", default=env("REACTMESH_TOKEN"), help="bearer token (default $REACTMESH_TOKEN)")
    add_tls_ca(watch)

    from reactmesh.region_node.cli.poll import add_poll_commands

    add_poll_commands(sub)

    from reactmesh.region_node.cli.comments import add_comments_commands

    add_comments_commands(sub)

    from reactmesh.region_node.cli.admin import add_admin_commands

    add_admin_commands(sub)

    from reactmesh.region_node.cli.token import add_token_command

    add_token_command(sub)

    from reactmesh.region_node.cli.export import add_export_command

    add_export_command(sub)

    from reactmesh.region_node.cli.certs import add_certs_command

    add_certs_command(sub)

    bench = sub.add_parser("bench", help="run a benchmark scenario (see BENCHMARKS.md)")
    bench.add_argument("scenario", help="a scenario of BENCHMARKS.md (ingest, fanout, converge, ...), or all")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the scenario's own options (e.g. --quick)")
    return parser


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is on Linux), else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return int(uvloop.run(coro))


def main(argv: Sequence[str] | None = None) -> int:
    from reactmesh.region_node.cli.common import UserError

    args = build_parser().parse_args(argv)
    configure_logs(args.log_level, args.log_format)
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
        if args.command == "comments":
            from reactmesh.region_node.cli.comments import run_comments

            return run_async(run_comments(args))
        if args.command == "admin":
            from reactmesh.region_node.cli.admin import run_admin

            return run_async(run_admin(args))
        if args.command == "token":
            from reactmesh.region_node.cli.token import run_token

            return run_token(args)
        if args.command == "export":
            from reactmesh.region_node.cli.export import run_export

            return run_export(args)
        if args.command == "certs":
            from reactmesh.region_node.cli.certs import run_certs

            return run_certs(args)
        if args.command == "bench":
            from reactmesh.region_node.cli.bench import run_bench

            return run_bench(args)
    except ConfigError as exc:
        print(f"reactmesh: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"reactmesh {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
