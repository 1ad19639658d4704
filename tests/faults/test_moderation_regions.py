"""Moderation across three regions of real processes with auth on: the Admin service's role boundaries, a mute
taken in region a rejecting the viewer's taps at the edges of b and c within 2 s, an unmute from c lifting it,
a drain reaching subscribers in every region, and mutes surviving a SIGKILL of the region that took them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from reactmesh.edge.tokens import Minter, Role, bearer
from reactmesh.region_node.devmesh import ProcessMesh, free_port_block
from reactmesh.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    broadcast_pb2,
    broadcast_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
)
from tests.support.polling import settled

STREAM = "final-moderated"
BatchAck = ingest_pb2.BatchAck


class Viewer:
    """One viewer's session on one edge, sending numbered batches over Ingest.Send."""

    def __init__(self, edge: str, viewer_id: str, token: str) -> None:
        self.viewer_id = viewer_id
        self._channel = grpc.aio.insecure_channel(edge)
        self._stub = ingest_pb2_grpc.IngestStub(self._channel)
        self._meta = bearer(token)
        self._session = os.urandom(16)
        self._seq = 0

    async def tap(self, stream_id: str = STREAM) -> BatchAck:
        self._seq += 1
        batch = ingest_pb2.ClientBatch(
            session_id=self._session,
            viewer_id=self.viewer_id,
            seq=self._seq,
            stream_id=stream_id,
            counts=[common_pb2.ReactionCount(emoji="like", count=1)],
        )
        ack: BatchAck = await self._stub.Send(batch, metadata=self._meta, timeout=5)
        return ack

    async def close(self) -> None:
        await self._channel.close()


