"""The broadcaster over real gRPC on loopback, fed the way replication feeds it (KeyedGCounter
deltas through the codec merged into a ReplicaState), ticked explicitly on a FakeClock.

Proves: late joiners get a snapshot of what was shown; resumes replay exactly the missed frames,
stale resumes get a snapshot; slow subscribers end with exact totals through coalescing while fast
ones get every frame on its tick; nobody is shown more than the true total; each frame is
serialized once per stream per tick; overload degrades and recovers; drain flushes and marks."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest

from reactmesh.edge.errors import RETRY_AFTER_KEY, ServiceError
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import ConfigError
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.core import Broadcaster, BroadcastHooks
from reactmesh.region_node.broadcaster.frames import Subscription
from reactmesh.region_node.broadcaster.service import BroadcastService
from reactmesh.region_node.broadcaster.smoother import SmootherConfig
from reactmesh.region_node.state import TOTALS, RegionState
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc
from tests.support.polling import eventually

Frame = broadcast_pb2.Frame
CONFIG = BroadcasterConfig(smoothing=SmootherConfig(alpha=0.2, k=2.0, drain_ticks=10))
READ_TIMEOUT = 10.0


class Aggregator:
    """Stands in for an aggregator: own G-counter slots, committed deltas merged through the codec."""

    def __init__(self, state: RegionState, replica: str = "a/agg-0~1") -> None:
        self.state = state
        self.replica = replica
        self.own = KeyedGCounter()

    def commit(self, stream: str, counts: Mapping[str, int]) -> None:
        delta = KeyedGCounter()
        for emoji, n in counts.items():
            delta.merge(self.own.increment((stream, emoji), self.replica, n))
        self.state.merge_part(TOTALS, delta.encode())


def totals(state: RegionState, stream: str) -> dict[str, int]:
    return {k[1]: v for k, v in state.totals.items() if k[0] == stream}  # type: ignore[misc]


class Display:
    """What a viewer app displays: apply SNAPSHOTs and DELTAs as broadcast.proto says."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.frames: list[Frame] = []

    def apply(self, frame: Frame) -> None:
        self.frames.append(frame)
        if frame.kind == Frame.SNAPSHOT:
            self.counts = {}
        for c in frame.counts:
            self.counts[c.emoji] = self.counts.get(c.emoji, 0) + c.count

    @property
    def last_seq(self) -> int:
        return self.frames[-1].seq if self.frames else -1


class Env:
    def __init__(self, broadcaster: Broadcaster, state: RegionState, clock: FakeClock, stub: Any) -> None:
        self.broadcaster = broadcaster
        self.state = state
        self.clock = clock
        self.stub = stub
        self.agg = Aggregator(state)

    def subscribe(self, stream: str, resume: tuple[int, int] | None = None) -> Any:
        request = broadcast_pb2.SubscribeRequest(stream_id=stream)
        if resume is not None:
            request.resume.epoch, request.resume.seq = resume
        return self.stub.Subscribe(request)

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.broadcaster.tick()


async def read(call: Any) -> Frame:
    frame = await asyncio.wait_for(call.read(), READ_TIMEOUT)
    assert frame is not grpc.aio.EOF
    assert isinstance(frame, Frame)
    return frame


async def read_until(call: Any, display: Display, seq: int) -> None:
    """Read frames into ``display`` until it has applied the frame numbered ``seq``."""
    while display.last_seq < seq:
        display.apply(await read(call))


def stream_seq(broadcaster: Broadcaster, stream: str) -> int:
    return broadcaster._channels[stream].seq


