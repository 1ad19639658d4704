"""The Polls service of one broadcaster over real gRPC on loopback, with its real SQLite poll file and
the broadcaster's Subscribe stream, ticked explicitly on a FakeClock.

Proves: every bad input gets its documented status; a changed vote moves the tally; host close and
the closing time both close the poll, and later votes are refused and never counted; votes and
closes survive a restart (and the HLC continues after the stored stamps even if the wall clock went
back); a vote is answered only once it is in the poll file; subscribers get poll frames (one render
per tick, coalesced to the newest state for slow ones) and late joiners a snapshot with every poll
of the stream; bearer tokens tie votes to their viewer; the ``reactmesh poll`` commands work."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from reactmesh.edge.auth import AuthConfig, Authorizer
from reactmesh.edge.sdk import LiveView
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.polls import PollSet
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.broadcaster.service import BroadcastService
from reactmesh.region_node.cli.poll import add_poll_commands, run_poll
from reactmesh.region_node.polls.config import PollsConfig
from reactmesh.region_node.polls.service import PollsServicer, attach_polls
from reactmesh.region_node.polls.store import PollStore
from reactmesh.region_node.sqlite import SchemaVersionError, StoreError
from reactmesh.region_node.state import TOTALS, RegionState
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, polls_pb2, polls_pb2_grpc
from tests.support.auth import Keys

Frame = broadcast_pb2.Frame
Poll = polls_pb2.Poll
STREAM = "final"
READ_TIMEOUT = 10.0


class Region:
    """One broadcaster with polls: state, broadcaster, Polls + Broadcast served on loopback."""

    def __init__(
        self,
        db: Path | None,
        clock: FakeClock,
        config: PollsConfig,
        bconfig: BroadcasterConfig,
        auth: Authorizer | None = None,
    ) -> None:
        self.db = db
        self.auth = auth
        self.clock = clock
        self.config = config
        self.bconfig = bconfig
        self.state = RegionState(extra={"polls": PollSet()})
        self.broadcaster = Broadcaster(bconfig, clock, self.state)
        self.servicer: PollsServicer
        self.server = grpc.aio.server()
        self.channel: grpc.aio.Channel
        self.polls: Any
        self.bcast: Any

    async def start(self, node_id: str = "a/bcast-0") -> Region:
        self.servicer = await attach_polls(
            self.state, self.broadcaster, self.clock, node_id, str(self.db) if self.db else None, self.config, self.auth
        )
        self.servicer.add_to_server(self.server)
        BroadcastService(self.broadcaster, self.auth).add_to_server(self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.polls = polls_pb2_grpc.PollsStub(self.channel)
        self.bcast = broadcast_pb2_grpc.BroadcastStub(self.channel)
        return self

    async def stop(self) -> None:
        await self.servicer.close()
        await self.broadcaster.close()
        await self.channel.close()
        await self.server.stop(None)

    def react(self, stream: str = STREAM, n: int = 1) -> None:
        """Taps counted somewhere reach this broadcaster (what makes a stream known)."""
        delta = KeyedGCounter()
        delta.increment((stream, "like"), "a/agg-0~1", self.state.totals.value((stream, "like")) + n)
        self.state.merge_part(TOTALS, delta.encode())

    async def create(self, options: tuple[str, ...] = ("red", "blue", "green"), **kw: Any) -> Poll:
        request = polls_pb2.CreatePollRequest(stream_id=STREAM, question="Which kit?", options=options, **kw)
        poll: Poll = await self.polls.CreatePoll(request)
        return poll

    async def vote(self, poll_id: str, viewer: str, option: int, **kw: Any) -> Poll:
        reply = await self.polls.Vote(polls_pb2.VoteRequest(poll_id=poll_id, viewer_id=viewer, option=option), **kw)
        poll: Poll = reply.poll
        return poll

    async def get(self, poll_id: str) -> Poll:
        poll: Poll = await self.polls.GetPoll(polls_pb2.GetPollRequest(poll_id=poll_id))
        return poll

    async def close(self, poll_id: str, **kw: Any) -> Poll:
        poll: Poll = await self.polls.ClosePoll(polls_pb2.ClosePollRequest(poll_id=poll_id), **kw)
        return poll


MakeRegion = Callable[..., Awaitable[Region]]


@pytest.fixture
async def make_region(tmp_path: Path) -> AsyncIterator[MakeRegion]:
    started: list[Region] = []

    async def make(
        db: Path | None = None,
        clock: FakeClock | None = None,
        config: PollsConfig | None = None,
        bconfig: BroadcasterConfig | None = None,
        known: bool = True,
        auth: AuthConfig | None = None,
    ) -> Region:
        clock = clock or FakeClock()
        region = Region(
            db if db is not None else tmp_path / "polls.db",
            clock,
            config or PollsConfig(),
            bconfig or BroadcasterConfig(),
            Authorizer(auth, clock) if auth is not None else None,
        )
        if known:
            region.react()
        started.append(await region.start())
        return region

    yield make
    for region in started:
        with contextlib.suppress(Exception):  # some tests stop their regions themselves
            await region.stop()


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()


async def read(call: Any) -> Frame:
    frame = await asyncio.wait_for(call.read(), READ_TIMEOUT)
    assert isinstance(frame, Frame)
    return frame


# -- the API -----------------------------------------------------------------------------------


async def test_a_viewer_changes_a_vote_and_the_tally_follows(make_region: MakeRegion) -> None:
    region = await make_region()
    poll = await region.create()
    assert poll.state == Poll.OPEN and list(poll.tallies) == [0, 0, 0]
    assert poll.created_at_ms == region.clock.wall_ms() and poll.closes_at_ms == 0
    await region.vote(poll.poll_id, "ann", 0)
    await region.vote(poll.poll_id, "bob", 1)
    after = await region.vote(poll.poll_id, "ann", 2)
    assert list(after.tallies) == [0, 1, 1]
    got = await region.get(poll.poll_id)
    assert got == after
    assert (got.question, list(got.options), got.stream_id) == ("Which kit?", ["red", "blue", "green"], STREAM)


CREATE_CASES: list[tuple[str, dict[str, Any], grpc.StatusCode]] = [
    ("bad stream id", {"stream_id": "no spaces"}, grpc.StatusCode.INVALID_ARGUMENT),
    ("blank question", {"question": "   "}, grpc.StatusCode.INVALID_ARGUMENT),
    ("question too long", {"question": "q" * 281}, grpc.StatusCode.INVALID_ARGUMENT),
    ("one option", {"options": ["yes"]}, grpc.StatusCode.INVALID_ARGUMENT),
    ("eleven options", {"options": [f"o{i}" for i in range(11)]}, grpc.StatusCode.INVALID_ARGUMENT),
    ("blank option", {"options": ["yes", ""]}, grpc.StatusCode.INVALID_ARGUMENT),
    ("option too long", {"options": ["yes", "n" * 81]}, grpc.StatusCode.INVALID_ARGUMENT),
    ("duplicate options", {"options": ["yes", "yes"]}, grpc.StatusCode.INVALID_ARGUMENT),
    ("closing time in the past", {"closes_at_ms": 1}, grpc.StatusCode.INVALID_ARGUMENT),
    ("closing time now", {"closes_at_ms": -1}, grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize(("case", "fields", "code"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
async def test_create_poll_rejects_bad_input_with_its_status(
    make_region: MakeRegion, case: str, fields: dict[str, Any], code: grpc.StatusCode
) -> None:
    region = await make_region()
    request = polls_pb2.CreatePollRequest(stream_id=STREAM, question="Which kit?", options=["red", "blue"])
    for name, value in fields.items():
        if name == "options":
            del request.options[:]
            request.options.extend(value)
        elif name == "closes_at_ms" and value == -1:
            request.closes_at_ms = region.clock.wall_ms()
        else:
            setattr(request, name, value)
    assert await status_of(region.polls.CreatePoll(request)) == code


async def test_limits_at_the_edges_are_accepted(make_region: MakeRegion) -> None:
    region = await make_region()
    request = polls_pb2.CreatePollRequest(
        stream_id=STREAM,
        question="q" * 280,
        options=["o" * 80, *[f"o{i}" for i in range(9)]],
        closes_at_ms=region.clock.wall_ms() + 1,
    )
    poll = await region.polls.CreatePoll(request)
    assert len(poll.options) == 10
    assert (await region.vote(poll.poll_id, "v" * 128, 9)).tallies[9] == 1


async def test_vote_close_and_get_reject_bad_input_with_their_status(make_region: MakeRegion) -> None:
    region = await make_region()
    poll = await region.create()
    pid = poll.poll_id
    invalid, missing = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    assert await status_of(region.vote("", "ann", 0)) == invalid
    assert await status_of(region.vote("bad id!", "ann", 0)) == invalid
    assert await status_of(region.vote(pid, "", 0)) == invalid
    assert await status_of(region.vote(pid, "v" * 129, 0)) == invalid
    assert await status_of(region.vote(pid, "ann", 3)) == invalid
    assert await status_of(region.vote("f00d", "ann", 0)) == missing
    assert await status_of(region.get("f00d")) == missing
    assert await status_of(region.close("f00d")) == missing
    assert await status_of(region.get("")) == invalid
    assert list((await region.get(pid)).tallies) == [0, 0, 0]


async def test_a_drained_stream_takes_no_new_polls_and_the_per_stream_cap_holds(make_region: MakeRegion) -> None:
    region = await make_region(config=PollsConfig(max_polls_per_stream=2))
    await region.create()
    await region.create()
    assert await status_of(region.create()) == grpc.StatusCode.RESOURCE_EXHAUSTED
    region.broadcaster.drain(STREAM)
    assert await status_of(region.create()) == grpc.StatusCode.FAILED_PRECONDITION


async def test_polls_may_be_created_before_any_reaction(make_region: MakeRegion) -> None:
    region = await make_region(known=False)
    assert (await region.create()).stream_id == STREAM


async def test_require_known_stream_refuses_polls_before_any_reaction(make_region: MakeRegion) -> None:
    region = await make_region(known=False, config=PollsConfig(require_known_stream=True))
    assert await status_of(region.create()) == grpc.StatusCode.NOT_FOUND


async def test_host_close_refuses_later_votes_and_keeps_earlier_ones(make_region: MakeRegion) -> None:
    region = await make_region()
    poll = await region.create()
    await region.vote(poll.poll_id, "ann", 1)
    await region.clock.advance(0.25)
    closed = await region.close(poll.poll_id)
    assert closed.state == Poll.CLOSED and closed.closed_at_ms == region.clock.wall_ms()
    assert await status_of(region.vote(poll.poll_id, "ann", 0)) == grpc.StatusCode.FAILED_PRECONDITION
    assert await status_of(region.vote(poll.poll_id, "bob", 0)) == grpc.StatusCode.FAILED_PRECONDITION
    assert list((await region.get(poll.poll_id)).tallies) == [0, 1, 0]
    await region.clock.advance(1)
    assert await region.close(poll.poll_id) == closed  # closing again changes nothing
    stats = region.servicer.book.statistics()
    assert (stats.votes_accepted, stats.votes_rejected_closed, stats.host_closes) == (1, 2, 1)


async def test_a_poll_closes_at_its_closing_time_and_later_votes_never_count(make_region: MakeRegion) -> None:
    region = await make_region()
    book = region.servicer.book
    closes_at = region.clock.wall_ms() + 5000
    poll = await region.create(closes_at_ms=closes_at)
    await region.vote(poll.poll_id, "ann", 0)
    await region.clock.advance(4.999)
    assert book.tick() == 0
    assert (await region.vote(poll.poll_id, "bob", 2)).state == Poll.OPEN
    await region.clock.advance(0.001)
    assert book.tick() == 1
    got = await region.get(poll.poll_id)
    assert got.state == Poll.CLOSED and got.closed_at_ms == closes_at
    assert await status_of(region.vote(poll.poll_id, "cy", 1)) == grpc.StatusCode.FAILED_PRECONDITION
    assert list(got.tallies) == [1, 0, 1]
    # The host closing after the closing time does not move the close stamp.
    assert (await region.close(poll.poll_id)).closed_at_ms == closes_at


async def test_get_and_vote_close_a_poll_whose_time_has_passed_without_waiting_for_a_tick(
    make_region: MakeRegion,
) -> None:
    region = await make_region()
    poll = await region.create(closes_at_ms=region.clock.wall_ms() + 1000)
    await region.clock.advance(2)
    assert await status_of(region.vote(poll.poll_id, "ann", 0)) == grpc.StatusCode.FAILED_PRECONDITION
    assert (await region.get(poll.poll_id)).state == Poll.CLOSED
    assert region.servicer.book.tick() == 0


async def test_a_peer_stamp_far_ahead_does_not_drag_this_nodes_clock(make_region: MakeRegion) -> None:
    region = await make_region()
    poll = await region.create()
    ahead = HlcTimestamp(region.clock.wall_ms() + 3_600_000, 0, "z/bcast-0")
    region.state.merge("polls", PollSet().vote(poll.poll_id, "mallory", 1, ahead))
    after = await region.vote(poll.poll_id, "ann", 0)
    assert list(after.tallies) == [1, 1, 0]  # merged state is never refused, only not trusted as time
    book = region.servicer.book
    assert book.hlc.peek()[0] == region.clock.wall_ms()
    assert book.statistics().clock_drift_rejections == 1


# -- persistence -------------------------------------------------------------------------------


async def test_votes_and_closes_survive_a_restart_and_the_clock_continues_after_them(
    make_region: MakeRegion, tmp_path: Path
) -> None:
    clock = FakeClock()
    first = await make_region(clock=clock)
    open_poll = await first.create()
    closed_poll = await first.create(closes_at_ms=clock.wall_ms() + 60_000)
    for i in range(20):
        await first.vote(open_poll.poll_id, f"v{i}", i % 3)
        await first.vote(closed_poll.poll_id, f"v{i}", (i + 1) % 3)
    await first.vote(open_poll.poll_id, "v0", 1)
    await first.close(closed_poll.poll_id)
    before = [await first.get(p.poll_id) for p in (open_poll, closed_poll)]
    await first.stop()

    back_in_time = FakeClock(start_wall_ms=clock.wall_ms() - 10_000)
    second = await make_region(db=tmp_path / "polls.db", clock=back_in_time)
    assert [await second.get(p.poll_id) for p in (open_poll, closed_poll)] == before
    assert await status_of(second.vote(closed_poll.poll_id, "v1", 0)) == grpc.StatusCode.FAILED_PRECONDITION
    # v0's change after the restart wins although this wall clock is 10 s behind the stored stamps.
    after = await second.vote(open_poll.poll_id, "v0", 2)
    assert list(after.tallies) == [before[0].tallies[0], before[0].tallies[1] - 1, before[0].tallies[2] + 1]


async def test_a_vote_is_answered_only_once_it_is_in_the_poll_file(make_region: MakeRegion, tmp_path: Path) -> None:
    region = await make_region()
    poll = await region.create()
    replies = await asyncio.gather(*(region.vote(poll.poll_id, f"v{i}", i % 3) for i in range(60)))
    assert len(replies) == 60
    reader = await PollStore.open(tmp_path / "polls.db")
    try:
        on_disk = await reader.load()
    finally:
        await reader.close()
    assert on_disk.tally(poll.poll_id) == (20, 20, 20)
    stats = region.servicer.book.statistics()
    assert stats.saved_version == stats.version
    assert stats.flushes < 61  # group commits: concurrent votes share transactions


async def test_the_poll_file_refuses_other_files(tmp_path: Path) -> None:
    aggregator_file = tmp_path / "agg.db"
    await (await Store.open(aggregator_file)).close()
    with pytest.raises(StoreError, match="not a reactmesh poll store"):
        await PollStore.open(aggregator_file)
    newer = tmp_path / "newer.db"
    await (await PollStore.open(newer)).close()
    import sqlite3

    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError):
        await PollStore.open(newer)


async def test_polls_without_a_file_are_kept_in_memory(make_region: MakeRegion, tmp_path: Path) -> None:
    files_before = sorted(p.name for p in tmp_path.iterdir())  # noqa: ASYNC240 - a test's tmp dir
    region = Region(None, FakeClock(), PollsConfig(), BroadcasterConfig())
    region.react()
    await region.start()
    try:
        poll = await region.create()
        assert (await region.vote(poll.poll_id, "ann", 1)).tallies[1] == 1
    finally:
        await region.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before  # noqa: ASYNC240


# -- frames ------------------------------------------------------------------------------------


async def test_subscribers_get_poll_frames_and_late_joiners_a_snapshot_with_every_poll(
    make_region: MakeRegion,
) -> None:
    region = await make_region()
    early = region.bcast.Subscribe(broadcast_pb2.SubscribeRequest(stream_id=STREAM))
    view = LiveView()
    view.apply(await read(early))
    region.broadcaster.tick()  # the reaction seeded before the subscription
    poll = await region.create()
    other = await region.create(options=("yes", "no"))
    region.broadcaster.tick()
    for i in range(30):
        await region.vote(poll.poll_id, f"v{i}", i % 2)
    serialized = region.broadcaster.statistics().frames_serialized
    region.broadcaster.tick()
    assert region.broadcaster.statistics().frames_serialized == serialized  # nothing read yet
    while list(view.polls.get(poll.poll_id, Poll()).tallies) != [15, 15, 0]:
        frame = await read(early)
        view.apply(frame)
    assert set(view.polls) == {poll.poll_id, other.poll_id}
    assert region.broadcaster.tick() == 0  # nothing changed: no frame

    late = region.bcast.Subscribe(broadcast_pb2.SubscribeRequest(stream_id=STREAM))
    snapshot = await read(late)
    assert snapshot.kind == Frame.SNAPSHOT
    assert {p.poll_id: list(p.tallies) for p in snapshot.polls} == {poll.poll_id: [15, 15, 0], other.poll_id: [0, 0]}

    await region.close(poll.poll_id)
    region.broadcaster.tick()
    for call in (early, late):
        frame = await read(call)
        assert frame.kind == Frame.DELTA
        assert [(p.poll_id, p.state) for p in frame.polls] == [(poll.poll_id, Poll.CLOSED)]
    early.cancel()
    late.cancel()


async def test_each_tick_renders_a_poll_once_however_many_votes_arrived(make_region: MakeRegion) -> None:
    region = await make_region()
    sub = region.broadcaster.subscribe(broadcast_pb2.SubscribeRequest(stream_id=STREAM))
    Frame.FromString(sub.get_nowait() or b"")
    poll = await region.create()
    for i in range(50):
        await region.vote(poll.poll_id, f"v{i}", 0)
    assert region.broadcaster.tick() == 1
    frames = []
    while (data := sub.get_nowait()) is not None:
        frames.append(Frame.FromString(data))
    assert len(frames) == 1
    assert [list(p.tallies) for p in frames[0].polls] == [[50, 0, 0]]
    sub.close()


async def test_a_slow_subscriber_gets_the_newest_state_of_each_poll_in_a_coalesced_frame(
    make_region: MakeRegion,
) -> None:
    region = await make_region(bconfig=BroadcasterConfig(subscriber_queue_frames=2))
    poll = await region.create()
    other = await region.create(options=("yes", "no"))
    sub = region.broadcaster.subscribe(broadcast_pb2.SubscribeRequest(stream_id=STREAM))  # queue: SNAPSHOT
    for i in range(6):
        await region.vote(poll.poll_id, f"v{i}", 1)
        if i == 2:
            await region.vote(other.poll_id, "ann", 0)
        region.broadcaster.tick()
    view = LiveView()
    frames = []
    while (data := sub.get_nowait()) is not None:
        frames.append(Frame.FromString(data))
        view.apply(frames[-1])
    assert len(frames) == 2 and frames[1].coalesced > 1
    assert list(view.polls[poll.poll_id].tallies) == [0, 6, 0]
    assert list(view.polls[other.poll_id].tallies) == [1, 0]
    sub.close()


async def test_a_restarted_broadcaster_shows_its_stored_polls_from_the_first_tick(
    make_region: MakeRegion, tmp_path: Path
) -> None:
    first = await make_region()
    poll = await first.create()
    await first.vote(poll.poll_id, "ann", 2)
    await first.stop()
    second = await make_region(db=tmp_path / "polls.db")
    second.broadcaster.tick()
    shown = second.broadcaster.shown_polls(STREAM)
    assert list(shown[poll.poll_id].tallies) == [0, 0, 1]


# -- auth ----------------------------------------------------------------------------------------


async def test_roles_decide_who_creates_closes_votes_and_reads(make_region: MakeRegion, tmp_path: Path) -> None:
    clock = FakeClock()
    keys = Keys(tmp_path, clock)
    region = await make_region(clock=clock, auth=AuthConfig(enabled=True, key_file=str(keys.secret_file)))
    region.react("semi")
    ann = keys.bearer("ann")
    host = keys.bearer("hal", ["host"], [STREAM])
    other_host = keys.bearer("hil", ["host"], ["semi"])
    moderator = keys.bearer("mo", ["moderator"])
    request = polls_pb2.CreatePollRequest(stream_id=STREAM, question="Which kit?", options=["red", "blue"])
    unauthenticated, denied = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    assert await status_of(region.polls.CreatePoll(request)) == unauthenticated
    assert await status_of(region.polls.CreatePoll(request, metadata=keys.bearer(ago_s=7200))) == unauthenticated
    assert await status_of(region.polls.CreatePoll(request, metadata=ann)) == denied
    assert await status_of(region.polls.CreatePoll(request, metadata=other_host)) == denied
    poll = await region.polls.CreatePoll(request, metadata=host)
    semi = await region.polls.CreatePoll(
        polls_pb2.CreatePollRequest(stream_id="semi", question="Who?", options=["x", "y"]), metadata=moderator
    )
    assert await status_of(region.vote(poll.poll_id, "ann", 0)) == unauthenticated
    assert await status_of(region.vote(poll.poll_id, "bob", 0, metadata=ann)) == denied
    assert await status_of(region.vote(poll.poll_id, "ann", 0, metadata=moderator)) == denied
    assert (await region.vote(poll.poll_id, "ann", 0, metadata=ann)).tallies[0] == 1
    get = polls_pb2.GetPollRequest(poll_id=poll.poll_id)
    assert await status_of(region.polls.GetPoll(get)) == unauthenticated
    assert (await region.polls.GetPoll(get, metadata=ann)).tallies[0] == 1
    assert await status_of(region.close(poll.poll_id)) == unauthenticated
    assert await status_of(region.close(poll.poll_id, metadata=ann)) == denied
    assert await status_of(region.close(poll.poll_id, metadata=other_host)) == denied
    assert await status_of(region.close(semi.poll_id, metadata=host)) == denied
    assert await status_of(region.close("p" * 16, metadata=host)) == grpc.StatusCode.NOT_FOUND
    assert (await region.close(poll.poll_id, metadata=host)).state == Poll.CLOSED
    assert (await region.close(semi.poll_id, metadata=moderator)).state == Poll.CLOSED
    subscribe = broadcast_pb2.SubscribeRequest(stream_id=STREAM)
    assert await status_of(read(region.bcast.Subscribe(subscribe))) == unauthenticated
    assert (await read(region.bcast.Subscribe(subscribe, metadata=ann))).kind == Frame.SNAPSHOT


def test_bad_polls_config_names_the_field() -> None:
    from reactmesh.merge.errors import ConfigError

    for kwargs, field in (
        ({"tick_ms": 0}, "tick_ms"),
        ({"max_polls_per_stream": 0}, "max_polls_per_stream"),
        ({"synchronous": "OFF"}, "synchronous"),
        ({"require_known_stream": "yes"}, "require_known_stream"),
    ):
        with pytest.raises(ConfigError) as err:
            PollsConfig(**kwargs)
        assert err.value.field == field
    assert dataclasses.replace(PollsConfig(), tick_ms=50).tick_ms == 50


# -- the CLI -----------------------------------------------------------------------------------


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reactmesh")
    add_poll_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_poll_commands_create_vote_by_text_close_get_and_watch(
    make_region: MakeRegion, capsys: pytest.CaptureFixture[str]
) -> None:
    region = await make_region(config=PollsConfig(require_known_stream=False))
    at = ["--broadcaster", region.address]
    assert await run_poll(cli(["poll", "create", STREAM, "Best goal?", "header", "volley", *at])) == 0
    poll_id = capsys.readouterr().out.strip()
    assert await run_poll(cli(["poll", "vote", poll_id, "volley", "--viewer", "ann", *at])) == 0
    assert await run_poll(cli(["poll", "vote", poll_id, "0", "--viewer", "bob", *at])) == 0
    assert "volley" in capsys.readouterr().out
    assert await run_poll(cli(["poll", "vote", poll_id, "bicycle", "--viewer", "bob", *at])) == 2
    assert "not an option" in capsys.readouterr().err
    region.broadcaster.tick()
    assert await run_poll(cli(["poll", "watch", poll_id, "--once", *at])) == 0
    out = capsys.readouterr().out
    assert "Best goal?" in out and "50%" in out
    assert await run_poll(cli(["poll", "close", poll_id, *at])) == 0
    capsys.readouterr()
    assert await run_poll(cli(["poll", "get", poll_id, "--json", *at])) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["state"], got["tallies"], got["options"]) == ("CLOSED", [1, 1], ["header", "volley"])
    assert await run_poll(cli(["poll", "vote", poll_id, "1", "--viewer", "cy", *at])) == 1
    assert "FAILED_PRECONDITION" in capsys.readouterr().err
