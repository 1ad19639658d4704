"""The client SDK against real grpc.aio servers on loopback.

The servers are stand-ins for the network peer, not the real edge or broadcaster: they model the server side of
ingest.proto and broadcast.proto (apply a batch iff seq > the session's watermark; replay or snapshot on
resume) and let each test place a failure exactly: drop a stream after N batches, lose acks, end a stream with
RESOURCE_EXHAUSTED and retry-after-ms, answer RETRY or REJECTED, refuse the session. Timers (backoff,
retry-after, ack timeout) run on a FakeClock that the tests advance; real time is only spent waiting for
loopback sockets.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest

from reactmesh.edge.errors import abort_with, resource_exhausted
from reactmesh.edge.sdk import ClientError, ConnectionState, LiveView, ReactionClient
from reactmesh.edge.sdk.window import RETRY_WINDOW
from reactmesh.merge.clock import FakeClock
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc
from tests.support.polling import eventually

Ack = ingest_pb2.BatchAck
Frame = broadcast_pb2.Frame


class Region:
    """What a region's aggregators know, shared by every stand-in edge of the region."""

    def __init__(self) -> None:
        self.watermarks: dict[bytes, int] = {}
        self.totals: Counter[tuple[str, str]] = Counter()

    def apply(self, batch: ingest_pb2.ClientBatch) -> ingest_pb2.BatchAck:
        if batch.seq <= self.watermarks.get(batch.session_id, 0):
            return Ack(seq=batch.seq, outcome=Ack.DUPLICATE)
        self.watermarks[batch.session_id] = batch.seq
        taps = 0
        for c in batch.counts:
            self.totals[(batch.stream_id, c.emoji)] += c.count
            taps += c.count
        return Ack(seq=batch.seq, outcome=Ack.ACCEPTED, accepted_taps=taps)


class StandInEdge(ingest_pb2_grpc.IngestServicer):
    """Ingest.Stream as the contract describes it, with failure points chosen per stream (0 = first stream)."""

    def __init__(self, region: Region) -> None:
        self.region = region
        self.streams: list[list[int]] = []  # seqs received, per stream, in arrival order
        self.metadata: list[dict[str, str]] = []
        self.drop_after: dict[int, int] = {}  # stream -> end it with UNAVAILABLE after this many batches
        self.ack_only: dict[int, int] = {}  # stream -> ack only its first N batches (the rest are applied)
        self.exhausted_ms: dict[int, int] = {}  # stream -> end it at its first batch with RESOURCE_EXHAUSTED
        # stream -> (n, ms): hold the acks of the first n - 1 batches, answer the n-th RETRY (ms), then send the
        # held acks; answer RETRY to every later seq until the refused one comes again, as a shedding edge does
        self.shed_at: dict[int, tuple[int, int]] = {}
        self.end_on_retry: set[int] = set()  # streams that end after the RETRY and the held acks (older edges)
        self.resumed: dict[int, list[int]] = {}  # stream -> seqs received from the refused seq's resend on
        self.reject: set[int] = set()  # seqs answered REJECTED
        self.fatal: grpc.StatusCode | None = None

    async def Stream(self, request_iterator: AsyncIterator[ingest_pb2.ClientBatch], context: Any) -> Any:
        index = len(self.streams)
        received: list[int] = []
        self.streams.append(received)
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        held: list[ingest_pb2.BatchAck] = []
        refused = 0  # the seq answered RETRY, until it comes again
        async for batch in request_iterator:
            received.append(batch.seq)
            if index in self.shed_at and index not in self.resumed:
                n, ms = self.shed_at[index]
                if not refused and len(received) < n:
                    held.append(self.region.apply(batch))
                    continue
                if not refused:
                    refused = batch.seq
                    yield Ack(seq=batch.seq, outcome=Ack.RETRY, retry_after_ms=ms, detail="shedding")
                    for ack in held:
                        yield ack
                    if index in self.end_on_retry:
                        return
                    continue
                if batch.seq != refused:
                    yield Ack(seq=batch.seq, outcome=Ack.RETRY, retry_after_ms=ms, detail="after a refused seq")
                    continue
                self.resumed[index] = []
            if index in self.resumed:
                self.resumed[index].append(batch.seq)
            if self.fatal is not None:
                await context.abort(self.fatal, "refused by the test")
            if index in self.exhausted_ms:
                await abort_with(context, resource_exhausted("edge overloaded", self.exhausted_ms[index]))
            if batch.seq in self.reject:
                ack = Ack(seq=batch.seq, outcome=Ack.REJECTED, reject_reason=Ack.UNKNOWN_EMOJI, detail="test")
            else:
                ack = self.region.apply(batch)
            if len(received) <= self.ack_only.get(index, len(received)):
                yield ack
            if len(received) == self.drop_after.get(index):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped by the test")


