"""Benchmark load generator: simulated viewers through the client SDK, open loop, one process.

``python -m reactmesh.bench.loader --edge HOST:PORT --viewers N --rate R --duration D`` runs N
``reactmesh.edge.sdk.ReactionClient`` sessions (each its own Ingest stream, over a few shared channels) and closes
one batch per viewer every N/R seconds, whether or not earlier ones were acked (viewers do not wait), unless
the viewer already has ``--max-unacked`` batches unacked: then the SDK keeps its taps pending and puts them in a
later, bigger batch (its backpressure; a small value makes the load closed-loop). Each
batch holds ``--taps-per-batch`` taps over one to three emojis of the viewer's stream; viewers pick streams
with a hot share on stream 0 and a Zipf(1) spread over the rest. Unlike ``reactmesh load`` it does no
per-tap work: a batch is ``tap(stream, emoji, n)`` calls then ``tick()``.

Acks counted and ack latencies (``client_time_ms`` of the batch, set when the SDK closed it, to the ack's
arrival) are taken only inside the measurement window ``[start_at + warmup, start_at + warmup + duration)``
on the wall clock, so several loader processes share one window. ``attempt_latencies_ms`` are from the batch's
last send to its ack (they leave out a wait for a retry-after); ``tap_latencies_ms`` from the first tap a batch
holds to its ack (they add the time taps waited in the SDK for room in the send window, e.g. while a RETRY
pauses the stream: what a viewer's tap waits to be counted); with ``--bucket-s`` the latencies from close are
also kept per time bucket from ``--bucket-origin`` (``buckets``: start, acks, p50 and p99 of each), for phases
such as a spike.
Afterwards the loader flushes every client and prints one JSON line: window figures, totals, and the accepted
taps per "stream/emoji" (ground truth).

With ``--join`` every viewer first sends one batch of one tap and waits for its ack, so that each has its
Ingest stream open and read by the edge before the load starts (viewers of a live event are connected before
the moment that makes them tap). The loader then prints ``joined`` on a line of its own and, with
``--start-file``, waits for that file to hold a wall-clock origin (the scenario writes it once every loader has
joined): tapping starts ``--start-at`` seconds after it, and buckets count from it. ``join_*`` figures: from the
join's start to each viewer's first ack.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import grpc

from reactmesh.bench.procs import emit_result, run_loop
from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.edge.sdk import ReactionClient
from reactmesh.v1 import ingest_pb2

_ACCEPTED = ingest_pb2.BatchAck.ACCEPTED
_DUPLICATE = ingest_pb2.BatchAck.DUPLICATE
_MAX_SAMPLES = 20_000
_MAX_BUCKET_SAMPLES = 2_000


def stream_of(rng: random.Random, streams: int, hot_share: float) -> int:
    if streams <= 1 or rng.random() < hot_share:
        return 0
    weights = [1 / k for k in range(1, streams)]
    return 1 + rng.choices(range(streams - 1), weights)[0]


def batch_patterns(rng: random.Random, taps: int, count: int) -> list[list[tuple[str, int]]]:
    """``count`` ways to split ``taps`` taps over one to three emojis (skewed towards the first ones)."""
    emojis = list(DEFAULT_REACTIONS)
    out = []
    for _ in range(count):
        kinds = min(taps, rng.choice((1, 1, 2, 3)))
        chosen = rng.sample(emojis[:4], kinds)
        cuts = sorted(rng.sample(range(1, taps), kinds - 1)) if kinds > 1 else []
        bounds = [0, *cuts, taps]
        out.append([(e, bounds[i + 1] - bounds[i]) for i, e in enumerate(chosen)])
    return out


def _always(channel: Any) -> Callable[[str], Any]:
    return lambda _address: channel


class Window:
    """Acks and latencies inside the measurement window."""

    def __init__(self, begin: float, end: float, rng: random.Random, start: float = 0.0, bucket_s: float = 0.0) -> None:
        self.begin_ms = begin * 1000
        self.end_ms = end * 1000
        self.start_ms = start * 1000
        self.bucket_ms = bucket_s * 1000
        self.buckets: dict[int, list[float]] = {}
        self.bucket_acks: Counter[int] = Counter()
        self.clients: list[ReactionClient] = []
        self.batches = 0
        self.taps = 0
        self.latencies: list[float] = []
        self.attempts: list[float] = []
        self.tap_delays: list[float] = []
        self.first_tap: list[dict[int, float]] = []  # per viewer: seq -> wall ms of the batch's first tap
        self.seen = 0
        self.rng = rng
        self.accepted: Counter[str] = Counter()
        self.acked = 0
        self.accepted_taps = 0
        self.rate_limited = 0

    def on_ack(self, viewer: int, batch: ingest_pb2.ClientBatch, ack: ingest_pb2.BatchAck) -> None:
        outcome = ack.outcome
        first_tap = self.first_tap[viewer].pop(batch.seq, batch.client_time_ms)  # every settled batch leaves
        if outcome == _ACCEPTED:
            self.acked += 1
            self.accepted_taps += ack.accepted_taps
            if ack.rate_limited_taps:
                self.rate_limited += ack.rate_limited_taps
                self.accepted[f"{batch.stream_id}/*"] += ack.accepted_taps
            else:
                for c in batch.counts:
                    self.accepted[f"{batch.stream_id}/{c.emoji}"] += c.count
        elif outcome == _DUPLICATE:
            self.acked += 1
            for c in batch.counts:
                self.accepted[f"{batch.stream_id}/{c.emoji}"] += c.count
        else:
            return
        now_ms = time.time() * 1000
        latency = now_ms - batch.client_time_ms
        if self.bucket_ms and now_ms >= self.start_ms:
            b = int((now_ms - self.start_ms) // self.bucket_ms)
            self.bucket_acks[b] += 1
            samples = self.buckets.setdefault(b, [])
            if len(samples) < _MAX_BUCKET_SAMPLES:
                samples.append(latency)
            else:
                j = self.rng.randrange(self.bucket_acks[b])
                if j < _MAX_BUCKET_SAMPLES:
                    samples[j] = latency
        if self.begin_ms <= now_ms < self.end_ms:
            self.batches += 1
            self.taps += ack.accepted_taps
            # Reservoir samples of the latencies, from the batch's close and from its last send.
            self.seen += 1
            attempt = self.clients[viewer].last_ack_latency_s * 1000
            if len(self.latencies) < _MAX_SAMPLES:
                self.latencies.append(latency)
                self.attempts.append(attempt)
                self.tap_delays.append(now_ms - first_tap)
            else:
                j = self.rng.randrange(self.seen)
                if j < _MAX_SAMPLES:
                    self.latencies[j] = latency
                    self.attempts[j] = attempt
                    self.tap_delays[j] = now_ms - first_tap

    def bucket_summary(self) -> list[list[float]]:
        """[start_s, acks, p50_ms, p99_ms] per bucket, in time order."""
        out = []
        for b in sorted(self.buckets):
            samples = sorted(self.buckets[b])
            n = len(samples)
            out.append(
                [
                    b * self.bucket_ms / 1000,
                    self.bucket_acks[b],
                    samples[n // 2],
                    samples[min(n - 1, int(n * 0.99))],
                ]
            )
        return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    start_at = args.start_at or time.time() + 1.0
    window = Window(
        start_at + args.warmup,
        start_at + args.warmup + args.duration,
        random.Random(args.seed + 1),
        start=args.bucket_origin or start_at,
        bucket_s=args.bucket_s,
    )
    options = (("grpc.max_receive_message_length", 16 * 1024 * 1024),)
    channels = [grpc.aio.insecure_channel(args.edge, options=options) for _ in range(args.channels)]
    clients: list[ReactionClient] = []
    streams: list[str] = []
    for v in range(args.viewers):
        channel = channels[v % len(channels)]
        clients.append(
            ReactionClient(
                [args.edge],
                viewer_id=f"bench-{args.seed}-{v}",
                batch_interval_s=3600.0,  # batches are closed by tick() below, not by the SDK's timer
                max_unacked_batches=args.max_unacked,
                ack_timeout_s=30.0,
                rng=random.Random(rng.getrandbits(32)),
                on_ack=partial(window.on_ack, v),
                channel_factory=_always(channel),
            )
        )
        window.clients.append(clients[-1])
        window.first_tap.append({})
        streams.append(f"{args.stream_prefix}-{stream_of(rng, args.streams, args.hot_share)}")
    patterns = batch_patterns(rng, args.taps_per_batch, 64)
    for client in clients:
        await client.start()
    joined: list[float] = []
    if args.join:
        bounds = (window.begin_ms, window.end_ms, window.start_ms)
        window.begin_ms = window.end_ms = window.start_ms = float("inf")  # join acks fall in no window or bucket
        joined = await join(clients, streams, args.flush_timeout)
        print("joined", flush=True)
        if args.start_file:
            origin = await read_start(args.start_file, args.flush_timeout)
            start_at = origin + args.start_at
            bounds = ((start_at + args.warmup) * 1000, (start_at + args.warmup + args.duration) * 1000, origin * 1000)
        window.begin_ms, window.end_ms, window.start_ms = bounds

    loop_lags: list[float] = []

    async def watch_loop() -> None:
        # How late this process's own loop runs a 20 ms timer: a loader that cannot keep up adds its own queue
        # to every latency it measures.
        while True:
            due = loop.time() + 0.02
            await asyncio.sleep(0.02)
            if window.begin_ms <= time.time() * 1000 < window.end_ms:
                loop_lags.append((loop.time() - due) * 1000)

    period = args.viewers / args.rate  # seconds between two batches of one viewer
    slices = max(1, min(args.viewers, int(period / 0.005)))  # wake about every 5 ms
    per_slice = [list(range(i, args.viewers, slices)) for i in range(slices)]
    loop = asyncio.get_running_loop()
    watcher = asyncio.ensure_future(watch_loop())
    wall_to_loop = loop.time() - time.time()
    begin = start_at + wall_to_loop
    end = start_at + args.warmup + args.duration + args.cooldown + wall_to_loop
    made = 0
    k = 0
    lag_max = 0.0
    first_taps = window.first_tap
    pending_since: list[float | None] = [None] * args.viewers  # wall ms of each viewer's oldest pending tap
    while True:
        due = begin + k * period / slices
        if due >= end:
            break
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag_max = max(lag_max, -delay)
        now_ms = time.time() * 1000
        for v in per_slice[k % slices]:
            client = clients[v]
            stream = streams[v]
            for emoji, n in patterns[(made + v) & 63]:
                client.tap(stream, emoji, n)
            since = pending_since[v]
            if since is None:
                since = now_ms
            cut = client.tick()
            if cut:
                last = client.last_seq
                for seq in range(last - cut + 1, last + 1):
                    first_taps[v][seq] = since
            pending_since[v] = since if client.pending_taps else None
            made += 1
        k += 1
    tapping_ended = time.time()
    watcher.cancel()
    loop_lags.sort()
    flushed = True
    try:
        await asyncio.wait_for(asyncio.gather(*(c.flush(args.flush_timeout) for c in clients)), args.flush_timeout + 5)
    except Exception:
        flushed = False
    drained_s = time.time() - tapping_ended
    totals = Counter[str]()
    for client in clients:
        st = client.statistics()
        totals["batches"] += st.batches
        totals["resent"] += st.batches_resent
        totals["reconnects"] += st.reconnects
        totals["unacked"] += st.unacked_batches
        totals["rejected"] += st.acks_rejected
        totals["retry"] += st.acks_retry
        totals["retry_pauses"] += st.retry_pauses
    for client in clients:
        await client.close()
    for channel in channels:
        await channel.close()
    joined.sort()
    return {
        "join_p50_s": joined[len(joined) // 2] if joined else 0.0,
        "join_p99_s": joined[int(len(joined) * 0.99)] if joined else 0.0,
        "join_max_s": joined[-1] if joined else 0.0,
        "viewers": args.viewers,
        "offered_batches_per_s": args.rate,
        "window_s": args.duration,
        "window_batches": window.batches,
        "window_taps": window.taps,
        "latencies_ms": window.latencies,
        "attempt_latencies_ms": window.attempts,
        "tap_latencies_ms": window.tap_delays,
        "buckets": window.bucket_summary(),
        "acks_retry": totals["retry"],
        "retry_pauses": totals["retry_pauses"],
        "batches_made": made,
        "batches_acked": window.acked,
        "taps_accepted": window.accepted_taps,
        "taps_rate_limited": window.rate_limited,
        "batches_resent": totals["resent"],
        "reconnects": totals["reconnects"],
        "batches_unacked": totals["unacked"],
        "batches_rejected": totals["rejected"],
        "flushed": flushed,
        "drain_s": round(drained_s, 3),
        "schedule_lag_max_s": round(lag_max, 3),
        "loop_lag_p50_ms": loop_lags[len(loop_lags) // 2] if loop_lags else 0.0,
        "loop_lag_p99_ms": loop_lags[int(len(loop_lags) * 0.99)] if loop_lags else 0.0,
        "accepted": dict(window.accepted),
    }


async def join(clients: list[ReactionClient], streams: list[str], within: float) -> list[float]:
    """One batch of one tap per viewer, all at once; seconds from the start to each viewer's first ack."""
    began = time.monotonic()

    async def one(client: ReactionClient, stream: str) -> float:
        client.tap(stream, DEFAULT_REACTIONS[0], 1)
        await client.flush(within)
        return time.monotonic() - began

    return list(await asyncio.gather(*(one(c, s) for c, s in zip(clients, streams, strict=True))))


