"""Moderation across three regions of real processes with auth on: the Admin service's role boundaries, a mute
taken in region a rejecting the viewer's taps at the edges of b and c within 2 s, an unmute from c lifting it,
a drain reaching subscribers in every region, and mutes surviving a SIGKILL of the region that took them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
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
        return await self.tap_many({"like": 1}, stream_id)

    async def tap_many(self, counts: dict[str, int], stream_id: str = STREAM) -> BatchAck:
        self._seq += 1
        batch = ingest_pb2.ClientBatch(
            session_id=self._session,
            viewer_id=self.viewer_id,
            seq=self._seq,
            stream_id=stream_id,
            counts=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in counts.items()],
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


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reactmesh.region_node.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_bot_flagged_at_one_edge_is_listed_in_another_region_and_muted_from_the_cli(tmp_path: Path) -> None:
    """A synthetic bot in region b (pinned above the rate cap with one emoji, over many sessions) next to honest
    viewers: region a's broadcaster lists only the bot as flagged (`reactmesh admin flagged`), and a mute from
    the CLI stops its taps in b."""
    overrides = {"edge": {"abuse": {"sustain_s": 2.0, "rate_window_s": 0.5, "min_taps": 40}}}
    async with ProcessMesh(
        regions=("a", "b"), base_port=free_port_block(20), data_dir=tmp_path, overrides=overrides
    ) as mesh:
        a, b = mesh.plans["a"], mesh.plans["b"]
        bots = [Viewer(b.edge, "bot-7", "") for _ in range(6)]  # six sessions of one viewer
        honest = [Viewer(b.edge, f"fan-{i}", "") for i in range(3)]
        emojis = ["like", "love", "wow", "haha"]
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 4.0
            i = 0
            while loop.time() < end:
                i += 1
                for bot in bots:
                    await bot.tap_many({"fire": 8})
                for n, fan in enumerate(honest):
                    await fan.tap_many({emojis[(i + n) % 4]: 1, emojis[(i + n + 1) % 4]: 1})
                await asyncio.sleep(0.1)

            async def bot_listed() -> list[dict[str, str]]:
                code, out, err = await _cli("admin", "flagged", "--broadcaster", a.broadcaster, "--json")
                assert code == 0, err
                rows = [json.loads(line) for line in out.splitlines()]
                assert {r["viewer_id"] for r in rows} == {"bot-7"}, rows
                return rows

            rows = await settled(bot_listed)
            assert rows[0]["raised_by"] == "b/edge-0" and rows[0]["kind"] in {"rate", "sessions", "low_entropy"}
            code, out, err = await _cli(
                "admin", "mute", "bot-7", "--for", "5m", "--reason", "bot", "--broadcaster", a.broadcaster
            )
            assert code == 0 and "muted bot-7 in every region" in out, err
            await rejected_within(bots[0], BatchAck.VIEWER_MUTED)
            assert (await honest[0].tap()).outcome == BatchAck.ACCEPTED
        finally:
            for v in (*bots, *honest):
                await v.close()