class StandInBroadcaster(broadcast_pb2_grpc.BroadcastServicer):
    """Broadcast.Subscribe playing one script per connection: frames, then optionally a status that ends it
    (OK ends it normally)."""

    def __init__(self, scripts: list[list[Frame | grpc.StatusCode]]) -> None:
        self.scripts = scripts
        self.requests: list[broadcast_pb2.SubscribeRequest] = []

    async def Subscribe(self, request: broadcast_pb2.SubscribeRequest, context: Any) -> Any:
        index = len(self.requests)
        self.requests.append(request)
        for item in self.scripts[index] if index < len(self.scripts) else []:
            if isinstance(item, Frame):
                yield item
            elif item == grpc.StatusCode.OK:
                return
            else:
                await context.abort(item, "dropped by the test")
        await asyncio.Event().wait()  # stay open until the server stops


Servers = Callable[[Any], Awaitable[tuple[grpc.aio.Server, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Servers]:
    """Starts a servicer on 127.0.0.1:0; returns (server, address). Every server is stopped at the end."""
    servers: list[grpc.aio.Server] = []

    async def start(servicer: Any) -> tuple[grpc.aio.Server, str]:
        server = grpc.aio.server()
        if isinstance(servicer, StandInEdge):
            ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
        else:
            broadcast_pb2_grpc.add_BroadcastServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return server, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(0)


@pytest.fixture
def dead_address() -> Iterator[str]:
    """An address that refuses connections: a bound socket that never listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[ReactionClient]]:
    made: list[ReactionClient] = []
    yield made
    for client in made:
        await client.close()


def new_client(made: list[ReactionClient], edges: list[str], clock: FakeClock, **kwargs: Any) -> ReactionClient:
    kwargs.setdefault("ack_timeout_s", 1000.0)
    client = ReactionClient(edges, "viewer-7", clock=clock, rng=random.Random(11), backoff_initial_s=0.1, **kwargs)
    made.append(client)
    return client


async def drive(clock: FakeClock, done: Callable[[], bool], step: float = 0.05, within: float = 10.0) -> None:
    """Advance the fake clock in small steps, letting loopback I/O run between them, until done()."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within} s of real time")
        await clock.advance(step)
        await asyncio.sleep(0.002)


def tap_batches(client: ReactionClient, plan: list[tuple[str, str, int]]) -> Counter[tuple[str, str]]:
    """One batch per entry of ``plan``; returns the taps per (stream, emoji)."""
    taps: Counter[tuple[str, str]] = Counter()
    for stream_id, emoji, n in plan:
        client.tap(stream_id, emoji, n)
        client.tick()
        taps[(stream_id, emoji)] += n
    return taps


async def flush_driving(client: ReactionClient, clock: FakeClock) -> None:
    task = asyncio.ensure_future(client.flush(timeout=1e6))
    await drive(clock, task.done)
    await task


PLAN = [("final", "heart", 3), ("semi", "like", 1), ("final", "like", 2), ("final", "heart", 5), ("semi", "wow", 4)]


async def test_batches_arrive_numbered_per_session_in_order_and_counted_once(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    taps = tap_batches(client, PLAN)
    await asyncio.wait_for(client.flush(timeout=1e6), 10)
    assert edge.streams == [[1, 2, 3, 4, 5]]
    assert region.totals == taps
    stats = client.statistics()
    assert (stats.acks_accepted, stats.accepted_taps, stats.batches_resent, stats.unacked_batches) == (5, 15, 0, 0)
    assert stats.state is ConnectionState.STREAMING


async def test_dropped_stream_resends_every_unacked_batch_in_order_without_loss_or_double_count(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.ack_only[0] = 1  # batches 2 and 3 are applied but their acks are lost
    edge.drop_after[0] = 3  # 4 and 5 never reach the edge on the first stream
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    taps = tap_batches(client, PLAN)
    await flush_driving(client, clock)

    assert edge.streams[0] == [1, 2, 3]
    assert edge.streams[1] == [2, 3, 4, 5]
    assert region.totals == taps
    stats = client.statistics()
    assert (stats.acks_accepted, stats.acks_duplicate, stats.reconnects) == (3, 2, 1)
    assert stats.batches_resent >= 2

    more = tap_batches(client, [("final", "heart", 9)])
    await asyncio.wait_for(client.flush(timeout=1e6), 10)
    assert edge.streams[1][-1] == 6
    assert region.totals == taps + more


async def test_lost_acks_on_an_open_stream_are_recovered_by_the_ack_timeout(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.ack_only[0] = 0
    _, address = await serve(edge)
    client = new_client(clients, [address], clock, ack_timeout_s=2.0)
    taps = tap_batches(client, PLAN[:2])
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: len(edge.streams) == 1 and len(edge.streams[0]) == 2)
    await clock.advance(1.9)
    assert len(edge.streams) == 1
    await drive(clock, flush.done)
    await flush
    assert edge.streams[1] == [1, 2]
    assert region.totals == taps
    assert client.statistics().ack_timeouts == 1


async def test_client_fails_over_to_the_second_edge_when_the_first_is_unreachable(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient], dead_address: str
) -> None:
    region = Region()
    edge = StandInEdge(region)
    _, address = await serve(edge)
    client = new_client(clients, [dead_address, address], clock)
    taps = tap_batches(client, PLAN)
    await flush_driving(client, clock)
    assert edge.streams == [[1, 2, 3, 4, 5]]
    assert region.totals == taps
    stats = client.statistics()
    assert (stats.edge, stats.failovers) == (address, 1)


async def test_losing_the_edge_mid_session_fails_over_and_resends_unacked_in_order(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    first, second = StandInEdge(region), StandInEdge(region)
    first.ack_only[0] = 1
    first_server, first_address = await serve(first)
    _, second_address = await serve(second)
    client = new_client(clients, [first_address, second_address], clock)
    taps = tap_batches(client, PLAN[:3])
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: len(first.streams) == 1 and len(first.streams[0]) == 3)
    await first_server.stop(0)
    await drive(clock, flush.done)
    await flush
    assert second.streams == [[2, 3]]
    assert region.totals == taps
    stats = client.statistics()
    assert (stats.edge, stats.acks_duplicate) == (second_address, 2)


async def test_resource_exhausted_waits_at_least_retry_after_then_resends(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.exhausted_ms[0] = 2000
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    taps = tap_batches(client, PLAN[:2])
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: client.statistics().state is ConnectionState.WAITING)
    await clock.advance(1.99)
    assert len(edge.streams) == 1
    assert client.statistics().state is ConnectionState.WAITING
    await clock.advance(1.01)  # retry-after plus at most half of it of jitter
    await eventually(flush.done)
    await flush
    assert edge.streams[1] == [1, 2]
    assert region.totals == taps


async def test_retry_ack_pauses_the_stream_and_resends_on_it_in_order_after_retry_after(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.shed_at[0] = (1, 500)  # the first batch is refused, and batch 2 with it if it was already written
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    taps = tap_batches(client, PLAN[:2])
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: client.statistics().state is ConnectionState.WAITING)
    assert client.statistics().acks_retry >= 1
    assert [b.seq for b in client.unacked_batches()] == [1, 2]
    client.tap("final", "wow", 3)  # made during the pause: it waits in the pending counts, closed after it
    assert client.tick() == 0
    taps[("final", "wow")] += 3
    await clock.advance(0.49)
    assert 0 not in edge.resumed  # nothing resent before retry-after
    assert client.statistics().pending_taps == 3
    await clock.advance(0.26)  # at most half the retry-after of jitter
    await eventually(flush.done)
    await flush
    assert edge.resumed[0] == [1, 2, 3]
    assert len(edge.streams) == 1  # resent on the stream it had: no new stream to wait for
    assert region.totals == taps
    stats = client.statistics()
    assert (stats.streams_opened, stats.reconnects, stats.retry_pauses) == (1, 0, 1)


async def test_after_a_retry_no_new_stream_opens_and_later_batches_wait_for_their_answers(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.shed_at[0] = (3, 400)  # batches 1 and 2 admitted, 3 refused (and 4 with it), then 1 and 2 acked
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    taps = tap_batches(client, PLAN[:4])
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: client.statistics().state is ConnectionState.WAITING)
    await eventually(lambda: [b.seq for b in client.unacked_batches()] == [3, 4])  # 1, 2 acked on this stream
    assert edge.streams[0][:3] == [1, 2, 3]
    await clock.advance(0.6)  # retry-after plus at most half of it
    await eventually(flush.done)
    await flush
    assert len(edge.streams) == 1
    assert edge.resumed[0] == [3, 4]  # nothing acked was resent
    assert region.totals == taps
    stats = client.statistics()
    assert stats.batches_resent == 2  # 3 and 4, written once before the RETRY
    assert (stats.streams_opened, stats.retry_pauses) == (1, 1)  # 4's RETRY, if any, was 3's follow-up


async def test_an_edge_that_ends_the_stream_after_a_retry_is_waited_out_and_reconnected_to(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.shed_at[0] = (3, 400)
    edge.end_on_retry.add(0)  # as edges did before they kept the stream open
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    taps = tap_batches(client, PLAN[:4])
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: client.statistics().state is ConnectionState.WAITING)
    await eventually(lambda: [b.seq for b in client.unacked_batches()] == [3, 4])
    await clock.advance(0.39)
    assert len(edge.streams) == 1
    await clock.advance(0.21)
    await eventually(flush.done)
    await flush
    assert edge.streams[1] == [3, 4]
    assert region.totals == taps


async def test_after_a_retry_the_client_resends_a_window_of_its_backlog_not_all_of_it(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.shed_at[0] = (1, 100)  # the first batch is refused
    edge.ack_only[0] = 0  # after the resend the stream applies what it gets but acks nothing
    _, address = await serve(edge)
    client = new_client(clients, [address], clock)
    for i in range(10):
        client.tap("final", "heart", i + 1)
        client.tick()
    flush = asyncio.ensure_future(client.flush(timeout=1e6))
    await eventually(lambda: client.statistics().state is ConnectionState.WAITING)
    await clock.advance(5.0)  # past the retry-after and any jitter
    await eventually(lambda: len(edge.resumed.get(0, ())) == RETRY_WINDOW)
    for _ in range(5):
        await asyncio.sleep(0)
    assert edge.resumed[0] == [1, 2, 3, 4]  # the window, not the whole backlog
    assert len(edge.streams) == 1
    stats = client.statistics()
    # the new client's window was 4 too: the later taps waited in the ledger, coalesced, none lost
    assert stats.unacked_batches == RETRY_WINDOW
    assert (stats.taps, stats.acked_taps) == (55, 0)
    assert stats.pending_taps + stats.unacked_taps == 55
    flush.cancel()


async def test_rejected_batch_is_reported_and_never_resent(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    region = Region()
    edge = StandInEdge(region)
    edge.reject.add(2)
    edge.ack_only[0] = 2  # batch 3 is applied, its ack lost
    edge.drop_after[0] = 3
    _, address = await serve(edge)
    acks: list[tuple[int, int]] = []
    client = new_client(clients, [address], clock, on_ack=lambda batch, ack: acks.append((batch.seq, ack.outcome)))
    taps = tap_batches(client, PLAN[:3])
    await flush_driving(client, clock)
    assert edge.streams == [[1, 2, 3], [3]]
    assert acks == [(1, Ack.ACCEPTED), (2, Ack.REJECTED), (3, Ack.DUPLICATE)]
    stream_id, emoji, n = PLAN[1]
    assert region.totals == taps - Counter({(stream_id, emoji): n})
    stats = client.statistics()
    assert (stats.acks_rejected, stats.rejected_taps) == (1, n)
    assert stats.taps == stats.acked_taps + stats.rejected_taps


async def test_unauthenticated_stream_surfaces_on_flush_and_is_not_retried(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    edge = StandInEdge(Region())
    edge.fatal = grpc.StatusCode.UNAUTHENTICATED
    _, address = await serve(edge)
    errors: list[ClientError] = []
    client = new_client(clients, [address], clock, token="expired", on_error=errors.append)
    tap_batches(client, PLAN[:1])
    with pytest.raises(ClientError) as err:
        await asyncio.wait_for(client.flush(timeout=1e6), 10)
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert errors == [err.value]
    await clock.advance(60.0)
    assert len(edge.streams) == 1
    assert client.statistics().state is ConnectionState.FAILED
    assert edge.metadata[0]["authorization"] == "Bearer expired"


def delta(epoch: int, seq: int, **counts: int) -> Frame:
    return Frame(
        stream_id="final",
        epoch=epoch,
        seq=seq,
        kind=Frame.DELTA,
        coalesced=1,
        counts=[common_pb2.ReactionCount(emoji=e, count=c) for e, c in counts.items()],
    )


def snapshot(epoch: int, seq: int, **counts: int) -> Frame:
    f = delta(epoch, seq, **counts)
    f.kind = Frame.SNAPSHOT
    return f


async def collect(client: ReactionClient, addresses: list[str], count: int, view: LiveView) -> list[Frame]:
    frames: list[Frame] = []
    async for frame in client.subscribe("final", broadcaster_addresses=addresses):
        view.apply(frame)
        frames.append(frame)
        if len(frames) == count:
            break
    return frames


async def test_subscribe_resumes_from_the_last_frame_after_a_disconnect(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    broadcaster = StandInBroadcaster(
        [
            [snapshot(7, 3, like=10), delta(7, 4, like=2), grpc.StatusCode.UNAVAILABLE],
            [delta(7, 5, like=3, heart=1)],
        ]
    )
    _, address = await serve(broadcaster)
    client = new_client(clients, [address], clock)
    view = LiveView()
    task = asyncio.ensure_future(collect(client, [address], 3, view))
    await drive(clock, task.done)
    frames = await task
    assert [(f.epoch, f.seq) for f in frames] == [(7, 3), (7, 4), (7, 5)]
    assert not broadcaster.requests[0].HasField("resume")
    assert (broadcaster.requests[1].resume.epoch, broadcaster.requests[1].resume.seq) == (7, 4)
    assert dict(view.totals) == {"like": 15, "heart": 1}
    assert client.statistics().subscribe_reconnects == 1


async def test_subscribe_snapshot_after_a_broadcaster_restart_resets_the_view(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient], dead_address: str
) -> None:
    broadcaster = StandInBroadcaster(
        [
            [snapshot(7, 3, like=10), delta(7, 4, like=2), grpc.StatusCode.UNAVAILABLE],
            [snapshot(8, 1, like=30), delta(8, 2, wow=1)],
        ]
    )
    _, address = await serve(broadcaster)
    client = new_client(clients, [dead_address], clock)
    view = LiveView()
    task = asyncio.ensure_future(collect(client, [dead_address, address], 4, view))
    await drive(clock, task.done)
    await task
    assert (broadcaster.requests[1].resume.epoch, broadcaster.requests[1].resume.seq) == (7, 4)
    assert dict(view.totals) == {"like": 30, "wow": 1}


async def test_subscribe_ends_after_a_drained_frame_when_the_broadcaster_closes_the_stream(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    last = delta(7, 2, like=1)
    last.drained = True
    broadcaster = StandInBroadcaster([[snapshot(7, 1, like=4), last, grpc.StatusCode.OK]])
    _, address = await serve(broadcaster)
    client = new_client(clients, [address], clock)
    view = LiveView()
    frames = await asyncio.wait_for(collect(client, [address], 10, view), 10)
    assert len(frames) == 2
    assert view.drained and dict(view.totals) == {"like": 5}
    assert len(broadcaster.requests) == 1


async def test_closing_the_client_ends_its_subscriptions(
    serve: Servers, clock: FakeClock, clients: list[ReactionClient]
) -> None:
    broadcaster = StandInBroadcaster([[snapshot(7, 1, like=4)]])
    _, address = await serve(broadcaster)
    client = new_client(clients, [address], clock)
    view = LiveView()
    task = asyncio.ensure_future(collect(client, [address], 10, view))
    await eventually(lambda: view.frames_applied == 1)
    await client.close()
    frames = await asyncio.wait_for(task, 10)
    assert len(frames) == 1
    assert len(broadcaster.requests) == 1


def test_live_view_follows_the_degrade_level_so_an_app_can_fall_back_to_static_hearts() -> None:
    view = LiveView()
    snapshot = broadcast_pb2.Frame(kind=broadcast_pb2.Frame.SNAPSHOT, epoch=7, seq=1, degrade_level=0)
    assert view.apply(snapshot) and view.degrade_level == 0
    assert view.apply(broadcast_pb2.Frame(kind=broadcast_pb2.Frame.DELTA, epoch=7, seq=2, degrade_level=2))
    assert view.degrade_level == 2
    assert view.apply(broadcast_pb2.Frame(kind=broadcast_pb2.Frame.DELTA, epoch=7, seq=3, degrade_level=0))
    assert view.degrade_level == 0
