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


async def follow(address: str, stream: str, view: LiveView, credentials: grpc.ChannelCredentials | None = None) -> None:
    """Apply every frame of ``stream`` to ``view`` until cancelled (over TLS with ``credentials``)."""
    async for frame in subscribe(stream, broadcaster_addresses=[address], credentials=credentials):
        view.apply(frame)


async def run_watch(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    views = {address: LiveView() for address in args.broadcaster}
    creds = credentials(args.tls_ca)
    tasks = [asyncio.create_task(follow(a, args.stream, v, creds)) for a, v in views.items()]
    if args.duration:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    try:
        with Live(render(args.stream, views), refresh_per_second=10) as live:
            while not stop.is_set():
                live.update(render(args.stream, views))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        for t in tasks:
            t.cancel()
    return 0
