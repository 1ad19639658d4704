"""The edge over real gRPC on loopback, in front of in-test aggregators (tests/integration/edge_helpers.py).

Proves: bad input is rejected with its reason and reaches no aggregator; a session's entries reach its
aggregator in order, also across a forced Forward-stream break (the unacked EdgeBatch is resent and its
entries come back DUPLICATE, counted once); a client's resent batch is DUPLICATE; overload ends the
stream with RESOURCE_EXHAUSTED and retry-after-ms without forwarding the refused batch; past the adaptive
limit the edge sheds (a RETRY with a hint, then the end of the stream once earlier batches are acked; none of
the refused ones counted) and admits again once the commit lag falls; garbage
bytes get an error status and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from reactmesh.edge.admission import ShedConfig
from reactmesh.edge.auth import AuthConfig, Authorizer
from reactmesh.edge.errors import RETRY_AFTER_KEY
from reactmesh.edge.forwarder import Forwarder, ForwarderClosed
from reactmesh.edge.ring import HashRing
from reactmesh.edge.sdk import ConnectionState, ReactionClient
from reactmesh.merge.clock import FakeClock
from reactmesh.v1 import aggregator_pb2, common_pb2, ingest_pb2
from tests.support.auth import Keys
from tests.support.edge import (
    FakeAggregator,
    batch,
    edge_rig,
    read_acks,
    serve_aggregator,
    session,
    stream_exchange,
)
from tests.support.polling import eventually

Ack = ingest_pb2.BatchAck


async def expect_status(call: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Read ``call`` to its end, which must be the error status ``code``."""
    async with asyncio.timeout(5):
        try:
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as error:
            assert error.code() == code, error
            return error
        raise AssertionError(f"stream ended with {await call.code()}, expected {code}")


async def test_every_bad_input_is_rejected_with_its_reason_and_reaches_no_aggregator() -> None:
    async with edge_rig(max_count_per_entry=100) as rig:
        sid = session()
        rig.edge.mute("muted-viewer", until_ms=rig.clock.wall_ms() + 60_000)
        rig.edge.drain("ended-stream")
        bad = [
            (ingest_pb2.ClientBatch(session_id=b"short", viewer_id="v", seq=1, stream_id="s"), Ack.BAD_SESSION_ID),
            (batch(sid, 2, viewer_id=""), Ack.BAD_VIEWER_ID),
            (batch(sid, 0), Ack.BAD_SEQ),
            (batch(sid, 4, stream_id="no spaces allowed"), Ack.BAD_STREAM_ID),
            (batch(sid, 5, {"thumbs_down": 1}), Ack.UNKNOWN_EMOJI),
            (batch(sid, 6, {"like": 0}), Ack.BAD_COUNT),
            (batch(sid, 7, {"like": 101}), Ack.BAD_COUNT),
            (batch(sid, 8, {}), Ack.EMPTY_BATCH),
            (batch(sid, 10, viewer_id="muted-viewer"), Ack.VIEWER_MUTED),
            (batch(sid, 11, stream_id="ended-stream"), Ack.STREAM_DRAINED),
        ]
        too_many = batch(sid, 12)
        too_many.counts.extend([common_pb2.ReactionCount(emoji="like", count=1)] * 16)
        bad.append((too_many, Ack.TOO_MANY_ENTRIES))
        dup = batch(sid, 13)
        dup.counts.add(emoji="like", count=2)
        bad.append((dup, Ack.DUPLICATE_EMOJI))
        good = batch(sid, 20, {"heart": 7})

        acks = await stream_exchange(rig, [b for b, _ in bad] + [good])

        for b, reason in bad:
            assert acks[b.seq].outcome == Ack.REJECTED, b
            assert acks[b.seq].reject_reason == reason, b
            assert acks[b.seq].detail
        assert acks[20].outcome == Ack.ACCEPTED and acks[20].accepted_taps == 7
        # The good batch went through the same ordered path after every bad one: only it arrived.
        assert rig.aggregator.received == [(sid, 20)]
        stats = rig.edge.statistics()
        assert stats["batches_rejected"] == len(bad)
        assert stats["batches_rejected_bad_count"] == 2
        assert stats["batches_rejected_viewer_muted"] == 1
        assert stats["batches_accepted"] == 1 and stats["taps_accepted"] == 7


