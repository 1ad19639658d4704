"""``reactmesh load``: simulated viewers tapping through the client SDK.

Each viewer is one ReactionClient (its own session and Ingest stream). Viewers pick a stream with
a skew: ``hot_share`` of them watch stream 0 (the viral one), the rest spread Zipf-like over the
others. Taps arrive as a Poisson process per viewer. The summary gives taps sent and acked,
rates, and ack latency percentiles, and is the ground truth the tests compare totals against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import grpc

from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.edge.sdk import ReactionClient
from reactmesh.edge.tokens import Minter
from reactmesh.region_node.cli.tlsopts import credentials
from reactmesh.v1 import ingest_pb2


@dataclass
class LoadSummary:
    viewers: int
    duration_s: float
    taps_sent: int
    taps_accepted: int
    taps_rate_limited: int
    batches_acked: int
    batches_rejected: int
    reconnects: int
    resent_batches: int
    taps_per_s: float
    batches_per_s: float
    ack_latency_ms_p50: float
    ack_latency_ms_p99: float
    # (stream, emoji) -> taps accepted, as acked to the clients
    accepted: dict[str, int] = field(default_factory=dict)


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return 0.0
    s = sorted(samples)
    return float(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))])


def pick_stream(rng: random.Random, streams: int, hot_share: float) -> int:
    if streams == 1 or rng.random() < hot_share:
        return 0
    weights = [1 / k for k in range(1, streams)]
    return 1 + rng.choices(range(streams - 1), weights)[0]


async def drive(
    edges: Sequence[str],
    *,
    viewers: int,
    streams: int,
    duration_s: float,
    taps_per_second: float,
    hot_share: float = 0.5,
    stream_prefix: str = "demo",
    seed: int = 1,
    progress: bool = False,
    stop: asyncio.Event | None = None,
    flush_timeout_s: float = 60.0,
    minter: Minter | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> LoadSummary:
    """Run the load and wait until every batch is acked; return the summary. With ``minter`` every viewer sends
    a viewer token of its own (auth on); over TLS with ``credentials``."""
    rng = random.Random(seed)
    emojis = list(DEFAULT_REACTIONS)
    clients: list[tuple[ReactionClient, str]] = []
    sent: Counter[tuple[str, str]] = Counter()
    accepted: Counter[str] = Counter()

    def on_ack(batch: ingest_pb2.ClientBatch, ack: ingest_pb2.BatchAck) -> None:
        # Ground truth per (stream, emoji). A partially rate-limited batch does not say which emojis
        # were dropped, so it is recorded under "<stream>/*"; DUPLICATE means counted by an earlier send.
        if ack.outcome == ingest_pb2.BatchAck.ACCEPTED and ack.rate_limited_taps:
            accepted[f"{batch.stream_id}/*"] += ack.accepted_taps
        elif ack.outcome in (ingest_pb2.BatchAck.ACCEPTED, ingest_pb2.BatchAck.DUPLICATE):
            for c in batch.counts:
                accepted[f"{batch.stream_id}/{c.emoji}"] += c.count

    for v in range(viewers):
        # Spread viewers over the given edges, each client failing over to the others.
        order = [*edges[v % len(edges) :], *edges[: v % len(edges)]]
        viewer_id = f"viewer-{seed}-{v}"
        client = ReactionClient(
            order,
            viewer_id=viewer_id,
            rng=random.Random(rng.getrandbits(32)),
            on_ack=on_ack,
            token=minter.mint(viewer_id) if minter is not None else None,
            credentials=credentials,
        )
        stream = f"{stream_prefix}-{pick_stream(rng, streams, hot_share)}"
        clients.append((client, stream))
    try:
        for client, _ in clients:
            await client.start()
        started = time.monotonic()
        stop = stop or asyncio.Event()

        async def viewer(client: ReactionClient, stream: str, r: random.Random) -> None:
            end = started + duration_s
            while not stop.is_set():
                await asyncio.sleep(r.expovariate(taps_per_second))
                if time.monotonic() >= end or stop.is_set():
                    return
                emoji = emojis[min(len(emojis) - 1, int(r.expovariate(1.0)))]
                client.tap(stream, emoji)
                sent[(stream, emoji)] += 1

        tasks = [asyncio.create_task(viewer(c, s, random.Random(rng.getrandbits(32)))) for c, s in clients]
        progress_task = asyncio.create_task(_progress(clients, sent, started, duration_s)) if progress else None
        try:
            await asyncio.gather(*tasks)
            await asyncio.gather(*(c.flush(flush_timeout_s) for c, _ in clients))
        finally:
            for t in tasks:
                t.cancel()
            if progress_task is not None:
                progress_task.cancel()
        elapsed = time.monotonic() - started
    finally:
        # Also on cancellation: closing stops every client's reconnect loop.
        for client, _ in clients:
            await client.close()
    return summarise(clients, sent, accepted, viewers, elapsed)


def summarise(
    clients: Sequence[tuple[ReactionClient, str]],
    sent: Counter[tuple[str, str]],
    accepted: Counter[str],
    viewers: int,
    elapsed: float,
) -> LoadSummary:
    latencies: list[float] = []
    totals = Counter[str]()
    for client, _ in clients:
        st = client.statistics()
        latencies.extend(x * 1000 for x in st.ack_latencies_s)
        totals["accepted"] += st.accepted_taps
        totals["rate_limited"] += st.rate_limited_taps
        totals["acked"] += st.acks_accepted + st.acks_duplicate
        totals["rejected"] += st.acks_rejected
        totals["reconnects"] += st.reconnects
        totals["resent"] += st.batches_resent
    taps = sum(sent.values())
    return LoadSummary(
        viewers=viewers,
        duration_s=round(elapsed, 3),
        taps_sent=taps,
        taps_accepted=totals["accepted"],
        taps_rate_limited=totals["rate_limited"],
        batches_acked=totals["acked"],
        batches_rejected=totals["rejected"],
        reconnects=totals["reconnects"],
        resent_batches=totals["resent"],
        taps_per_s=round(taps / elapsed, 1) if elapsed else 0.0,
        batches_per_s=round(totals["acked"] / elapsed, 1) if elapsed else 0.0,
        ack_latency_ms_p50=round(percentile(latencies, 0.50), 1),
        ack_latency_ms_p99=round(percentile(latencies, 0.99), 1),
        accepted=dict(sorted(accepted.items())),
    )


async def _progress(
    clients: Sequence[tuple[ReactionClient, str]], sent: Counter[tuple[str, str]], started: float, duration: float
) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("load"),
        BarColumn(),
        TextColumn("{task.fields[taps]} taps, {task.fields[acked]} acked"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("load", total=duration, taps=0, acked=0)
        while True:
            acked = sum(c.statistics().accepted_taps for c, _ in clients)
            bar.update(task, completed=min(duration, time.monotonic() - started), taps=sum(sent.values()), acked=acked)
            await asyncio.sleep(0.25)


async def run_load(args: argparse.Namespace) -> int:
    from reactmesh.region_node.cli.common import UserError, require_reachable
    from reactmesh.region_node.cli.token import minter

    await require_reachable(args.edge, "edge", any_of=True, within=args.connect_timeout)
    flush_timeout_s = 60.0
    try:
        summary = await drive(
            args.edge,
            viewers=args.viewers,
            streams=args.streams,
            duration_s=args.duration,
            taps_per_second=args.taps_per_second,
            hot_share=args.hot_share,
            stream_prefix=args.stream_prefix,
            seed=args.seed,
            progress=not args.no_progress and not args.json,
            flush_timeout_s=flush_timeout_s,
            minter=minter(args, ttl_s=int(args.duration) + 3600),
            credentials=credentials(args.tls_ca),
        )
    except TimeoutError:
        raise UserError(
            f"taps still unacknowledged {flush_timeout_s:g} s after the load ended: is {', '.join(args.edge)} an edge"
            " whose aggregators are serving?"
        ) from None
    if args.json:
        print(json.dumps(asdict(summary)))
        return 0
    print(
        f"viewers {summary.viewers}  duration {summary.duration_s} s\n"
        f"taps sent {summary.taps_sent}  accepted {summary.taps_accepted}  rate-limited {summary.taps_rate_limited}\n"
        f"batches acked {summary.batches_acked}  rejected {summary.batches_rejected}  "
        f"resent {summary.resent_batches}  reconnects {summary.reconnects}\n"
        f"rate {summary.taps_per_s} taps/s, {summary.batches_per_s} batches/s\n"
        f"ack latency p50 {summary.ack_latency_ms_p50} ms  p99 {summary.ack_latency_ms_p99} ms"
    )
    return 0
