"""A broadcaster's merged totals read over the Query service, and waiting until they equal a ground truth."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

import grpc

from reactmesh.v1 import query_pb2, query_pb2_grpc

CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)


async def merged_totals(address: str, streams: Iterable[str], timeout: float = 2.0) -> Counter[str]:  # noqa: ASYNC109
    """A broadcaster's merged global totals, per "stream/emoji"."""
    out: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
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
