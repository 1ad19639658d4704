"""The ``reactmesh up --demo`` show: simulated viewers in every region, a live table of what each region's
broadcaster shows for the hot stream next to the exact global totals, and the hot stream's live comments (posted
in every region, watched from the first region's broadcaster)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Mapping

import grpc
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from reactmesh.edge.sdk import LiveView
from reactmesh.edge.tokens import Minter, bearer
from reactmesh.region_node.cli.load import drive
from reactmesh.region_node.cli.tlsopts import open_channel
from reactmesh.region_node.cli.watch import follow
from reactmesh.region_node.devmesh import RegionPlan
from reactmesh.v1 import comments_pb2, comments_pb2_grpc, query_pb2, query_pb2_grpc

HOT = "demo-0"
LINES = ("what a goal", "unreal", "ref!!", "let's go", "replay please", "GG", "who else is watching from home")
SHOWN_COMMENTS = 8


async def _post_comments(
    plans: Mapping[str, RegionPlan],
    stop: asyncio.Event,
    minter: Minter | None,
    creds: grpc.ChannelCredentials | None,
    per_second: float = 4.0,
) -> None:
    """Simulated viewers of every region post comments on the hot stream through their region's broadcaster."""
    rng = random.Random()
    channels = {r: open_channel(p.broadcaster, creds) for r, p in plans.items()}
    stubs = {r: comments_pb2_grpc.CommentsServiceStub(c) for r, c in channels.items()}
    try:
        while not stop.is_set():
            r = rng.choice(list(plans))
            viewer = f"{r}-viewer-{rng.randrange(60)}"
            req = comments_pb2.PostCommentRequest(stream_id=HOT, viewer_id=viewer, text=rng.choice(LINES))
            token = minter.mint(viewer) if minter is not None else None
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stubs[r].PostComment(req, timeout=2.0, metadata=bearer(token))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / per_second)
    finally:
        for c in channels.values():
            await c.close()


async def _watch_comments(
    address: str, shown: deque[str], token: str | None, creds: grpc.ChannelCredentials | None
) -> None:
    """Keep the last comments of the hot stream (as the first region's broadcaster delivers them) in ``shown``."""
    while True:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async with open_channel(address, creds) as channel:
                call = comments_pb2_grpc.CommentsServiceStub(channel).WatchComments(
                    comments_pb2.WatchCommentsRequest(stream_id=HOT), metadata=bearer(token)
                )
                async for msg in call:
                    for c in msg.frame.comments:
                        shown.append(f"{c.viewer_id}: {c.text}")
        await asyncio.sleep(0.5)


def _view(table: Table, shown: deque[str]) -> Group:
    lines = Text("\n".join(shown) if shown else "(no comments yet)")
    return Group(table, Text(f"live comments on {HOT}:", style="bold"), lines)


async def _totals(
    address: str, stream: str, token: str | None = None, creds: grpc.ChannelCredentials | None = None
) -> dict[str, int]:
    async with open_channel(address, creds) as channel:
        reply = await query_pb2_grpc.QueryStub(channel).GetTotals(
            query_pb2.GetTotalsRequest(stream_id=stream), timeout=2.0, metadata=bearer(token)
        )
    return {c.emoji: c.count for c in reply.totals}


def _table(plans: Mapping[str, RegionPlan], views: dict[str, LiveView], exact: dict[str, dict[str, int]]) -> Table:
    emojis = sorted({e for v in views.values() for e in v.totals} | {e for t in exact.values() for e in t})
    table = Table(title=f"reactmesh demo: stream {HOT} (shown smoothed / exact merged)")
    table.add_column("region")
    for e in emojis:
        table.add_column(e, justify="right")
    table.add_column("total", justify="right")
    for r in plans:
        shown, ex = views[r].totals, exact.get(r, {})
        table.add_row(
            r,
            *(f"{shown.get(e, 0)} / {ex.get(e, 0)}" for e in emojis),
            f"{sum(shown.values())} / {sum(ex.values())}",
        )
    return table


async def run_demo(
    plans: Mapping[str, RegionPlan],
    stop: asyncio.Event,
    minter: Minter | None = None,
    creds: grpc.ChannelCredentials | None = None,
) -> None:
    """The demo; with ``minter`` (auth on) every simulated viewer and the live table use tokens of their own;
    ``creds``: TLS (the mesh's CA) for every call."""
    # The live table is the demo's output; client reconnect chatter would scroll it away.
    logging.getLogger("reactmesh.edge.sdk").setLevel(logging.ERROR)
    views = {r: LiveView() for r in plans}
    exact: dict[str, dict[str, int]] = {}
    token = minter.mint("demo-watcher") if minter is not None else None
    followers = [asyncio.create_task(follow(p.broadcaster, HOT, views[r], token, creds)) for r, p in plans.items()]
    shown: deque[str] = deque(maxlen=SHOWN_COMMENTS)
    first = next(iter(plans.values()))
    followers.append(asyncio.create_task(_watch_comments(first.broadcaster, shown, token, creds)))
    followers.append(asyncio.create_task(_post_comments(plans, stop, minter, creds)))
    edges = [p.edge for p in plans.values()]
    load = asyncio.create_task(
        drive(
            edges,
            viewers=60 * len(edges),
            streams=10,
            duration_s=3600.0,
            taps_per_second=3.0,
            stop=stop,
            minter=minter,
            credentials=creds,
        )
    )
    try:
        with Live(_view(_table(plans, views, exact), shown), refresh_per_second=8) as live:
            while not stop.is_set():
                for r, p in plans.items():
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        exact[r] = await _totals(p.broadcaster, HOT, token, creds)
                live.update(_view(_table(plans, views, exact), shown))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        # Taps stopped with `stop`: let the clients get their last acks, then wait (briefly) until
        # every region answers the same exact totals in one round of fresh reads and every viewer's
        # smoothed view has drained to them, and print one plain line a script can read.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(load, 15.0)
        for _ in range(60):
            fresh: dict[str, dict[str, int]] = {}
            for r, p in plans.items():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    fresh[r] = await _totals(p.broadcaster, HOT, token, creds)
            if len(fresh) == len(plans):
                exact = fresh
                agreed = len({tuple(sorted(t.items())) for t in fresh.values()}) == 1
                if agreed and all(views[r].totals == fresh[r] for r in plans):
                    break
            await asyncio.sleep(0.25)
        summary = "  ".join(
            f"{r}={sum(exact.get(r, {}).values())} (shown {sum(views[r].totals.values())})" for r in plans
        )
        print(f"\ndemo totals of {HOT}, exact merged per region: {summary}", flush=True)
    finally:
        for t in [*followers, load]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