@pytest.fixture
async def make_env() -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []
    broadcasters: list[Broadcaster] = []

    async def make(config: BroadcasterConfig = CONFIG, state: RegionState | None = None, **kw: Any) -> Env:
        state = state if state is not None else RegionState()
        clock = kw.pop("clock", None) or FakeClock()
        broadcaster = Broadcaster(config, clock, state, **kw)
        server = grpc.aio.server()
        BroadcastService(broadcaster).add_to_server(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        servers.append(server)
        channels.append(channel)
        broadcasters.append(broadcaster)
        return Env(broadcaster, state, clock, broadcast_pb2_grpc.BroadcastStub(channel))

    yield make
    for b in broadcasters:
        await b.close()
    for c in channels:
        await c.close()
    for s in servers:
        await s.stop(None)


async def test_late_joiner_gets_a_snapshot_of_what_was_shown_then_deltas_to_the_exact_total(make_env: Any) -> None:
    env = await make_env()
    env.agg.commit("match", {"like": 1000, "heart": 7})
    env.tick(2)
    shown = env.broadcaster.shown_totals("match")
    assert 0 < shown["like"] < 1000  # mid-release: the joiner must not jump ahead of other viewers
    call = env.subscribe("match")
    display = Display()
    display.apply(await read(call))
    snapshot = display.frames[0]
    assert snapshot.kind == Frame.SNAPSHOT
    assert snapshot.epoch == env.broadcaster.epoch and snapshot.seq == stream_seq(env.broadcaster, "match") == 2
    assert display.counts == shown
    env.tick(CONFIG.smoothing.drain_ticks)
    await read_until(call, display, stream_seq(env.broadcaster, "match"))
    assert all(f.kind == Frame.DELTA and f.coalesced == 1 for f in display.frames[1:])
    assert [f.seq for f in display.frames[1:]] == list(range(3, display.last_seq + 1))
    assert display.counts == totals(env.state, "match") == {"like": 1000, "heart": 7}
    call.cancel()


async def test_broadcaster_started_on_existing_state_shows_it_in_the_first_snapshot(make_env: Any) -> None:
    state = RegionState()
    Aggregator(state).commit("match", {"like": 42})
    env = await make_env(state=state)
    call = env.subscribe("match")
    first = await read(call)
    assert first.kind == Frame.SNAPSHOT and {c.emoji: c.count for c in first.counts} == {"like": 42}
    call.cancel()


async def test_resume_after_reconnect_replays_exactly_the_missed_frames(make_env: Any) -> None:
    env = await make_env()
    call = env.subscribe("match")
    display = Display()
    display.apply(await read(call))
    for i in range(3):
        env.agg.commit("match", {"like": 100 + i})
        env.tick()
    await read_until(call, display, 3)
    call.cancel()
    emitted_while_away = []
    for i in range(5):
        env.agg.commit("match", {"like": 10, "wow": i + 1})
        env.tick()
        emitted_while_away.append(stream_seq(env.broadcaster, "match"))
    assert emitted_while_away == [4, 5, 6, 7, 8]
    call = env.subscribe("match", resume=(display.frames[-1].epoch, display.frames[-1].seq))
    await read_until(call, display, 8)
    replayed = display.frames[4:]
    assert [f.seq for f in replayed] == [4, 5, 6, 7, 8]
    assert all(f.kind == Frame.DELTA and f.coalesced == 1 for f in replayed)
    env.agg.commit("match", {"heart": 1})
    env.tick(CONFIG.smoothing.drain_ticks)
    await read_until(call, display, stream_seq(env.broadcaster, "match"))
    assert display.counts == totals(env.state, "match")
    assert env.broadcaster.statistics().resumes_replayed == 1
    call.cancel()


async def test_resume_at_the_latest_frame_goes_straight_to_live_frames(make_env: Any) -> None:
    env = await make_env()
    env.agg.commit("match", {"like": 3})
    env.tick()
    call = env.subscribe("match", resume=(env.broadcaster.epoch, stream_seq(env.broadcaster, "match")))
    env.agg.commit("match", {"like": 2})
    env.tick()
    frame = await read(call)
    assert frame.kind == Frame.DELTA and frame.seq == 2
    call.cancel()


@pytest.mark.parametrize("case", ["other_epoch", "fell_out_of_buffer", "from_the_future"])
async def test_stale_resume_gets_a_snapshot(make_env: Any, case: str) -> None:
    env = await make_env(dataclasses.replace(CONFIG, buffer_frames=4))
    for _ in range(10):
        env.agg.commit("match", {"like": 1})
        env.tick()
    last = stream_seq(env.broadcaster, "match")
    resume = {
        "other_epoch": (env.broadcaster.epoch + 1, last - 1),
        "fell_out_of_buffer": (env.broadcaster.epoch, last - 5),
        "from_the_future": (env.broadcaster.epoch, last + 1),
    }[case]
    call = env.subscribe("match", resume=resume)
    frame = await read(call)
    assert frame.kind == Frame.SNAPSHOT and frame.seq == last
    assert {c.emoji: c.count for c in frame.counts} == env.broadcaster.shown_totals("match")
    call.cancel()


async def test_resume_from_the_oldest_buffered_frame_is_still_replayed(make_env: Any) -> None:
    env = await make_env(dataclasses.replace(CONFIG, buffer_frames=4))
    for _ in range(10):
        env.agg.commit("match", {"like": 1})
        env.tick()
    call = env.subscribe("match", resume=(env.broadcaster.epoch, 6))
    seqs = [(await read(call)).seq for _ in range(4)]
    assert seqs == [7, 8, 9, 10]
    call.cancel()


async def test_an_idle_stream_gives_back_its_resume_buffer_and_a_late_resume_gets_an_exact_snapshot(
    make_env: Any,
) -> None:
    env = await make_env(dataclasses.replace(CONFIG, idle_stream_s=60))
    for i in range(CONFIG.smoothing.drain_ticks + 5):
        env.agg.commit("ended", {"like": 10 + i})
        env.agg.commit("watched", {"like": 1})
        env.tick()
    env.tick(CONFIG.smoothing.drain_ticks)
    watching = env.subscribe("watched")
    await read(watching)
    last = stream_seq(env.broadcaster, "ended")
    assert env.broadcaster._channels["ended"].buffer
    await env.clock.advance(61)
    env.tick()
    assert not env.broadcaster._channels["ended"].buffer  # ended: frames released
    assert env.broadcaster._channels["watched"].buffer  # a subscriber keeps its stream live
    assert env.broadcaster.statistics().streams_idled == 1
    call = env.subscribe("ended", resume=(env.broadcaster.epoch, last - 3))
    frame = await read(call)
    assert frame.kind == Frame.SNAPSHOT and frame.seq == last
    assert {c.emoji: c.count for c in frame.counts} == totals(env.state, "ended")
    env.agg.commit("ended", {"wow": 2})  # the stream comes back: frames continue its sequence
    env.tick()
    frame = await read(call)
    assert frame.kind == Frame.DELTA and frame.seq == last + 1
    call.cancel()
    watching.cancel()


async def test_slow_subscriber_gets_exact_totals_by_coalescing_while_fast_one_gets_every_tick(make_env: Any) -> None:
    env = await make_env(dataclasses.replace(CONFIG, subscriber_queue_frames=4))
    request = broadcast_pb2.SubscribeRequest(stream_id="match")
    fast, slow = env.broadcaster.subscribe(request), env.broadcaster.subscribe(request)
    fast_display, slow_display = Display(), Display()
    fast_display.apply(Frame.FromString(fast.get_nowait() or b""))
    for i in range(60):  # the slow one reads nothing for 6 s of ticks
        env.agg.commit("match", {"like": 37 * (i % 5), "heart": 1 + i % 3})
        env.tick()
        data = fast.get_nowait()
        assert data is not None, f"fast subscriber got nothing on tick {i}"
        frame = Frame.FromString(data)
        assert frame.seq == stream_seq(env.broadcaster, "match") and frame.coalesced == 1
        fast_display.apply(frame)
        assert fast.get_nowait() is None
        assert slow.depth <= 4
    env.tick(CONFIG.smoothing.drain_ticks)
    while (data := fast.get_nowait()) is not None:
        fast_display.apply(Frame.FromString(data))
    while (data := slow.get_nowait()) is not None:
        slow_display.apply(Frame.FromString(data))
    expected = totals(env.state, "match")
    assert fast_display.counts == slow_display.counts == expected
    assert slow_display.frames[0].kind == Frame.SNAPSHOT
    assert len(slow_display.frames) <= 4
    assert slow_display.last_seq == fast_display.last_seq
    assert sum(f.coalesced for f in slow_display.frames[1:]) == fast_display.last_seq
    stats = env.broadcaster.statistics()
    assert stats.frames_coalesced == fast_display.last_seq - 3  # one snapshot + three frames fit the queue
    assert stats.queue_depth_high_water == 4
    fast.close()
    slow.close()
    assert env.broadcaster.statistics().subscribers == 0


async def test_slow_grpc_subscriber_catches_up_with_exact_totals(make_env: Any) -> None:
    env = await make_env(dataclasses.replace(CONFIG, subscriber_queue_frames=3))
    fast, slow = env.subscribe("match"), env.subscribe("match")
    fast_display, slow_display = Display(), Display()
    fast_display.apply(await read(fast))
    for i in range(20):  # fast reads each frame as it comes; slow reads nothing
        env.agg.commit("match", {"like": 50 + i, "wow": i % 2})
        env.tick()
        fast_display.apply(await read(fast))
        assert fast_display.last_seq == stream_seq(env.broadcaster, "match")
    for i in range(40):  # a burst of ticks with no chance for either server stream to send
        env.agg.commit("match", {"like": 500, "heart": i})
        env.tick()
    env.tick(CONFIG.smoothing.drain_ticks)
    last = stream_seq(env.broadcaster, "match")
    await read_until(fast, fast_display, last)
    await read_until(slow, slow_display, last)
    expected = totals(env.state, "match")
    assert fast_display.counts == slow_display.counts == expected
    assert max(f.coalesced for f in slow_display.frames) > 1
    assert len(slow_display.frames) < last
    fast.cancel()
    slow.cancel()


async def test_what_is_shown_never_exceeds_the_true_total(make_env: Any) -> None:
    env = await make_env()
    call = env.subscribe("match")
    display = Display()
    display.apply(await read(call))
    bursts = [0, 5000, 0, 0, 3, 800, 0, 12, 12, 12, 90000, 0, 1, 0, 0, 7]
    for i, n in enumerate(bursts * 3):
        env.agg.commit("match", {"like": n, "heart": i % 4})
        env.tick()
        await read_until(call, display, stream_seq(env.broadcaster, "match"))
        truth = totals(env.state, "match")
        assert all(display.counts[e] <= truth.get(e, 0) for e in display.counts)
    env.tick(CONFIG.smoothing.drain_ticks)
    await read_until(call, display, stream_seq(env.broadcaster, "match"))
    assert display.counts == totals(env.state, "match")
    call.cancel()


async def test_each_frame_is_serialized_once_per_stream_per_tick(make_env: Any) -> None:
    env = await make_env()
    env.agg.commit("match", {"like": 10})
    env.tick()
    request = broadcast_pb2.SubscribeRequest(stream_id="match")
    subs = [env.broadcaster.subscribe(request) for _ in range(50)]
    calls = [env.subscribe("match") for _ in range(3)]
    for call in calls:
        await read(call)
    before = env.broadcaster.statistics()
    assert before.frames_serialized == 1  # the snapshot at seq 1, shared by all 53 joiners
    for i in range(10):
        env.agg.commit("match", {"like": 100 + i})
        env.tick()
        data = [s.get_nowait() for s in subs]
        assert data[0] is not None and all(d is data[0] for d in data)
        for call in calls:
            assert (await read(call)).seq == i + 2
    after = env.broadcaster.statistics()
    assert after.frames_serialized - before.frames_serialized == 10
    assert after.frames_emitted == 11
    for call in calls:
        call.cancel()


async def test_streams_nobody_watches_cost_no_serialization(make_env: Any) -> None:
    env = await make_env()
    for i in range(20):
        env.agg.commit(f"quiet-{i}", {"like": 5})
    env.tick(3)
    stats = env.broadcaster.statistics()
    assert stats.frames_emitted >= 20 and stats.frames_serialized == 0


async def test_subscribe_rejects_a_bad_stream_id(make_env: Any) -> None:
    env = await make_env()
    for bad in ("", "has space", "x" * 129):
        call = env.subscribe(bad)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read(call)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_subscribers_beyond_the_limit_are_told_to_retry_later(make_env: Any) -> None:
    env = await make_env(dataclasses.replace(CONFIG, max_subscribers=2))
    ok = [env.subscribe("match") for _ in range(2)]
    for call in ok:
        await read(call)
    refused = env.subscribe("match")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read(refused)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(info.value.trailing_metadata() or ())[RETRY_AFTER_KEY] == str(CONFIG.retry_after_ms)
    ok[0].cancel()
    await eventually(lambda: env.broadcaster.statistics().subscribers == 1)
    again = env.subscribe("match")
    assert (await read(again)).kind == Frame.SNAPSHOT
    again.cancel()
    ok[1].cancel()


async def test_overload_by_subscribers_degrades_to_top_k_then_half_rate_and_recovers(make_env: Any) -> None:
    config = dataclasses.replace(CONFIG, degrade_subscribers=2, degrade_top_k=2, recover_ticks=3)
    env = await make_env(config)
    request = broadcast_pb2.SubscribeRequest(stream_id="match")
    subs = [env.broadcaster.subscribe(request) for _ in range(3)]
    display = Display()
    display.apply(Frame.FromString(subs[0].get_nowait() or b""))
    emojis = {"like": 900, "heart": 500, "wow": 300, "laugh": 100}
    env.agg.commit("match", emojis)
    env.tick()
    assert env.broadcaster.degrade_level == 1
    env.agg.commit("match", emojis)
    env.tick()  # level 1: top-2 only
    assert env.broadcaster.degrade_level == 2
    frames_before = env.broadcaster.statistics().frames_emitted
    for _ in range(6):
        env.tick()
    stats = env.broadcaster.statistics()
    assert stats.ticks_skipped == 3 and stats.frames_emitted - frames_before == 3
    while (data := subs[0].get_nowait()) is not None:
        display.apply(Frame.FromString(data))
    assert all(len(f.counts) <= 2 for f in display.frames[2:])
    # Each frame carries the level that shaped it: the snapshot and the first tick at 0, then 1 (top-2), then 2.
    assert [f.degrade_level for f in display.frames] == [0, 0, 1, *[2] * (len(display.frames) - 3)]
    for sub in subs[1:]:
        sub.close()
    for _ in range(6):
        env.tick()
    assert env.broadcaster.degrade_level == 0
    env.tick(3 * CONFIG.smoothing.drain_ticks)
    while (data := subs[0].get_nowait()) is not None:
        display.apply(Frame.FromString(data))
    assert display.counts == totals(env.state, "match")
    assert display.frames[-1].degrade_level == 0  # recovered: clients animate again


class SlowTickClock(FakeClock):
    """A FakeClock whose monotonic time moves by ``step`` on every read, as if each tick took that long."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def monotonic(self) -> float:
        self._mono += self.step
        return self._mono


async def test_ticks_over_budget_raise_the_degrade_level(make_env: Any) -> None:
    clock = SlowTickClock(step=0.2)
    env = await make_env(dataclasses.replace(CONFIG, tick_budget_ms=100, recover_ticks=2), clock=clock)
    env.tick()
    assert env.broadcaster.degrade_level == 1
    env.tick()
    assert env.broadcaster.degrade_level == 2
    clock.step = 0.0
    env.tick(4)
    assert env.broadcaster.degrade_level == 0


async def test_drain_flushes_pending_in_the_next_frame_and_marks_the_stream_drained(make_env: Any) -> None:
    env = await make_env()
    call = env.subscribe("match")
    display = Display()
    display.apply(await read(call))
    env.agg.commit("match", {"like": 100_000})
    env.tick()
    await read_until(call, display, 1)
    assert display.counts["like"] < 100_000
    drained_at = env.broadcaster.drain("match")
    assert drained_at == env.clock.wall_ms() == env.broadcaster.drain("match")
    env.tick()
    frame = await read(call)
    display.apply(frame)
    assert frame.drained and display.counts == {"like": 100_000}
    env.agg.commit("match", {"like": 5})  # a late delta from another region is released unsmoothed
    env.tick()
    display.apply(await read(call))
    assert display.frames[-1].drained and display.counts == {"like": 100_005}
    late = env.subscribe("match")
    snapshot = await read(late)
    assert snapshot.drained and snapshot.kind == Frame.SNAPSHOT
    call.cancel()
    late.cancel()


async def test_drain_of_a_quiet_stream_still_sends_a_drained_frame(make_env: Any) -> None:
    env = await make_env()
    call = env.subscribe("quiet")
    await read(call)
    env.broadcaster.drain("quiet")
    env.tick()
    frame = await read(call)
    assert frame.drained and frame.kind == Frame.DELTA and not frame.counts and frame.seq == 1
    env.tick(3)
    assert env.broadcaster.statistics().frames_emitted == 1
    call.cancel()


async def test_hooks_hear_every_tick_and_every_frame_with_its_emojis(make_env: Any) -> None:
    class Recorder(BroadcastHooks):
        def __init__(self) -> None:
            self.ticks: list[tuple[int, int, float]] = []
            self.frames: list[tuple[str, dict[str, int], int]] = []

        def on_tick(self, frames: int, coalesced: int, seconds: float) -> None:
            self.ticks.append((frames, coalesced, seconds))

        def on_frame(self, stream_id: str, counts: Mapping[str, int], server_time_ms: int) -> None:
            self.frames.append((stream_id, dict(counts), server_time_ms))

    hooks = Recorder()
    env = await make_env(hooks=hooks)
    env.agg.commit("a", {"like": 1})
    env.agg.commit("b", {"wow": 1, "heart": 1})
    env.tick()
    env.tick()
    assert hooks.ticks == [(2, 0, 0.0), (0, 0, 0.0)]
    assert sorted(hooks.frames, key=lambda f: f[0]) == [
        ("a", {"like": 1}, env.clock.wall_ms()),
        ("b", {"wow": 1, "heart": 1}, env.clock.wall_ms()),
    ]


async def test_run_ticks_on_the_clock_and_close_ends_subscriptions(make_env: Any) -> None:
    env = await make_env()
    sub: Subscription = env.broadcaster.subscribe(broadcast_pb2.SubscribeRequest(stream_id="match"))
    assert sub.get_nowait() is not None
    runner = asyncio.create_task(env.broadcaster.run())
    await env.clock.advance(0)
    env.agg.commit("match", {"like": 1})
    await env.clock.advance(0.1)
    assert env.broadcaster.statistics().ticks == 1
    await env.clock.advance(0.35)
    assert env.broadcaster.statistics().ticks == 4
    await env.broadcaster.close()
    await asyncio.wait_for(runner, READ_TIMEOUT)
    assert await sub.get() is not None  # the frame queued before close is still delivered
    assert await sub.get() is None
    with pytest.raises(ServiceError) as info:
        env.broadcaster.subscribe(broadcast_pb2.SubscribeRequest(stream_id="match"))
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


async def test_close_ends_grpc_streams_cleanly(make_env: Any) -> None:
    env = await make_env()
    call = env.subscribe("match")
    await read(call)
    await env.broadcaster.close()
    assert await asyncio.wait_for(call.read(), READ_TIMEOUT) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tick_ms": 0}, "broadcaster.tick_ms"),
        ({"buffer_frames": 0}, "broadcaster.buffer_frames"),
        ({"subscriber_queue_frames": -1}, "broadcaster.subscriber_queue_frames"),
        ({"max_subscribers": 1.5}, "broadcaster.max_subscribers"),
        ({"degrade_top_k": 0}, "broadcaster.degrade_top_k"),
        ({"smoothing": {"alpha": 2}}, "broadcaster.smoothing.alpha"),
        ({"smoothing": {"nope": 1}}, "broadcaster.smoothing"),
        ({"smoothing": 3}, "broadcaster.smoothing"),
        ({"eager_frames": "yes"}, "broadcaster.eager_frames"),
    ],
)
def test_bad_broadcaster_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        BroadcasterConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_smoothing_table_from_a_config_file_becomes_a_smoother_config() -> None:
    config = BroadcasterConfig(smoothing={"alpha": 0.1, "drain_ticks": 30})  # type: ignore[arg-type]
    assert config.smoothing == SmootherConfig(alpha=0.1, drain_ticks=30)


class FrameLog(BroadcastHooks):
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.frames: list[tuple[str, float, dict[str, int]]] = []

    def on_frame(self, stream_id: str, counts: Mapping[str, int], server_time_ms: int) -> None:
        self.frames.append((stream_id, self.clock.monotonic(), dict(counts)))


async def test_a_committed_delta_is_framed_before_the_next_fixed_tick_and_a_stream_at_most_once_per_interval(
    make_env: Any,
) -> None:
    clock = FakeClock()
    log = FrameLog(clock)
    env = await make_env(clock=clock, hooks=log)
    b = env.broadcaster
    sub: Subscription = b.subscribe(broadcast_pb2.SubscribeRequest(stream_id="match"))
    assert sub.get_nowait() is not None  # the snapshot
    start = clock.monotonic()
    runner = asyncio.create_task(b.run())
    await clock.advance(0)  # run() starts: fixed ticks at start + 100 ms, 200 ms...
    await clock.advance(0.03)
    env.agg.commit("match", {"like": 1})
    await clock.advance(0)  # no time passes: the next loop turns frame it
    assert b.statistics().ticks == 0
    assert [(s, t - start, c) for s, t, c in log.frames] == [("match", pytest.approx(0.03), {"like": 1})]
    data = sub.get_nowait()
    assert data is not None and Frame.FromString(data).seq == 1

    await clock.advance(0.02)  # 20 ms after that frame: too soon for another one
    env.agg.commit("match", {"like": 1})
    await clock.advance(0)
    assert len(log.frames) == 1
    # (Checkpoints sit 1 ms past the deadlines they test, clear of float rounding in the clock's sums.)
    await clock.advance(0.051)  # the fixed tick at 100 ms does not frame it either (70 ms after its frame)
    assert b.statistics().ticks == 1
    assert len(log.frames) == 1
    await clock.advance(0.03)  # 100 ms after the first frame
    assert [(t - start, c) for _, t, c in log.frames[1:]] == [(pytest.approx(0.13), {"like": 1})]

    # Commits at every phase against the ticks, bursts too: frames at least tick_ms apart per stream, never
    # above the committed totals, and everything shown within drain_ticks intervals of the last commit.
    committed = {"match": 2, "other": 0}
    shown = {"match": 2, "other": 0}
    for i in range(60):
        await clock.advance(0.007 * (i % 5) + 0.011)
        stream = "match" if i % 3 else "other"
        n = 40 if i % 17 == 0 else 1
        env.agg.commit(stream, {"like": n})
        committed[stream] += n
        await clock.advance(0)
        shown = {s: sum(c.get("like", 0) for st, _, c in log.frames if st == s) for s in committed}
        assert all(shown[s] <= committed[s] for s in committed)
    await clock.advance(CONFIG.tick_ms / 1000 * CONFIG.smoothing.drain_ticks)
    shown = {s: sum(c.get("like", 0) for st, _, c in log.frames if st == s) for s in committed}
    assert shown == committed
    assert b.statistics().frames_between_ticks > 0
    for stream in committed:
        times = [t for s, t, _ in log.frames if s == stream]
        assert all(later - earlier >= CONFIG.tick_ms / 1000 - 1e-6 for earlier, later in itertools.pairwise(times))
    await b.close()
    await asyncio.wait_for(runner, READ_TIMEOUT)


async def test_without_eager_frames_a_commit_waits_for_the_fixed_tick(make_env: Any) -> None:
    clock = FakeClock()
    log = FrameLog(clock)
    env = await make_env(dataclasses.replace(CONFIG, eager_frames=False), clock=clock, hooks=log)
    start = clock.monotonic()
    runner = asyncio.create_task(env.broadcaster.run())
    await clock.advance(0)
    await clock.advance(0.03)
    env.agg.commit("match", {"like": 1})
    await clock.advance(0.069)
    assert log.frames == []
    await clock.advance(0.002)
    assert [(t - start, c) for _, t, c in log.frames] == [(pytest.approx(0.1), {"like": 1})]
    await env.broadcaster.close()
    await asyncio.wait_for(runner, READ_TIMEOUT)


async def test_at_degrade_level_2_commits_wait_for_the_half_rate_ticks(make_env: Any) -> None:
    clock = FakeClock()
    log = FrameLog(clock)
    config = dataclasses.replace(CONFIG, degrade_subscribers=1)
    env = await make_env(config, clock=clock, hooks=log)
    b = env.broadcaster
    for _ in range(2):
        assert b.subscribe(broadcast_pb2.SubscribeRequest(stream_id="match")).get_nowait() is not None
    runner = asyncio.create_task(b.run())
    await clock.advance(0)
    await clock.advance(0.201)  # two ticks over the subscriber bound: level 2
    assert b.degrade_level == 2
    env.agg.commit("match", {"like": 1})
    await clock.advance(0.05)
    assert log.frames == []  # no frame between ticks
    await clock.advance(0.1)  # tick 3 frames (tick 4 would be skipped)
    assert [c for _, _, c in log.frames] == [{"like": 1}]
    assert b.statistics().frames_between_ticks == 0
    await b.close()
    await asyncio.wait_for(runner, READ_TIMEOUT)