async def rejected_within(viewer: Viewer, reason: int, stream_id: str = STREAM) -> float:
    """Seconds until ``viewer``'s taps are rejected with ``reason`` (polled every 10 ms)."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def check() -> None:
        ack = await viewer.tap(stream_id)
        assert ack.outcome == BatchAck.REJECTED and ack.reject_reason == reason, ack

    await settled(check, within=10.0, every=0.01)
    return loop.time() - start


async def test_a_mute_in_one_region_holds_in_every_region_and_a_drain_reaches_every_viewer(tmp_path: Path) -> None:
    async with ProcessMesh(
        regions=("a", "b", "c"), base_port=free_port_block(30), data_dir=tmp_path, auth=True
    ) as mesh:
        assert mesh.auth_key is not None
        minter = Minter(mesh.auth_key)
        mod = bearer(minter.mint("mod-1", roles=(Role.MODERATOR,)))
        plans = mesh.plans
        channels = {r: grpc.aio.insecure_channel(p.broadcaster) for r, p in plans.items()}
        admin = {r: admin_pb2_grpc.AdminStub(c) for r, c in channels.items()}
        troll = {r: Viewer(p.edge, "troll", minter.mint("troll")) for r, p in plans.items()}
        fan = Viewer(plans["b"].edge, "fan", minter.mint("fan"))
        try:
            # Role boundaries: the documented status for each.
            mute = admin_pb2.MuteViewerRequest(viewer_id="troll", duration_s=600, reason="spam")
            for metadata, code in (
                ((), grpc.StatusCode.UNAUTHENTICATED),
                (bearer("not-a-jwt"), grpc.StatusCode.UNAUTHENTICATED),
                (bearer(minter.mint("troll")), grpc.StatusCode.PERMISSION_DENIED),
                (
                    bearer(minter.mint("host-1", roles=(Role.HOST,), streams=(STREAM,))),
                    grpc.StatusCode.PERMISSION_DENIED,
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await admin["a"].MuteViewer(mute, metadata=metadata, timeout=5)
                assert refused.value.code() == code
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await admin["a"].MuteViewer(
                    admin_pb2.MuteViewerRequest(viewer_id="troll", duration_s=0), metadata=mod, timeout=5
                )
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            for viewer in troll.values():

                async def accepted(v: Viewer = viewer) -> None:
                    assert (await v.tap()).outcome == BatchAck.ACCEPTED

                await settled(accepted)

            subscribers = {r: broadcast_pb2_grpc.BroadcastStub(c) for r, c in channels.items()}
            viewer_meta = bearer(minter.mint("watcher"))
            calls = {
                r: s.Subscribe(broadcast_pb2.SubscribeRequest(stream_id=STREAM), metadata=viewer_meta)
                for r, s in subscribers.items()
            }

            # A mute taken in region a.
            answer = await admin["a"].MuteViewer(mute, metadata=mod, timeout=5)
            assert answer.until_ms > 0
            took = {r: await rejected_within(troll[r], BatchAck.VIEWER_MUTED) for r in ("b", "c")}
            print(f"mute from region a in force at the edges of b and c after {took}")
            assert max(took.values()) < 2.0, took
            assert (await fan.tap()).outcome == BatchAck.ACCEPTED  # only that viewer

            async def listed_in_c() -> None:
                listed = await admin["c"].ListMuted(admin_pb2.ListMutedRequest(), metadata=mod, timeout=5)
                assert [(m.viewer_id, m.reason, m.muted_by) for m in listed.viewers] == [("troll", "spam", "mod-1")]

            await settled(listed_in_c)

            # An unmute from region c lifts it in a.
            await admin["c"].UnmuteViewer(admin_pb2.UnmuteViewerRequest(viewer_id="troll"), metadata=mod, timeout=5)

            async def accepted_in_a() -> None:
                assert (await troll["a"].tap()).outcome == BatchAck.ACCEPTED

            await settled(accepted_in_a, within=10.0, every=0.01)

            # A drain from region b reaches the subscribers of every region and the edges of every region.
            drained = await admin["b"].DrainStream(admin_pb2.DrainStreamRequest(stream_id=STREAM), metadata=mod)
            assert drained.drained_at_ms > 0

            async def sees_drained(call: grpc.aio.UnaryStreamCall) -> None:  # type: ignore[type-arg]
                async for frame in call:
                    if frame.drained:
                        return

            await asyncio.wait_for(asyncio.gather(*(sees_drained(c) for c in calls.values())), timeout=20)
            for r in ("a", "c"):
                await rejected_within(troll[r], BatchAck.STREAM_DRAINED)
            for call in calls.values():
                call.cancel()
        finally:
            for v in (*troll.values(), fan):
                await v.close()
            for c in channels.values():
                await c.close()


async def test_a_mute_survives_sigkill_of_the_region_that_took_it(tmp_path: Path) -> None:
    async with ProcessMesh(regions=("a",), base_port=free_port_block(10), data_dir=tmp_path) as mesh:
        p = mesh.plans["a"]
        async with grpc.aio.insecure_channel(p.broadcaster) as channel:
            await admin_pb2_grpc.AdminStub(channel).MuteViewer(
                admin_pb2.MuteViewerRequest(viewer_id="troll", duration_s=600, reason="spam"), timeout=5
            )
        viewer = Viewer(p.edge, "troll", "")
        try:
            await rejected_within(viewer, BatchAck.VIEWER_MUTED)
        finally:
            await viewer.close()
        mesh.kill("a", "main")
        mesh.kill("a", "agg1")
        await mesh.wait("a", "main")
        await mesh.wait("a", "agg1")
        await mesh.start("a", "agg1")
        await mesh.start("a", "main")
        await mesh.wait_ready()
        viewer = Viewer(p.edge, "troll", "")
        try:
            await rejected_within(viewer, BatchAck.VIEWER_MUTED)
        finally:
            await viewer.close()
        async with grpc.aio.insecure_channel(p.broadcaster) as channel:
            listed = await admin_pb2_grpc.AdminStub(channel).ListMuted(admin_pb2.ListMutedRequest(), timeout=5)
        assert [m.viewer_id for m in listed.viewers] == ["troll"]
