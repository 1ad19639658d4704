"""``reactmesh admin``: mute and unmute viewers, drain streams, list mutes and abuse flags (the Admin service).

    reactmesh admin mute VIEWER [--for 10m] [--reason TEXT]
    reactmesh admin unmute VIEWER
    reactmesh admin drain STREAM [--for 1d]
    reactmesh admin muted [--limit N] [--json]
    reactmesh admin flagged [--limit N] [--json]

Any broadcaster of any region takes the action; it holds in every region within about a second. Every subcommand
takes ``--broadcaster HOST:PORT`` (default $REACTMESH_BROADCASTER, else 127.0.0.1:7300), ``--tls-ca``, and a
moderator token: ``--token`` (default $REACTMESH_TOKEN), or ``--key FILE`` to mint a development one from the
deployment's signing key (subject ``--as``, default "operator"). Durations: seconds, or a number with s, m, h or d.
Exit status: 0 on success, 1 when the broadcaster refuses (status and message on stderr), 2 for a bad duration.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration_s(text: str) -> int:
    """``text`` ("90", "90s", "10m", "2h", "1d") in whole seconds; ArgumentTypeError otherwise."""
    value, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
    try:
        seconds = float(value) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90, 10m, 2h or 1d") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is shorter than a second")
    return int(seconds)


def add_admin_commands(subparsers: Any) -> None:
    """Add ``admin`` and its subcommands to the ``reactmesh`` parser's subparsers."""
    from reactmesh.region_node.cli.tlsopts import broadcaster_options

    common = broadcaster_options("any broadcaster of any region", "moderator token")
    common.add_argument("--key", metavar="FILE", help="mint a moderator dev token from this signing key instead")
    common.add_argument("--as", dest="subject", default="operator", help="subject of a minted token")

    admin = subparsers.add_parser("admin", help="mute viewers, drain streams, list mutes and abuse flags")
    sub = admin.add_subparsers(dest="admin_command", required=True)
    mute = sub.add_parser("mute", parents=[common], help="reject a viewer's taps in every region for a while")
    mute.add_argument("viewer", help="viewer id")
    mute.add_argument("--for", dest="duration", type=duration_s, default=600, help="how long (default 10m; max 30d)")
    mute.add_argument("--reason", default="", help="why (up to 280 chars; shown by `admin muted`)")
    unmute = sub.add_parser("unmute", parents=[common], help="lift a viewer's mute in every region")
    unmute.add_argument("viewer", help="viewer id")
    drain = sub.add_parser("drain", parents=[common], help="end a stream: flush its frames, reject its taps")
    drain.add_argument("stream", help="stream id")
    drain.add_argument("--for", dest="duration", type=duration_s, default=86_400, help="reject taps this long (1d)")
    for name, what in (("muted", "mutes in force"), ("flagged", "viewers the edges' abuse detectors flag")):
        listing = sub.add_parser(name, parents=[common], help=f"list {what}, latest first")
        listing.add_argument("--limit", type=int, default=100, help="at most this many (1..1000)")
        listing.add_argument("--json", action="store_true", help="one JSON object per line")


def _when(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _token(args: argparse.Namespace) -> str | None:
    if args.key:
        from reactmesh.edge.tokens import Minter, Role

        return Minter(args.key).mint(args.subject, roles=(Role.MODERATOR,))
    token: str | None = args.token
    return token


async def run_admin(args: argparse.Namespace) -> int:
    """Run one ``reactmesh admin`` subcommand; return the exit status."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from reactmesh.region_node.cli.tlsopts import credentials, open_channel
    from reactmesh.v1 import admin_pb2, admin_pb2_grpc

    token = _token(args)
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    call: dict[str, Any] = {"timeout": args.timeout, "metadata": metadata}
    command = args.admin_command
    try:
        async with open_channel(args.broadcaster, credentials(args.tls_ca)) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            if command == "mute":
                request = admin_pb2.MuteViewerRequest(
                    viewer_id=args.viewer, duration_s=args.duration, reason=args.reason
                )
                muted = await stub.MuteViewer(request, **call)
                print(f"muted {args.viewer} in every region until {_when(muted.until_ms)}")
            elif command == "unmute":
                await stub.UnmuteViewer(admin_pb2.UnmuteViewerRequest(viewer_id=args.viewer), **call)
                print(f"unmuted {args.viewer} in every region")
            elif command == "drain":
                drain = admin_pb2.DrainStreamRequest(stream_id=args.stream, duration_s=args.duration)
                drained = await stub.DrainStream(drain, **call)
                print(f"drained {args.stream} as of {_when(drained.drained_at_ms)}")
            elif command == "muted":
                mutes = await stub.ListMuted(admin_pb2.ListMutedRequest(limit=args.limit), **call)
                for m in mutes.viewers:
                    if args.json:
                        print(json.dumps(MessageToDict(m, preserving_proto_field_name=True)))
                    else:
                        by = f" by {m.muted_by}" if m.muted_by else ""
                        print(f"{m.viewer_id}\tuntil {_when(m.until_ms)}{by}\t{m.reason}")
                if not args.json and not mutes.viewers:
                    print("nobody is muted")
            else:
                flags = await stub.ListFlagged(admin_pb2.ListFlaggedRequest(limit=args.limit), **call)
                for f in flags.viewers:
                    if args.json:
                        print(json.dumps(MessageToDict(f, preserving_proto_field_name=True)))
                    else:
                        print(f"{f.viewer_id}\t{f.kind}\t{_when(f.raised_at_ms)} by {f.raised_by}\t{f.detail}")
                if not args.json and not flags.viewers:
                    print("nobody is flagged")
    except grpc.aio.AioRpcError as exc:
        print(f"reactmesh admin: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    return 0
