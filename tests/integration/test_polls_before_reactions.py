"""A host may open a poll on a stream before anyone has tapped on it (issue 12 item 8), on a real broadcaster
process: CreatePoll answers, votes count, and a subscriber of the stream sees the poll."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from reactmesh.edge.sdk import LiveView, subscribe
from reactmesh.v1 import polls_pb2, polls_pb2_grpc
from tests.support.serving import broadcaster_config, serving


async def test_a_poll_on_a_stream_without_reactions_is_created_voted_on_and_broadcast(tmp_path: Path) -> None:
    config = broadcaster_config(tmp_path)
    address = config["broadcaster"]["listen"]
    async with serving(tmp_path, config, "broadcaster"), grpc.aio.insecure_channel(address) as channel:
        stub = polls_pb2_grpc.PollsStub(channel)
        request = polls_pb2.CreatePollRequest(stream_id="kickoff", question="Who scores first?", options=["A", "B"])
        poll = await stub.CreatePoll(request, timeout=5)
        vote = polls_pb2.VoteRequest(poll_id=poll.poll_id, viewer_id="ann", option=1)
        assert list((await stub.Vote(vote, timeout=5)).poll.tallies) == [0, 1]
        view = LiveView()
        frames = subscribe("kickoff", broadcaster_addresses=[address])
        try:
            async with asyncio.timeout(10):
                async for frame in frames:
                    view.apply(frame)
                    if poll.poll_id in view.polls:
                        break
        finally:
            await frames.aclose()  # type: ignore[attr-defined]
        assert list(view.polls[poll.poll_id].tallies) == [0, 1]
