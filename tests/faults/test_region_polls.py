"""Two broadcasters of one region answer polls the same, as Kubernetes runs them (two replicas behind one Service):
real processes on loopback (an edge, two aggregators, two broadcasters), each broadcaster listing both broadcasters
of the region as peers (itself included, which it skips). A poll created on one is found on the other, a vote on
either is tallied on both, and a broadcaster killed with SIGKILL answers the same after its restart.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from reactmesh.edge.sdk import ReactionClient
from reactmesh.region_node.devmesh import free_port_block, plan
from reactmesh.v1 import polls_pb2, polls_pb2_grpc
from tests.support.polling import settled
from tests.support.regions import RegionProcesses

STREAM = "region-polls"


async def test_two_broadcasters_of_a_region_share_polls_and_keep_them_across_kill_9(tmp_path: Path) -> None:
    base = free_port_block(20)
    region = plan(["a"], base, tmp_path)["a"]
    configs = region.split_configs()
    second = f"127.0.0.1:{base + 9}"
    both = [region.broadcaster, second]
    configs["bcast"]["broadcaster"]["peers"] = both
    configs["bcast1"] = {
        "region": "a",
        "broadcaster": {
            **configs["bcast"]["broadcaster"],
            "listen": second,
            "node_id": "a/bcast-1",
            "polls_db_path": str(tmp_path / "a-polls-1.db"),
            "history_db_path": str(tmp_path / "a-history-1.db"),
            "peers": both,
        },
        "gossip": configs["bcast"]["gossip"],
    }
    async with RegionProcesses(tmp_path) as procs:
        await procs.add("a", configs)
        await procs.wait_ready()
        async with ReactionClient([region.edge], viewer_id="host") as client:
            client.tap(STREAM, "like")
            await client.flush()
        channels = [grpc.aio.insecure_channel(a) for a in both]
        one, two = (polls_pb2_grpc.PollsStub(c) for c in channels)
        try:

            async def create() -> polls_pb2.Poll:
                return await one.CreatePoll(
                    polls_pb2.CreatePollRequest(stream_id=STREAM, question="Who wins?", options=["home", "away"]),
                    timeout=5,
                )

            poll = await settled(create)
            get = polls_pb2.GetPollRequest(poll_id=poll.poll_id)

            async def found_on_two() -> None:
                assert (await two.GetPoll(get, timeout=5)).question == "Who wins?"

            await settled(found_on_two)
            await two.Vote(polls_pb2.VoteRequest(poll_id=poll.poll_id, viewer_id="v1", option=1), timeout=5)
            await one.Vote(polls_pb2.VoteRequest(poll_id=poll.poll_id, viewer_id="v2", option=0), timeout=5)

            async def same_on_both() -> polls_pb2.Poll:
                a, b = await one.GetPoll(get, timeout=5), await two.GetPoll(get, timeout=5)
                assert list(a.tallies) == list(b.tallies) == [1, 1]
                assert a == b
                return a

            agreed = await settled(same_on_both)
            procs.kill("a", "bcast1")
            await procs.wait("a", "bcast1")
            await procs.start("a", "bcast1")
            await procs.wait_ready_one("a", "bcast1")

            async def same_after_restart() -> None:
                assert await two.GetPoll(get, timeout=5) == agreed

            await settled(same_after_restart)
        finally:
            for c in channels:
                await c.close()
