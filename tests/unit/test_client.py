"""Unit tests of the client SDK's batching, numbering, backpressure, ack bookkeeping and LiveView.

No server: batches are inspected in the unacked buffer, and acks are fed to the client the way its reader
does. Time is a FakeClock.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from reactmesh.edge.backoff import backoff_delay
from reactmesh.edge.errors import ConfigError
from reactmesh.edge.sdk import ClientConfig, LiveView, ReactionClient
from reactmesh.merge.clock import FakeClock
from reactmesh.v1 import broadcast_pb2, common_pb2, ingest_pb2, polls_pb2

Ack = ingest_pb2.BatchAck


@pytest.fixture
def refused_address() -> Iterator[str]:
    """An address that refuses connections: a bound socket that never listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def make_client(clock: FakeClock | None = None, **kwargs: object) -> ReactionClient:
    return ReactionClient(["127.0.0.1:1"], "viewer-1", clock=clock or FakeClock(), rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def as_rows(client: ReactionClient) -> list[tuple[int, str, dict[str, int]]]:
    return [(b.seq, b.stream_id, {c.emoji: c.count for c in b.counts}) for b in client.unacked_batches()]


def conserved(client: ReactionClient) -> bool:
    s = client.statistics()
    return s.taps == s.pending_taps + s.unacked_taps + s.acked_taps + s.rejected_taps


def test_batches_are_numbered_per_session_across_streams() -> None:
    client = make_client()
    client.tap("final", "heart", n=3)
    client.tap("semi", "like")
    client.tap("final", "like")
    client.tap("final", "heart")
    assert client.tick() == 2
    client.tap("semi", "like", n=2)
    assert client.tick() == 1
    assert as_rows(client) == [
        (1, "final", {"heart": 4, "like": 1}),
        (2, "semi", {"like": 1}),
        (3, "semi", {"like": 2}),
    ]
    batches = client.unacked_batches()
    assert {b.session_id for b in batches} == {client.session_id}
    assert len(client.session_id) == 16
    assert {b.viewer_id for b in batches} == {"viewer-1"}
    assert conserved(client)


def test_each_client_instance_gets_its_own_session_id() -> None:
    assert make_client().session_id != make_client().session_id


def test_a_tick_without_taps_makes_no_batch() -> None:
    client = make_client()
    assert client.tick() == 0
    client.tap("s", "like")
    client.tick()
    assert client.tick() == 0
    assert [b.seq for b in client.unacked_batches()] == [1]


def test_batch_carries_the_clock_wall_time_when_closed() -> None:
    clock = FakeClock(start_wall_ms=1_234_000)
    client = make_client(clock)
    client.tap("s", "like")
    client.tick()
    assert client.unacked_batches()[0].client_time_ms == 1_234_000


async def test_ticker_closes_batches_every_interval_of_the_clock(refused_address: str) -> None:
    clock = FakeClock()
    client = ReactionClient([refused_address], "v", clock=clock, batch_interval_s=0.25, rng=random.Random(1))
    await client.start()
    try:
        client.tap("s", "like")
        await clock.advance(0.2)
        assert client.unacked_batches() == []
        await clock.advance(0.05)
        assert as_rows(client) == [(1, "s", {"like": 1})]
        await clock.advance(0.25)
        assert len(client.unacked_batches()) == 1
        client.tap("s", "heart", n=2)
        await clock.advance(0.25)
        assert as_rows(client) == [(1, "s", {"like": 1}), (2, "s", {"heart": 2})]
    finally:
        await client.close()


def test_more_than_sixteen_emojis_split_into_valid_batches() -> None:
    client = make_client()
    emojis = [f"e{i}" for i in range(20)]
    for e in emojis:
        client.tap("s", e)
    assert client.tick() == 2
    first, second = client.unacked_batches()
    assert len(first.counts) == 16 and len(second.counts) == 4
    assert [c.emoji for c in [*first.counts, *second.counts]] == emojis


def test_counts_above_the_entry_cap_split_across_batches_with_each_emoji_once_per_batch() -> None:
    client = make_client(max_count_per_entry=1000)
    client.tap("s", "like", n=2500)
    client.tap("s", "heart", n=7)
    assert client.tick() == 3
    assert as_rows(client) == [
        (1, "s", {"like": 1000, "heart": 7}),
        (2, "s", {"like": 1000}),
        (3, "s", {"like": 500}),
    ]
    for batch in client.unacked_batches():
        emojis = [c.emoji for c in batch.counts]
        assert len(emojis) == len(set(emojis))
        assert all(1 <= c.count <= 1000 for c in batch.counts)


def test_full_unacked_buffer_keeps_counting_taps_in_pending_and_drops_none() -> None:
    client = make_client(max_unacked_batches=2)
    client.tap("a", "like")
    client.tap("b", "like")
    client.tap("c", "like", n=5)
    assert client.tick() == 2
    for _ in range(100):
        client.tap("c", "like")
        client.tap("a", "heart")
    assert client.tick() == 0
    stats = client.statistics()
    assert (stats.taps, stats.pending_taps, stats.unacked_batches) == (207, 205, 2)
    assert conserved(client)

    client._apply_ack(Ack(seq=1, outcome=Ack.ACCEPTED, accepted_taps=1))
    assert client.tick() == 1
    assert as_rows(client)[-1] == (3, "c", {"like": 105})
    assert client.statistics().pending_taps == 100
    assert conserved(client)


def test_accepted_and_duplicate_acks_settle_batches_and_are_tallied() -> None:
    seen: list[tuple[int, int]] = []
    client = make_client(on_ack=lambda batch, ack: seen.append((batch.seq, ack.outcome)))
    for n in (2, 3, 4):
        client.tap("s", "like", n=n)
        client.tick()
    assert client._apply_ack(Ack(seq=2, outcome=Ack.ACCEPTED, accepted_taps=2, rate_limited_taps=1)) is None
    assert client._apply_ack(Ack(seq=1, outcome=Ack.DUPLICATE)) is None
    assert client._apply_ack(Ack(seq=1, outcome=Ack.ACCEPTED, accepted_taps=2)) is None  # stale: already settled
    assert [b.seq for b in client.unacked_batches()] == [3]
    stats = client.statistics()
    assert (stats.acks_accepted, stats.acks_duplicate, stats.accepted_taps, stats.rate_limited_taps) == (1, 1, 2, 1)
    assert stats.acked_taps == 5
    assert len(stats.ack_latencies_s) == 2
    assert seen == [(2, Ack.ACCEPTED), (1, Ack.DUPLICATE)]
    assert conserved(client)


def test_rejected_batch_leaves_the_buffer_and_is_counted_as_rejected() -> None:
    client = make_client()
    client.tap("s", "like", n=4)
    client.tick()
    client._apply_ack(Ack(seq=1, outcome=Ack.REJECTED, reject_reason=Ack.UNKNOWN_EMOJI, detail="no"))
    stats = client.statistics()
    assert (stats.unacked_batches, stats.acks_rejected, stats.rejected_taps) == (0, 1, 4)
    assert conserved(client)


def test_retry_ack_keeps_the_batch_and_asks_to_wait() -> None:
    client = make_client()
    client.tap("s", "like")
    client.tick()
    assert client._apply_ack(Ack(seq=1, outcome=Ack.RETRY, retry_after_ms=1500)) == 1.5
    assert [b.seq for b in client.unacked_batches()] == [1]
    assert client.statistics().acks_retry == 1


def test_a_raising_on_ack_callback_does_not_break_bookkeeping() -> None:
    def boom(batch: ingest_pb2.ClientBatch, ack: ingest_pb2.BatchAck) -> None:
        raise RuntimeError("app bug")

    client = make_client(on_ack=boom)
    client.tap("s", "like")
    client.tick()
    client._apply_ack(Ack(seq=1, outcome=Ack.ACCEPTED, accepted_taps=1))
    assert client.unacked_batches() == []


@pytest.mark.parametrize(
    ("stream_id", "emoji", "n"),
    [
        ("", "like", 1),
        ("bad stream", "like", 1),
        ("s" * 129, "like", 1),
        ("s", "Like", 1),
        ("s", "", 1),
        ("s", "like", 0),
        ("s", "like", 1.5),
        ("s", "like", True),
    ],
)
def test_tap_rejects_malformed_input(stream_id: str, emoji: str, n: object) -> None:
    client = make_client()
    with pytest.raises(ValueError):
        client.tap(stream_id, emoji, n)  # type: ignore[arg-type]
    assert client.statistics().taps == 0


async def test_tap_after_close_is_misuse() -> None:
    client = make_client()
    await client.close()
    with pytest.raises(RuntimeError):
        client.tap("s", "like")


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("edges", {"edges": ()}),
        ("edges", {"edges": ("",)}),
        ("viewer_id", {"viewer_id": ""}),
        ("viewer_id", {"viewer_id": "v" * 129}),
        ("batch_interval_s", {"batch_interval_s": 0}),
        ("max_unacked_batches", {"max_unacked_batches": 0}),
        ("backoff_initial_s", {"backoff_initial_s": -1}),
        ("backoff_max_s", {"backoff_initial_s": 2.0, "backoff_max_s": 1.0}),
        ("ack_timeout_s", {"ack_timeout_s": 0}),
        ("max_entries_per_batch", {"max_entries_per_batch": 17}),
        ("max_count_per_entry", {"max_count_per_entry": 0}),
    ],
)
def test_config_errors_name_the_field(field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"edges": ("127.0.0.1:1",), "viewer_id": "v", **kwargs}
    with pytest.raises(ConfigError) as err:
        ClientConfig(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_a_single_address_string_is_not_taken_for_a_list_of_edges() -> None:
    with pytest.raises(ConfigError) as err:
        ReactionClient("127.0.0.1:1", "v")
    assert err.value.field == "edges"


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    rng = random.Random(3)
    for failures, cap in ((1, 0.1), (2, 0.2), (3, 0.4), (10, 5.0), (1000, 5.0)):
        delays = [backoff_delay(failures, 0.1, 5.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # spread over the whole range, not pinned to the cap
        assert min(delays) < cap * 0.2


def frame(kind: int, epoch: int, seq: int, drained: bool = False, **counts: int) -> broadcast_pb2.Frame:
    return broadcast_pb2.Frame(
        stream_id="s",
        epoch=epoch,
        seq=seq,
        kind=kind,  # type: ignore[arg-type]
        counts=[common_pb2.ReactionCount(emoji=e, count=c) for e, c in counts.items()],
        coalesced=1,
        drained=drained,
    )


SNAPSHOT = broadcast_pb2.Frame.SNAPSHOT
DELTA = broadcast_pb2.Frame.DELTA


def test_live_view_snapshot_replaces_and_deltas_add() -> None:
    view = LiveView()
    assert view.apply(frame(SNAPSHOT, 1, 5, like=10, heart=2))
    assert view.apply(frame(DELTA, 1, 6, like=3, wow=1))
    assert dict(view.totals) == {"like": 13, "heart": 2, "wow": 1}
    assert view.apply(frame(SNAPSHOT, 2, 1, like=20))
    assert dict(view.totals) == {"like": 20}
    assert (view.epoch, view.seq) == (2, 1)


def test_live_view_ignores_a_replayed_delta() -> None:
    view = LiveView()
    view.apply(frame(SNAPSHOT, 1, 5, like=10))
    view.apply(frame(DELTA, 1, 6, like=1))
    assert not view.apply(frame(DELTA, 1, 6, like=1))
    assert not view.apply(frame(DELTA, 1, 4, like=1))
    assert view.apply(frame(DELTA, 1, 9, like=4))  # a coalesced frame skips seqs
    assert dict(view.totals) == {"like": 15}


def test_live_view_tracks_polls_and_drained() -> None:
    view = LiveView()
    snap = frame(SNAPSHOT, 1, 1)
    snap.polls.add(poll_id="p1", tallies=[1, 0], state=polls_pb2.Poll.OPEN)
    snap.polls.add(poll_id="p2", tallies=[0, 0], state=polls_pb2.Poll.OPEN)
    view.apply(snap)
    delta = frame(DELTA, 1, 2, drained=True)
    delta.polls.add(poll_id="p1", tallies=[1, 3], state=polls_pb2.Poll.CLOSED)
    view.apply(delta)
    assert list(view.polls["p1"].tallies) == [1, 3]
    assert list(view.polls["p2"].tallies) == [0, 0]
    assert view.drained


def test_live_view_totals_are_read_only() -> None:
    view = LiveView()
    view.apply(frame(SNAPSHOT, 1, 1, like=1))
    with pytest.raises(TypeError):
        view.totals["like"] = 5  # type: ignore[index]