async def test_one_sessions_entries_arrive_in_order_across_a_forced_forward_stream_break() -> None:
    async with edge_rig(max_entries_per_edge_batch=2) as rig:
        agg = rig.aggregator
        sid = session()
        agg.break_after_batches = 2  # apply the 2nd EdgeBatch, then break before acking it
        batches = [batch(sid, seq, {"like": seq}) for seq in range(1, 11)]

        acks = await stream_exchange(rig, batches)

        assert agg.breaks == 1 and agg.streams == 2
        assert agg.applied_seqs(sid) == list(range(1, 11))
        # What arrived: 1, 2, ... up to the break, then a single rewind to the oldest unacked entry (the
        # resent EdgeBatches, in their original order) and on in order from there.
        seqs = [seq for _, seq in agg.received]
        rewinds = [i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
        assert len(rewinds) == 1, seqs
        before, after = seqs[: rewinds[0]], seqs[rewinds[0] :]
        assert before == list(range(1, len(before) + 1))
        assert after == list(range(after[0], 11))
        duplicates = {seq for seq, ack in acks.items() if ack.outcome == Ack.DUPLICATE}
        assert duplicates == set(range(after[0], before[-1] + 1)), "applied before the break, DUPLICATE on resend"
        assert all(ack.outcome in (Ack.ACCEPTED, Ack.DUPLICATE) for ack in acks.values())
        assert agg.totals[("live-1", "like")] == sum(range(1, 11))
        accepted = sum(ack.accepted_taps for ack in acks.values() if ack.outcome == Ack.ACCEPTED)
        assert accepted + sum(duplicates) == sum(range(1, 11))
        assert rig.edge.statistics()["forward_batches_resent"] >= 1
        assert rig.edge.inflight == 0


async def test_many_sessions_keep_their_order_across_repeated_breaks() -> None:
    async with edge_rig(max_entries_per_edge_batch=3) as rig:
        agg = rig.aggregator
        sessions = [session() for _ in range(4)]
        calls = [rig.stub.Stream() for _ in sessions]
        for round_ in range(3):
            agg.break_after_batches = 2
            for seq in range(round_ * 5 + 1, round_ * 5 + 6):
                for sid, call in zip(sessions, calls, strict=True):
                    await call.write(batch(sid, seq))
            for call in calls:
                await read_acks(call, 5)
        for sid in sessions:
            assert agg.applied_seqs(sid) == list(range(1, 16))
        assert agg.breaks == 3
        assert agg.totals[("live-1", "like")] == 4 * 15
        for call in calls:
            await call.done_writing()


async def test_resent_batch_is_duplicate_and_counted_once() -> None:
    async with edge_rig() as rig:
        sid = session()
        first = await stream_exchange(rig, [batch(sid, 1, {"fire": 5}), batch(sid, 2, {"fire": 1})])
        assert [first[s].outcome for s in (1, 2)] == [Ack.ACCEPTED, Ack.ACCEPTED]
        # The client reconnects and resends batch 2 (its ack was "lost"), then goes on with 3.
        again = await stream_exchange(rig, [batch(sid, 2, {"fire": 1}), batch(sid, 3, {"fire": 2})])
        assert again[2].outcome == Ack.DUPLICATE and again[2].accepted_taps == 0
        assert again[3].outcome == Ack.ACCEPTED
        assert rig.aggregator.totals[("live-1", "fire")] == 8
        unary = await rig.stub.Send(batch(sid, 1, {"fire": 5}))
        assert unary.outcome == Ack.DUPLICATE
        stats = rig.edge.statistics()
        assert stats["batches_duplicate"] == 2 and stats["taps_accepted"] == 8


async def test_overload_ends_the_stream_with_resource_exhausted_and_retry_after() -> None:
    async with edge_rig(max_inflight_entries=2, retry_after_ms=750) as rig:
        agg = rig.aggregator
        agg.gate.clear()  # the aggregator applies but does not ack: entries stay in flight
        sid = session()
        call = rig.stub.Stream()
        for seq in (1, 2, 3):
            await call.write(batch(sid, seq))
        error = await expect_status(call, grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert dict(error.trailing_metadata() or ())[RETRY_AFTER_KEY] == "750"
        await agg.wait_for(lambda: len(agg.received) >= 1)
        assert rig.edge.inflight == 2  # batches 1 and 2; the refused batch 3 was not forwarded

        unary_sid = session()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rig.stub.Send(batch(unary_sid, 1))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(info.value.trailing_metadata() or ())[RETRY_AFTER_KEY] == "750"

        agg.gate.set()
        await eventually(lambda: rig.edge.inflight == 0)
        # After retry-after-ms the client comes back and resends everything unacked, in order.
        acks = await stream_exchange(rig, [batch(sid, 1), batch(sid, 2)])
        acks.update(await stream_exchange(rig, [batch(sid, 3), batch(sid, 4)]))
        assert [acks[s].outcome for s in (1, 2, 3, 4)] == [Ack.DUPLICATE, Ack.DUPLICATE, Ack.ACCEPTED, Ack.ACCEPTED]
        assert agg.applied_seqs(sid) == [1, 2, 3, 4]
        assert agg.totals[("live-1", "like")] == 4
        assert rig.edge.statistics()["batches_overloaded"] == 2


async def test_commit_lag_sheds_with_retry_and_the_edge_admits_again_once_it_falls() -> None:
    shedding = ShedConfig(target_ms=100, interval_ms=100, initial_limit=4, min_limit=2)
    async with edge_rig(shedding=shedding, retry_after_ms=300) as rig:
        agg = rig.aggregator
        agg.gate.clear()  # commits stall: the four admitted entries wait
        sid, other = session(), session()
        call = rig.stub.Stream()
        for seq in (1, 2, 3, 4):
            await call.write(batch(sid, seq))
        await eventually(lambda: rig.edge.inflight == 4)
        await rig.clock.advance(0.5)  # the oldest entry has waited 0.5 s, five times the target
        await call.write(batch(sid, 5))
        await call.write(batch(sid, 6))
        refused = await read_acks(call, 2)  # 5 shed; 6, written after it, refused with it at once
        assert refused[5].outcome == Ack.RETRY
        assert refused[5].retry_after_ms == 500  # at least the lag it saw
        assert refused[5].detail
        assert refused[6].outcome == Ack.RETRY and refused[6].retry_after_ms == 500
        assert "seq 5" in refused[6].detail
        assert rig.edge.admission.limit == 2
        unary = await rig.stub.Send(batch(other, 1))
        assert unary.outcome == Ack.RETRY and unary.retry_after_ms == 500

        agg.gate.set()
        first = await read_acks(call, 4)  # the batches admitted before the RETRY are still acked
        assert all(first[s].outcome == Ack.ACCEPTED for s in (1, 2, 3, 4))
        assert agg.applied_seqs(sid) == [1, 2, 3, 4]  # 5 and 6 were never forwarded
        assert (sid, 5) not in agg.received and (sid, 6) not in agg.received
        await rig.clock.advance(0.5)  # the client waits out the hint and resends on the same stream
        await call.write(batch(sid, 5))
        await call.write(batch(sid, 6))
        await call.done_writing()
        acks = await read_acks(call, 2)
        assert [acks[s].outcome for s in (5, 6)] == [Ack.ACCEPTED, Ack.ACCEPTED]
        async with asyncio.timeout(5):
            assert await call.read() is grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK
        assert agg.applied_seqs(sid) == [1, 2, 3, 4, 5, 6]
        assert (await rig.stub.Send(batch(other, 1))).outcome == Ack.ACCEPTED
        assert agg.totals[("live-1", "like")] == 7
        stats = rig.edge.statistics()
        assert stats["batches_overloaded"] == 3  # every RETRY answered: 5, 6 with it, and the unary one
        assert stats["batches_retry_followups"] == 1
        assert stats["batches_shed"] == 2


async def test_a_refused_seq_resent_and_refused_again_keeps_later_seqs_refused() -> None:
    shedding = ShedConfig(target_ms=100, interval_ms=100, initial_limit=2, min_limit=2)
    async with edge_rig(shedding=shedding, retry_after_ms=300) as rig:
        agg = rig.aggregator
        agg.gate.clear()
        sid = session()
        call = rig.stub.Stream()
        for seq in (1, 2, 3, 4):
            await call.write(batch(sid, seq))
        refused = await read_acks(call, 2)  # the limit is 2: 3 shed, 4 refused with it
        assert [refused[s].outcome for s in (3, 4)] == [Ack.RETRY, Ack.RETRY]
        for seq in (3, 4):  # resent too early: 3 is shed again, and 4 again with it
            await call.write(batch(sid, seq))
        again = await read_acks(call, 2)
        assert [again[s].outcome for s in (3, 4)] == [Ack.RETRY, Ack.RETRY]
        assert rig.edge.statistics()["batches_retry_followups"] == 2
        agg.gate.set()
        await read_acks(call, 2)  # 1 and 2
        for seq in (3, 4):
            await call.write(batch(sid, seq))
        await call.done_writing()
        last = await read_acks(call, 2)
        assert [last[s].outcome for s in (3, 4)] == [Ack.ACCEPTED, Ack.ACCEPTED]
        assert agg.applied_seqs(sid) == [1, 2, 3, 4]


async def test_garbage_bytes_get_invalid_argument_and_the_server_keeps_serving() -> None:
    async with edge_rig() as rig:
        raw_stream = rig.channel.stream_stream("/reactmesh.v1.Ingest/Stream")
        call = raw_stream()
        await call.write(b"\xff\xff\xff\xff\x0fnot a protobuf")
        await expect_status(call, grpc.StatusCode.INVALID_ARGUMENT)

        raw_unary = rig.channel.unary_unary("/reactmesh.v1.Ingest/Send")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw_unary(b"\x0a\xff\xff\xff\xff")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # Garbage after a valid batch on the same stream ends that stream too.
        sid = session()
        call = raw_stream(iter([batch(sid, 1).SerializeToString(), b"\x12\x05ab"]))
        await expect_status(call, grpc.StatusCode.INVALID_ARGUMENT)

        acks = await stream_exchange(rig, [batch(session(), 1)])
        assert acks[1].outcome == Ack.ACCEPTED


async def test_a_batch_of_another_session_ends_the_stream_with_invalid_argument() -> None:
    async with edge_rig() as rig:
        first, other = session(), session()
        # The client writes nothing after the batch that ends the call: a grpc-python client whose write is
        # in flight when the status arrives reports INTERNAL instead of the server's status.
        call = rig.stub.Stream()
        await call.write(batch(first, 1))
        await call.write(batch(other, 2))
        await expect_status(call, grpc.StatusCode.INVALID_ARGUMENT)
        await rig.aggregator.wait_for(lambda: (first, 1) in rig.aggregator.received)
        assert (other, 2) not in rig.aggregator.received


async def test_rate_limit_grants_part_of_a_batch_and_forwards_nothing_when_none_is_left() -> None:
    async with edge_rig(rate_per_s=1.0, burst=10) as rig:
        sid = session()
        acks = await stream_exchange(
            rig, [batch(sid, 1, {"like": 4, "heart": 4, "fire": 4}), batch(sid, 2, {"like": 3})]
        )
        assert (acks[1].outcome, acks[1].accepted_taps, acks[1].rate_limited_taps) == (Ack.ACCEPTED, 10, 2)
        assert (acks[2].outcome, acks[2].accepted_taps, acks[2].rate_limited_taps) == (Ack.ACCEPTED, 0, 3)
        agg = rig.aggregator
        assert agg.received == [(sid, 1)]
        assert (agg.totals[("live-1", "like")], agg.totals[("live-1", "heart")], agg.totals[("live-1", "fire")]) == (
            4,
            4,
            2,
        )
        await rig.clock.advance(2.0)
        acks = await stream_exchange(rig, [batch(sid, 3, {"like": 3})])
        assert (acks[3].accepted_taps, acks[3].rate_limited_taps) == (2, 1)
        stats = rig.edge.statistics()
        assert (stats["taps_accepted"], stats["taps_rate_limited"]) == (12, 6)


async def test_ingest_needs_a_valid_token_and_takes_batches_of_its_subject_only(tmp_path: Path) -> None:
    keys = Keys(tmp_path, FakeClock())

    def auth(clock: FakeClock) -> Authorizer:
        keys.clock = clock
        return Authorizer(AuthConfig(enabled=True, key_file=str(keys.secret_file), leeway_s=5), clock)

    async with edge_rig(auth=auth) as rig:
        sid = session()
        # A bad token is refused when the call opens, before any batch is read.
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        await expect_status(rig.stub.Stream(), unauthenticated)
        forged = keys.bearer(key="some-other-secret-of-at-least-32-bytes")
        for metadata in (forged, keys.bearer(ttl_s=60, ago_s=66), keys.bearer(claims={"aud": "x"})):
            await expect_status(rig.stub.Stream(metadata=metadata), unauthenticated)
        await expect_status(
            rig.stub.Stream(metadata=keys.bearer(claims={"roles": []})), grpc.StatusCode.PERMISSION_DENIED
        )

        metadata = keys.bearer("viewer-1", ttl_s=60)
        acks = await stream_exchange(rig, [batch(sid, 1)], metadata=metadata)
        assert acks[1].outcome == Ack.ACCEPTED
        # A batch of another viewer ends the stream; nothing after it is forwarded.
        call = rig.stub.Stream(metadata=metadata)
        for b in (batch(sid, 2, viewer_id="someone-else"), batch(sid, 3)):
            await call.write(b)
        error = await expect_status(call, grpc.StatusCode.PERMISSION_DENIED)
        assert "someone-else" in (error.details() or "")
        assert rig.aggregator.received == [(sid, 1)]
        assert rig.edge.statistics()["batches_rejected_bad_viewer_id"] == 1
        ok = await rig.stub.Send(batch(sid, 4), metadata=metadata)
        assert ok.outcome == Ack.ACCEPTED

        # A token that expires while its stream is open ends the stream at the next batch (after the leeway).
        call = rig.stub.Stream(metadata=metadata)
        await call.write(batch(sid, 5))
        assert (await read_acks(call, 1))[5].outcome == Ack.ACCEPTED
        await rig.clock.advance(65)
        await call.write(batch(sid, 6))
        await expect_status(call, unauthenticated)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rig.stub.Send(batch(sid, 7), metadata=metadata)
        assert info.value.code() == unauthenticated


async def test_entry_refused_by_the_aggregator_is_rejected() -> None:
    async with edge_rig() as rig:
        rig.aggregator.refused_streams.add("live-1")
        ack = await rig.stub.Send(batch(session(), 1))
        assert ack.outcome == Ack.REJECTED
        assert rig.edge.statistics()["batches_rejected_refused"] == 1


async def test_sessions_go_to_the_aggregator_the_ring_names() -> None:
    async with edge_rig(n_aggregators=3) as rig:
        ring = HashRing(rig.edge.config.aggregators, rig.edge.config.ring_vnodes)
        sessions = [session() for _ in range(30)]
        for sid in sessions:
            acks = await stream_exchange(rig, [batch(sid, 1), batch(sid, 2)])
            assert {a.outcome for a in acks.values()} == {Ack.ACCEPTED}
        for address, agg in rig.aggregators.items():
            assert {sid for sid, _ in agg.received} == {sid for sid in sessions if ring.lookup(sid) == address}
        assert sum(1 for agg in rig.aggregators.values() if agg.received) >= 2


async def test_listeners_see_every_outcome_at_one_seam() -> None:
    events: list[tuple[int, int, int, int]] = []
    async with edge_rig(rate_per_s=1.0, burst=3) as rig:
        rig.edge.listeners.append(lambda *event: events.append(event))
        sid = session()
        await stream_exchange(rig, [batch(sid, 1, {"like": 5}), batch(sid, 0), batch(sid, 2, {"like": 1})])
    assert sorted(events) == sorted(
        [
            (Ack.ACCEPTED, 3, 2, 0),
            (Ack.REJECTED, 0, 0, Ack.BAD_SEQ),
            (Ack.ACCEPTED, 0, 1, 0),  # bucket empty: acked without forwarding
        ]
    )


async def test_close_fails_unacked_streams_with_unavailable_after_the_grace_period() -> None:
    async with edge_rig() as rig:
        agg = rig.aggregator
        agg.gate.clear()
        sid = session()
        call = rig.stub.Stream()
        await call.write(batch(sid, 1))
        await agg.wait_for(lambda: len(agg.received) == 1)
        closing = asyncio.ensure_future(rig.edge.close(grace_s=2.0))
        await rig.clock.advance(0)
        assert not closing.done()
        await rig.clock.advance(2.0)
        await asyncio.wait_for(closing, 5)
        await expect_status(call, grpc.StatusCode.UNAVAILABLE)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rig.stub.Send(batch(session(), 1))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_close_waits_for_inflight_acks() -> None:
    async with edge_rig() as rig:
        agg = rig.aggregator
        agg.gate.clear()
        sid = session()
        call = rig.stub.Stream()
        await call.write(batch(sid, 1))
        await agg.wait_for(lambda: len(agg.received) == 1)
        closing = asyncio.ensure_future(rig.edge.close(grace_s=30.0))
        agg.gate.set()
        await asyncio.wait_for(closing, 5)
        acks = await read_acks(call, 1)
        assert acks[1].outcome == Ack.ACCEPTED


async def test_forwarder_packs_entries_per_flush_interval_or_when_full() -> None:
    clock = FakeClock()
    agg = FakeAggregator()
    server, address = await serve_aggregator(agg)
    forwarder = Forwarder(address, clock, flush_interval_s=0.005, max_entries=4, backoff_s=0.1, backoff_max_s=1.0)
    forwarder.start()
    try:
        sid = session()
        counts = [common_pb2.ReactionCount(emoji="like", count=1)]
        first = [forwarder.submit(sid, seq, "s", counts, clock.wall_ms()) for seq in (1, 2, 3)]
        for _ in range(50):  # let the writer reach its flush-interval wait
            if clock.pending_sleepers():
                break
            await asyncio.sleep(0)
        assert clock.pending_sleepers() == 1 and agg.received == []
        await clock.advance(0.005)
        await agg.wait_for(lambda: len(agg.received) == 3)
        assert agg.batch_sizes == [3]
        assert await asyncio.wait_for(asyncio.gather(*first), 5) == [aggregator_pb2.EdgeAck.APPLIED] * 3

        full = [forwarder.submit(sid, seq, "s", counts, clock.wall_ms()) for seq in range(4, 8)]
        await agg.wait_for(lambda: len(agg.received) == 7)  # sent at 4 entries, no clock advance
        assert agg.batch_sizes == [3, 4]
        await asyncio.wait_for(asyncio.gather(*full), 5)
    finally:
        await forwarder.close(grace_s=0)
        await server.stop(None)


async def test_forwarder_close_fails_unacked_entries_with_forwarder_closed() -> None:
    clock = FakeClock()
    agg = FakeAggregator()
    agg.gate.clear()
    server, address = await serve_aggregator(agg)
    forwarder = Forwarder(address, clock, flush_interval_s=0, max_entries=4, backoff_s=0.1, backoff_max_s=1.0)
    forwarder.start()
    try:
        future = forwarder.submit(session(), 1, "s", [common_pb2.ReactionCount(emoji="like", count=1)], 0)
        await agg.wait_for(lambda: len(agg.received) == 1)
        await forwarder.close(grace_s=0)
        with pytest.raises(ForwarderClosed):
            future.result()
    finally:
        await server.stop(None)


async def test_forwarder_drops_a_stream_on_a_mismatched_ack_and_resends() -> None:
    async with edge_rig() as rig:
        agg = rig.aggregator
        agg.corrupt_next_ack = True
        sid = session()
        acks = await stream_exchange(rig, [batch(sid, 1, {"wow": 2})])
        assert acks[1].outcome == Ack.DUPLICATE  # applied on the first stream, resent on the second
        assert agg.received == [(sid, 1), (sid, 1)] and agg.streams == 2
        assert agg.totals[("live-1", "wow")] == 2
        assert rig.edge.statistics()["forward_protocol_errors"] == 1


async def test_forwarder_backs_off_on_consecutive_failures_and_delivers_after_recovery() -> None:
    clock = FakeClock()
    agg = FakeAggregator()
    agg.refuse_calls = True
    server, address = await serve_aggregator(agg)
    forwarder = Forwarder(address, clock, flush_interval_s=0, max_entries=4, backoff_s=0.1, backoff_max_s=0.4)
    forwarder.start()
    try:
        future = forwarder.submit(session(), 1, "s", [common_pb2.ReactionCount(emoji="like", count=1)], 0)
        # The first attempt and one immediate retry fail; then the forwarder waits on the clock.
        await eventually(lambda: clock.pending_sleepers() == 1)
        assert agg.streams == 2
        for expected_streams, delay in ((3, 0.1), (4, 0.2), (5, 0.4), (6, 0.4)):  # doubling, capped
            await clock.advance(delay)
            await eventually(lambda n=expected_streams: agg.streams == n and clock.pending_sleepers() == 1)  # type: ignore[misc]
        assert not future.done()
        agg.refuse_calls = False
        await clock.advance(0.4)
        assert await asyncio.wait_for(future, 5) == aggregator_pb2.EdgeAck.APPLIED
        assert forwarder.statistics()["stream_failures"] == 6
    finally:
        await forwarder.close(grace_s=0)
        await server.stop(None)


async def test_the_sdk_rides_out_shedding_on_one_stream_and_every_tap_counts_once() -> None:
    shedding = ShedConfig(target_ms=100, interval_ms=100, initial_limit=2, min_limit=2)
    async with edge_rig(shedding=shedding, retry_after_ms=300) as rig:
        agg = rig.aggregator
        agg.gate.clear()  # commits stall: two batches fill the limit, the next is shed
        client = ReactionClient([rig.address], "viewer-1", clock=rig.clock, rng=random.Random(5), ack_timeout_s=1e6)
        try:
            taps: Counter[tuple[str, str]] = Counter()
            for i in range(8):
                client.tap("live-1", "like", i + 1)
                client.tick()
                taps[("live-1", "like")] += i + 1
            flush = asyncio.ensure_future(client.flush(timeout=1e6))
            await eventually(lambda: client.statistics().retry_pauses == 1)
            assert client.statistics().state is ConnectionState.WAITING
            agg.gate.set()
            while not flush.done():  # the client waits out each hint on the fake clock, then resends
                await rig.clock.advance(0.05)
                await asyncio.sleep(0.002)
            await flush
            stats = client.statistics()
        finally:
            await client.close()
        sid = client.session_id
        assert agg.applied_seqs(sid) == list(range(1, stats.batches + 1))  # every batch applied once, in order
        assert agg.totals == taps
        assert (stats.streams_opened, stats.reconnects, stats.acks_duplicate) == (1, 0, 0)
        assert stats.acks_retry >= 1 and stats.acked_taps == stats.taps == 36
        assert rig.edge.statistics()["batches_shed"] >= 1
