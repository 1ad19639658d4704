"""``reactmesh watch STREAM``: live counts of one stream in the terminal, from a broadcaster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import grpc
from rich.live import Live
from rich.table import Table

from reactmesh.edge.sdk import LiveView, subscribe
from reactmesh.region_node.cli.tlsopts import credentials


def render(stream: str, views: dict[str, LiveView]) -> Table:
    emojis = sorted({e for v in views.values() for e in v.totals})
    table = Table(title=f"stream {stream}")
    table.add_column("source")
    for e in emojis:
        table.add_column(e, justify="right")
    table.add_column("total", justify="right")
    for name, view in views.items():
        table.add_row(name, *(str(view.totals.get(e, 0)) for e in emojis), str(sum(view.totals.values())))
    return table


async def follow(
    address: str,
    stream: str,
    view: LiveView,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Apply every frame of ``stream`` to ``view`` until cancelled (over TLS with ``credentials``)."""
    async for frame in subscribe(stream, broadcaster_addresses=[address], token=token, credentials=credentials):
        view.apply(frame)


async def run_watch(args: argparse.Namespace) -> int:
    """Show the stream until ``--duration`` passes or Ctrl-C; a malformed stream id (status 2), an unreachable
    broadcaster or a refused subscription (status 1) is a UserError."""
    from reactmesh.edge.limits import STREAM_ID_FORM, is_stream_id
    from reactmesh.edge.sdk import ClientError
    from reactmesh.region_node.cli.common import UserError, require_reachable

    if not is_stream_id(args.stream):
        raise UserError(f"stream id must be {STREAM_ID_FORM}, got {args.stream[:140]!r}", 2)
    await require_reachable(args.broadcaster, "broadcaster", within=args.connect_timeout)
    stop = asyncio.Event()
    views = {address: LiveView() for address in args.broadcaster}
    creds = credentials(args.tls_ca)
    tasks = [asyncio.create_task(follow(a, args.stream, v, args.token, creds)) for a, v in views.items()]
    if args.duration:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    try:
        with Live(render(args.stream, views), refresh_per_second=10) as live:
            while not stop.is_set():
                live.update(render(args.stream, views))
                for address, task in zip(views, tasks, strict=True):
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        error = task.exception()
                        if isinstance(error, ClientError):
                            raise UserError(f"broadcaster {address} refused: {error}")
                        raise UserError(f"following {address} failed: {error!r}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        for t in tasks:
            t.cancel()
    return 0
