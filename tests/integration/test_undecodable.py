"""Undecodable requests to a broadcaster process's Broadcast, Query and Polls services answer INVALID_ARGUMENT,
and the server logs no traceback (issue 12, item 5); the edge's Ingest does the same (tests/integration/test_edge.py).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.support.serving import broadcaster_config, serving

GARBAGE = b"\xff\xff\xff\xff"  # a field tag with no end: not any protobuf message
UNARY = [
    "/reactmesh.v1.Query/GetTotals",
    "/reactmesh.v1.Query/GetHistory",
    "/reactmesh.v1.Polls/CreatePoll",
    "/reactmesh.v1.Polls/Vote",
    "/reactmesh.v1.Polls/ClosePoll",
    "/reactmesh.v1.Polls/GetPoll",
]


async def test_garbage_to_broadcast_query_and_polls_is_invalid_argument_without_a_traceback(tmp_path: Path) -> None:
    config = broadcaster_config(tmp_path)
    address = config["broadcaster"]["listen"]
    async with serving(tmp_path, config, "broadcaster") as child, grpc.aio.insecure_channel(address) as channel:
        for method in UNARY:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(method)(GARBAGE, timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "undecodable" in (caught.value.details() or ""), method
        call = channel.unary_stream("/reactmesh.v1.Broadcast/Subscribe")(GARBAGE, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "undecodable SubscribeRequest" in (caught.value.details() or "")
    assert child.log is not None
    log = child.log.read_text()
    assert "Traceback" not in log and "Unexpected" not in log, log
