"""A broadcaster's merged totals read over the Query service, and waiting until they equal a ground truth."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import grpc

from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.edge.sdk import ReactionClient
from reactmesh.v1 import ingest_pb2, query_pb2, query_pb2_grpc

CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)


async def merged_totals(
    address: str,
    streams: Iterable[str],
    timeout: float = 2.0,  # noqa: ASYNC109
    credentials: grpc.ChannelCredentials | None = None,
) -> Counter[str]:
    """A broadcaster's merged global totals, per "stream/emoji" (over TLS with ``credentials``)."""
    out: Counter[str] = Counter()
    channel = (
        grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        if credentials is not None
        else grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    )
    async with channel:
        stub = query_pb2_grpc.QueryStub(channel)
        for s in streams:
            reply = await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id=s), timeout=timeout)
            for c in reply.totals:
                out[f"{s}/{c.emoji}"] = c.count
    return +out


async def converge_to(address: str, truth: Counter[str]) -> None:
    streams = sorted({k.split("/")[0] for k in truth})
    last: list[Counter[str]] = [Counter()]

    async def check() -> bool:
        last[0] = await merged_totals(address, streams)
        return last[0] == truth

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await check():
        if loop.time() > deadline:
            diff = {
                k: (last[0].get(k, 0), truth.get(k, 0))
                for k in set(last[0]) | set(truth)
                if last[0].get(k) != truth.get(k)
            }
            raise AssertionError(f"totals differ from ground truth (merged, truth): {diff}")
        await asyncio.sleep(0.1)


async def wait_converged(
    broadcasters: Mapping[str, str],
    truth: Counter[str],
    within: float = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> float:
    """Poll every broadcaster until each one's totals equal ``truth`` exactly; return the seconds it took.

    Fails naming, per region, the keys that differ (merged, truth) when ``within`` passes first.
    """
    streams = sorted({k.split("/")[0] for k in truth})
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = dict(broadcasters)
    last: dict[str, Counter[str] | str] = {}
    while pending:
        for region, address in list(pending.items()):
            try:
                got = await merged_totals(address, streams, credentials=credentials)
            except grpc.aio.AioRpcError as exc:
                last[region] = f"query failed: {exc.code()}"
                continue
            last[region] = got
            if got == truth:
                del pending[region]
        if not pending:
            break
        if loop.time() - started > within:
            raise AssertionError(f"not converged within {within} s: {_differences(pending, last, truth)}")
        await asyncio.sleep(0.05)
    return loop.time() - started


def _differences(pending: Mapping[str, str], last: Mapping[str, Counter[str] | str], truth: Counter[str]) -> str:
    parts = []
    for region in pending:
        got = last.get(region, "no answer")
        if isinstance(got, str):
            parts.append(f"{region}: {got}")
            continue
        diff = {k: (got.get(k, 0), truth.get(k, 0)) for k in set(got) | set(truth) if got.get(k) != truth.get(k)}
        missing = sum(truth.values()) - sum(got.values())
        parts.append(f"{region}: {missing} taps short; (merged, truth) {dict(sorted(diff.items())[:8])}")
    return "; ".join(parts)


async def probe_replication_lag(
    edge: str, broadcasters: Mapping[str, str], samples: int = 10, spacing_s: float = 0.1, within: float = 10.0
) -> dict[str, list[float]]:
    """Seconds from a tap's ack at ``edge`` until each broadcaster's totals show it, per region.

    The ack comes after the aggregator's commit, so this is commit -> gossip to the local broadcaster ->
    gossip between regions -> visible in Query, plus up to 10 ms of polling. Probes use fresh streams
    ("lagprobe-<n>-<i>"), so they change no totals a test compares.
    """
    tag = time.monotonic_ns() % 10**9
    loop = asyncio.get_running_loop()
    acked: dict[str, asyncio.Future[float]] = {}

    def on_ack(batch: ingest_pb2.ClientBatch, ack: ingest_pb2.BatchAck) -> None:
        waiter = acked.get(batch.stream_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(loop.time())

    client = ReactionClient([edge], viewer_id=f"lagprobe-{tag}", batch_interval_s=0.005, on_ack=on_ack)
    out: dict[str, list[float]] = {r: [] for r in broadcasters}

    async def seen(address: str, stream: str, acked_at: float) -> float:
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            while loop.time() - acked_at < within:
                reply = await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id=stream), timeout=2)
                if any(c.count for c in reply.totals):
                    return loop.time() - acked_at
                await asyncio.sleep(0.01)
        raise AssertionError(f"probe {stream} not visible at {address} within {within} s")

    async def probe(i: int) -> None:
        await asyncio.sleep(i * spacing_s)
        stream = f"lagprobe-{tag}-{i}"
        acked[stream] = loop.create_future()
        client.tap(stream, DEFAULT_REACTIONS[0])
        acked_at = await asyncio.wait_for(acked[stream], within)
        lags = await asyncio.gather(*(seen(a, stream, acked_at) for a in broadcasters.values()))
        for region, lag in zip(broadcasters, lags, strict=True):
            out[region].append(lag)

    try:
        await client.start()
        await asyncio.gather(*(probe(i) for i in range(samples)))
    finally:
        await client.close()
    return out


def describe_lags(lags: Mapping[str, Sequence[float]]) -> str:
    def pct(xs: Sequence[float], q: float) -> float:
        s = sorted(xs)
        return s[min(len(s) - 1, round(q * (len(s) - 1)))] * 1000

    return ", ".join(f"{r} p50 {pct(xs, 0.5):.0f} ms p99 {pct(xs, 0.99):.0f} ms" for r, xs in lags.items() if xs)