def _read_text(path: str) -> str:
    """The file's stripped text, "" while it does not exist (a few bytes: not worth a thread)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


async def read_start(path: str, within: float) -> float:
    """The start time a scenario writes to ``path`` (a float, Unix s), waiting up to ``within`` s for it."""
    deadline = time.monotonic() + within
    while True:
        text = _read_text(path)
        if text:
            return float(text)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no start time in {path} within {within} s")
        await asyncio.sleep(0.01)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.loader", description=__doc__.split("\n\n")[0])
    p.add_argument("--edge", required=True)
    p.add_argument("--viewers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=4000.0, help="client batches per second, this process")
    p.add_argument("--taps-per-batch", type=int, default=10)
    p.add_argument("--streams", type=int, default=50)
    p.add_argument("--hot-share", type=float, default=0.3)
    p.add_argument("--stream-prefix", default="bench")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument(
        "--max-unacked", type=int, default=1024, help="batches a viewer may have unacked (small: closed loop)"
    )
    p.add_argument(
        "--start-at",
        type=float,
        default=0.0,
        help="wall clock (Unix s) when tapping starts; with --start-file, seconds after the time the file holds",
    )
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--cooldown", type=float, default=0.5, help="keep tapping this long after the window")
    p.add_argument("--flush-timeout", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bucket-s", type=float, default=0.0, help="also keep latencies per bucket of this many seconds")
    p.add_argument("--bucket-origin", type=float, default=0.0, help="wall clock of bucket 0 (default --start-at)")
    p.add_argument("--join", action="store_true", help="connect every viewer (one acked batch) before the load")
    p.add_argument("--start-file", default="", help="with --join: wait for this file to hold the start time")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    result = run_loop(lambda: run(args))
    emit_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
