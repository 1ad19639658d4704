"""The CommentsService of one broadcaster over real gRPC on loopback, with its real SQLite comment file, on a
FakeClock; frames are built by calling the hub's ``tick`` (what its loop does every ``tick_ms``).

Proves: a late joiner gets the last 100 comments and the pin; a resume gets exactly what followed its last seen
id, or a snapshot flagged as a gap; sampling keeps every priority comment and caps the rest at the rate; a
resend is stored once; a muted viewer's and a blocklisted comment are seen by their author only (stream and
history); deletes and pins reach watchers in the next frame and history; history pages with a cursor and
survives a restart; bad input gets INVALID_ARGUMENT, RESOURCE_EXHAUSTED with a retry hint, UNAUTHENTICATED
and PERMISSION_DENIED."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from reactmesh.edge.auth import AuthConfig, Authorizer
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.comments import Comment, CommentSet, floor_for
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.region_node.cli.comments import add_comments_commands, run_comments
from reactmesh.region_node.comments.config import CommentsConfig
from reactmesh.region_node.comments.service import CommentsServicer, attach_comments
from reactmesh.region_node.comments.store import CommentStore
from reactmesh.region_node.state import COMMENTS, MUTES, RegionState, comment_collections
from reactmesh.v1 import comments_pb2, comments_pb2_grpc
from tests.support.auth import Keys

STREAM = "final"
FAST = CommentsConfig(post_rate_per_s=1000, post_burst=1000, blocklist=("darn",))
READ_TIMEOUT = 10.0
Frame = comments_pb2.CommentFrame


class Node:
    """One broadcaster's comments served on loopback."""

    def __init__(self, db: Path | None, clock: FakeClock, config: CommentsConfig, auth: Authorizer | None) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.auth = auth
        self.state = RegionState(extra=comment_collections())
        self.server = grpc.aio.server()
        self.servicer: CommentsServicer

    async def start(self) -> Node:
        self.servicer = await attach_comments(
            self.state, self.clock, "a/bcast-0", str(self.db) if self.db else None, self.config, self.auth
        )
        self.servicer.add_to_server(self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = comments_pb2_grpc.CommentsServiceStub(self.channel)
        return self

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        await self.servicer.close()

    def tick(self) -> int:
        return self.servicer.book.hub.tick()

    async def post(self, viewer: str, text: str, key: str = "", **kw: Any) -> comments_pb2.PostCommentResponse:
        req = comments_pb2.PostCommentRequest(stream_id=STREAM, viewer_id=viewer, text=text, client_key=key)
        return await self.stub.PostComment(req, **kw)

    async def history(self, before: str = "", limit: int = 0, viewer: str = "") -> comments_pb2.GetCommentsResponse:
        req = comments_pb2.GetCommentsRequest(stream_id=STREAM, before=before, limit=limit, viewer_id=viewer)
        return await self.stub.GetComments(req)


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []

    async def make(
        clock: FakeClock | None = None,
        config: CommentsConfig = FAST,
        auth: AuthConfig | None = None,
        db: Path | None = tmp_path / "comments.db",
    ) -> Node:
        clock = clock or FakeClock()
        node = await Node(db, clock, config, Authorizer(auth, clock) if auth else None).start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()


class Watch:
    """A WatchComments call and the frames read from it."""

    def __init__(self, node: Node, viewer: str = "", after_id: str = "") -> None:
        req = comments_pb2.WatchCommentsRequest(stream_id=STREAM, viewer_id=viewer, after_id=after_id)
        self.call = node.stub.WatchComments(req)

    async def next(self) -> Frame:
        msg = await asyncio.wait_for(self.call.read(), READ_TIMEOUT)
        assert msg is not grpc.aio.EOF
        return msg.frame

    def close(self) -> None:
        self.call.cancel()


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, dict[str, str]]:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        trailing = {k: v for k, v in (err.trailing_metadata() or ()) if isinstance(v, str)}
        return err.code(), trailing
    return grpc.StatusCode.OK, {}


def ids(frame: Frame) -> list[str]:
    return [c.comment_id for c in frame.comments]


async def test_late_joiner_gets_the_last_100_and_new_comments_arrive_in_the_next_frame(make_node: MakeNode) -> None:
    node = await make_node()
    posted = [(await node.post(f"v{i % 7}", f"hello {i}")).comment.comment_id for i in range(130)]
    assert posted == sorted(posted) and len(set(posted)) == 130  # HLC ids: unique and time-ordered
    watch = Watch(node)
    first = await watch.next()
    assert ids(first) == posted[-100:] and not first.gap
    late = (await node.post("v1", "late")).comment.comment_id
    node.tick()
    assert ids(await watch.next()) == [late]
    watch.close()


async def test_resume_gets_exactly_what_followed_or_a_snapshot_flagged_as_gap(make_node: MakeNode) -> None:
    config = CommentsConfig(post_rate_per_s=1000, post_burst=1000, buffer_per_stream=50, late_join=40)
    node = await make_node(config=config)
    posted = [(await node.post("v", f"c{i}")).comment.comment_id for i in range(80)]
    resumed = Watch(node, after_id=posted[60])
    frame = await resumed.next()
    assert ids(frame) == posted[61:] and not frame.gap
    too_old = Watch(node, after_id=posted[5])  # no longer buffered (buffer holds the last 50)
    frame = await too_old.next()
    assert frame.gap and ids(frame) == posted[-40:]
    resumed.close()
    too_old.close()


async def test_sampling_keeps_the_priority_lane_whole_and_caps_the_rest(make_node: MakeNode, tmp_path: Path) -> None:
    clock = FakeClock()
    keys = Keys(tmp_path, clock)
    config = CommentsConfig(post_rate_per_s=10_000, post_burst=10_000, sample_rate_per_s=50)
    node = await make_node(clock=clock, config=config, auth=AuthConfig(enabled=True, key_file=str(keys.secret_file)))
    watch = Watch(node)
    watch.call = node.stub.WatchComments(comments_pb2.WatchCommentsRequest(stream_id=STREAM), metadata=keys.bearer())
    await watch.next()
    host = keys.bearer("hal", ["host"], [STREAM])
    verified = keys.bearer("vera", claims={"verified": True})
    priority = []
    for i in range(1000):
        if i % 100 == 0:
            priority.append((await node.post("hal", f"host {i}", metadata=host)).comment.comment_id)
        elif i % 100 == 50:
            priority.append((await node.post("vera", f"verified {i}", metadata=verified)).comment.comment_id)
        else:
            await node.post(f"v{i % 40}", f"viewer {i}", metadata=keys.bearer(f"v{i % 40}"))
    node.tick()
    frame = await watch.next()
    got = ids(frame)
    assert set(priority) <= set(got)
    assert len(got) == len(priority) + 50 and frame.sampled_out == 1000 - len(priority) - 50
    assert got == sorted(got)  # arrival order kept
    stats = node.servicer.book.hub.statistics()
    assert stats.priority == len(priority) and stats.sampled_out == frame.sampled_out
    watch.close()


async def test_a_resend_is_stored_once(make_node: MakeNode) -> None:
    node = await make_node()
    first = await node.post("ann", "hi", key="k-1")
    again = await node.post("ann", "hi", key="k-1")
    assert again.duplicate and again.comment.comment_id == first.comment.comment_id
    other = await node.post("bob", "hi", key="k-1")  # another viewer's key is another comment
    assert not other.duplicate
    assert [c.comment_id for c in (await node.history()).comments] == [
        other.comment.comment_id,
        first.comment.comment_id,
    ]
    store = await CommentStore.open(node.db)  # type: ignore[arg-type]
    assert await store.count() == 2
    await store.close()


async def test_muted_and_blocklisted_comments_are_seen_by_their_author_only(make_node: MakeNode) -> None:
    node = await make_node()
    mutes = ExpiringMap().set("troll", node.clock.wall_ms() + 60_000, HlcTimestamp(node.clock.wall_ms(), 0, "mod"))
    node.state.merge(MUTES, mutes)
    author, other = Watch(node, viewer="troll"), Watch(node, viewer="ann")
    await author.next()
    await other.next()
    shadowed = (await node.post("troll", "buy now")).comment.comment_id
    cursed = (await node.post("bob", "well DARN it")).comment.comment_id
    plain = (await node.post("ann", "nice goal")).comment.comment_id
    node.tick()
    assert ids(await author.next()) == [shadowed, plain]
    assert ids(await other.next()) == [plain]
    assert [c.comment_id for c in (await node.history(viewer="ann")).comments] == [plain]
    assert [c.comment_id for c in (await node.history(viewer="bob")).comments] == [plain, cursed]
    stats = node.servicer.book.statistics()
    assert stats.filtered == 1 and stats.shadowed_muted == 1
    author.close()
    other.close()


async def test_deletes_and_pins_reach_watchers_and_history(make_node: MakeNode) -> None:
    node = await make_node()
    a = (await node.post("ann", "first")).comment.comment_id
    b = (await node.post("bob", "second")).comment.comment_id
    watch = Watch(node)
    await watch.next()
    await node.stub.PinComment(comments_pb2.PinCommentRequest(stream_id=STREAM, comment_id=b))
    await node.stub.DeleteComment(comments_pb2.DeleteCommentRequest(stream_id=STREAM, comment_id=a))
    node.tick()
    frame = await watch.next()
    assert list(frame.deleted_ids) == [a] and frame.pinned.comment_id == b and frame.pinned.comment.text == "second"
    page = await node.history()
    assert [c.comment_id for c in page.comments] == [b] and page.pinned.comment_id == b
    joiner = Watch(node)
    first = await joiner.next()
    assert ids(first) == [b] and first.pinned.comment_id == b
    await node.stub.PinComment(comments_pb2.PinCommentRequest(stream_id=STREAM))  # unpin
    node.tick()
    assert (await watch.next()).pinned.comment_id == ""
    await node.stub.PinComment(comments_pb2.PinCommentRequest(stream_id=STREAM, comment_id=b))
    node.tick()
    assert (await watch.next()).pinned.comment_id == b
    await node.stub.DeleteComment(comments_pb2.DeleteCommentRequest(stream_id=STREAM, comment_id=b))
    node.tick()
    frame = await watch.next()
    assert list(frame.deleted_ids) == [b] and frame.HasField("pinned") and frame.pinned.comment_id == ""
    assert (await node.history()).pinned.comment_id == ""  # deleting the pinned comment unpins it
    watch.close()
    joiner.close()


async def test_history_pages_with_a_cursor_and_survives_a_restart(make_node: MakeNode, tmp_path: Path) -> None:
    clock = FakeClock()
    node = await make_node(clock=clock)
    posted = [(await node.post("v", f"c{i}")).comment.comment_id for i in range(25)]
    pages, before = [], ""
    while True:
        page = await node.history(before=before, limit=10)
        pages.append([c.comment_id for c in page.comments])
        if not page.next_before:
            break
        before = page.next_before
    assert [cid for p in pages for cid in p] == posted[::-1] and [len(p) for p in pages] == [10, 10, 5]
    await node.stop()
    again = await make_node(clock=clock)
    assert [c.comment_id for c in (await again.history(limit=100)).comments] == posted[::-1]
    watch = Watch(again)
    assert ids(await watch.next()) == posted  # the hot window is back in memory for late joiners
    newer = (await again.post("v", "after restart")).comment.comment_id
    assert newer > posted[-1]
    watch.close()


async def test_hot_window_leaves_memory_but_history_keeps_it_until_retention(make_node: MakeNode) -> None:
    clock = FakeClock()
    config = CommentsConfig(post_rate_per_s=1000, post_burst=1000, hot_window_s=60, retention_days=1)
    node = await make_node(clock=clock, config=config)
    old = (await node.post("v", "old")).comment.comment_id
    await clock.advance(61)
    node.servicer.book.expire()
    assert node.servicer.book.comments.get(old) is None
    assert [c.comment_id for c in (await node.history()).comments] == [old]
    newer = [(await node.post("v", f"n{i}")).comment.comment_id for i in range(3)]
    assert all(node.servicer.book.comments.get(cid) for cid in newer)
    assert await node.servicer.book.prune() == 0  # nothing is older than the retention yet
    store = await CommentStore.open(node.db)  # type: ignore[arg-type]
    try:
        # Retention deletes by primary-key range, at most `batch` rows a pass, oldest first.
        assert await store.prune(floor_for(clock.wall_ms() + 1), batch=2) == 2
        assert [c.comment_id for c in (await node.history()).comments] == newer[::-1][:2]
    finally:
        await store.close()


async def test_bad_input_gets_its_status(make_node: MakeNode, tmp_path: Path) -> None:
    clock = FakeClock()
    keys = Keys(tmp_path, clock)
    config = CommentsConfig(post_rate_per_s=1, post_burst=2)
    node = await make_node(clock=clock, config=config, auth=AuthConfig(enabled=True, key_file=str(keys.secret_file)))
    ann = keys.bearer("ann")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert (await status_of(node.post("ann", "x" * 501, metadata=ann)))[0] == invalid
    assert (await status_of(node.post("ann", "   ", metadata=ann)))[0] == invalid
    assert (await status_of(node.post("ann", "hi", key="k" * 65, metadata=ann)))[0] == invalid
    bad_stream = comments_pb2.PostCommentRequest(stream_id="no spaces", viewer_id="ann", text="hi")
    assert (await status_of(node.stub.PostComment(bad_stream, metadata=ann)))[0] == invalid
    assert (
        await status_of(
            node.stub.GetComments(comments_pb2.GetCommentsRequest(stream_id=STREAM, limit=101), metadata=ann)
        )
    )[0] == invalid
    bad_cursor = comments_pb2.GetCommentsRequest(stream_id=STREAM, before="yesterday")
    assert (await status_of(node.stub.GetComments(bad_cursor, metadata=ann)))[0] == invalid
    assert (await status_of(node.post("ann", "hi")))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert (await status_of(node.post("bob", "hi", metadata=ann)))[0] == grpc.StatusCode.PERMISSION_DENIED
    forged = keys.bearer("ann", claims={"verified": "yes"})
    assert (await status_of(node.post("ann", "hi", metadata=forged)))[0] == grpc.StatusCode.UNAUTHENTICATED
    first = await node.post("ann", "one", metadata=ann)
    await node.post("ann", "two", metadata=ann)
    code, trailing = await status_of(node.post("ann", "three", metadata=ann))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and trailing["retry-after-ms"] == "1000"
    await clock.advance(1.0)
    assert (await node.post("ann", "three", metadata=ann)).comment.text == "three"  # the bucket refilled
    delete = comments_pb2.DeleteCommentRequest(stream_id=STREAM, comment_id=first.comment.comment_id)
    assert (await status_of(node.stub.DeleteComment(delete, metadata=ann)))[0] == grpc.StatusCode.PERMISSION_DENIED
    other_host = keys.bearer("hil", ["host"], ["semi"])
    assert (await status_of(node.stub.DeleteComment(delete, metadata=other_host)))[
        0
    ] == grpc.StatusCode.PERMISSION_DENIED
    await node.stub.DeleteComment(delete, metadata=keys.bearer("hal", ["host"], [STREAM]))
    pin = comments_pb2.PinCommentRequest(stream_id=STREAM, comment_id=first.comment.comment_id)
    assert (await status_of(node.stub.PinComment(pin, metadata=keys.bearer("mo", ["moderator"]))))[
        0
    ] == grpc.StatusCode.NOT_FOUND


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reactmesh")
    add_comments_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_comments_commands_post_history_pin_delete_and_watch(
    make_node: MakeNode, capsys: pytest.CaptureFixture[str]
) -> None:
    node = await make_node()
    at = ["--broadcaster", node.address]
    assert (
        await run_comments(cli(["comments", "post", STREAM, "what a goal", "--viewer", "ann", "--key", "1", *at])) == 0
    )
    first = capsys.readouterr().out.strip()
    assert (
        await run_comments(cli(["comments", "post", STREAM, "what a goal", "--viewer", "ann", "--key", "1", *at])) == 0
    )
    assert capsys.readouterr().out.strip() == first  # the resend answers the first id
    assert (
        await run_comments(cli(["comments", "post", STREAM, "agreed", "--viewer", "bob", "--reply-to", first, *at]))
        == 0
    )
    second = capsys.readouterr().out.strip()
    assert await run_comments(cli(["comments", "like", STREAM, first, "--viewer", "cy", *at])) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert await run_comments(cli(["comments", "pin", STREAM, first, *at])) == 0
    assert await run_comments(cli(["comments", "delete", STREAM, second, *at])) == 0
    capsys.readouterr()
    assert await run_comments(cli(["comments", "history", STREAM, "--json", *at])) == 0
    page = json.loads(capsys.readouterr().out)
    assert [c["comment_id"] for c in page["comments"]] == [first] and page["pinned"] == first
    assert await run_comments(cli(["comments", "watch", STREAM, "--duration", "0.5", *at])) == 0
    out = capsys.readouterr().out
    assert f"[{first}] ann [1 likes]: what a goal" in out and "* pinned" in out
    assert await run_comments(cli(["comments", "post", STREAM, "x" * 501, "--viewer", "ann", *at])) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


async def test_metrics_count_posts_filters_sampling_priority_and_delivery_lag(make_node: MakeNode) -> None:
    from prometheus_client import CollectorRegistry

    from reactmesh.region_node.metrics.comments import CommentsCollector

    config = CommentsConfig(post_rate_per_s=1000, post_burst=20, sample_rate_per_s=5, blocklist=("darn",))
    node = await make_node(config=config)
    registry = CollectorRegistry()
    registry.register(CommentsCollector("a", node.servicer.book))
    watch = Watch(node)
    await watch.next()
    for i in range(12):
        await node.post("ann", "darn" if i == 0 else f"c{i}", key=f"k{i}")
    await node.post("ann", "c1", key="k1")  # a resend
    await node.clock.advance(0.05)  # a lag of 50 ms for every comment
    node.tick()
    frame = await watch.next()
    assert len(frame.comments) == 5 and frame.sampled_out == 6  # the shadowed one is its author's only

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"region": "a", **labels})

    assert value("reactmesh_comments_ingest_total", outcome="posted") == 12
    assert value("reactmesh_comments_ingest_total", outcome="duplicate") == 1
    assert value("reactmesh_comments_ingest_total", outcome="filtered") == 1
    assert value("reactmesh_comments_delivery_total", kind="sampled_out") == 6
    assert value("reactmesh_comments_delivery_total", kind="delivered") == 5
    assert value("reactmesh_comments_watchers") == 1
    assert value("reactmesh_comments_delivery_lag_seconds_count") == 6
    assert value("reactmesh_comments_delivery_lag_seconds_bucket", le="0.025") == 0
    assert value("reactmesh_comments_delivery_lag_seconds_bucket", le="0.05") == 6
    watch.close()


async def test_a_burst_past_max_hot_shortens_the_hot_window_instead_of_growing_memory(make_node: MakeNode) -> None:
    config = CommentsConfig(post_rate_per_s=10_000, post_burst=10_000, max_hot=1_000)
    node = await make_node(config=config)
    posted = [(await node.post(f"v{i % 9}", f"c{i}")).comment.comment_id for i in range(1_200)]
    node.servicer.book.expire()
    held = node.servicer.book.comments
    assert len(held) == 1_000 and held.get(posted[199]) is None and held.get(posted[200]) is not None
    assert len((await node.history(limit=100, before=posted[150])).comments) == 100  # the file still has them


async def test_a_comment_sampled_out_reaches_every_watcher_once_it_is_highly_liked(make_node: MakeNode) -> None:
    config = CommentsConfig(post_rate_per_s=1000, post_burst=1000, sample_rate_per_s=5, priority_likes=3)
    node = await make_node(config=config)
    watch = Watch(node)
    await watch.next()
    posted = [(await node.post(f"v{i % 9}", f"c{i}")).comment.comment_id for i in range(40)]
    node.tick()
    shown = ids(await watch.next())
    hidden = next(cid for cid in posted if cid not in shown)
    like = comments_pb2.LikeCommentRequest(stream_id=STREAM, comment_id=hidden)
    counts = []
    for viewer in ("ann", "bob", "bob", "cy"):  # bob's second like counts once
        like.viewer_id = viewer
        counts.append((await node.stub.LikeComment(like)).likes)
    assert counts == [1, 2, 2, 3]
    node.tick()
    frame = await watch.next()
    assert ids(frame) == [hidden] and frame.comments[0].likes == 3  # the priority lane, despite the sample rate
    unknown = comments_pb2.LikeCommentRequest(stream_id=STREAM, comment_id=cid_of_nothing(), viewer_id="ann")
    assert (await status_of(node.stub.LikeComment(unknown)))[0] == grpc.StatusCode.NOT_FOUND
    assert node.servicer.book.statistics().likes == 4  # like calls answered
    watch.close()


def cid_of_nothing() -> str:
    return "0000000000001.0000000000.nowhere"


async def test_a_resend_taken_by_another_region_first_retracts_the_copy_watchers_got_here(make_node: MakeNode) -> None:
    node = await make_node()
    watch = Watch(node)
    await watch.next()
    ours = (await node.post("ann", "hi", key="k-9")).comment.comment_id
    node.tick()
    assert ids(await watch.next()) == [ours]
    earlier = Comment("0000000000005.0000000000.b/bcast-0", STREAM, "ann", "hi", client_key="k-9")
    node.state.merge(COMMENTS, CommentSet().add(earlier))  # as gossip brings region b's copy
    node.tick()
    frame = await watch.next()
    assert ids(frame) == [earlier.comment_id] and list(frame.deleted_ids) == [ours]
    assert [c.comment_id for c in (await node.history()).comments] == [earlier.comment_id]
    watch.close()


async def test_a_comment_older_than_the_hot_window_is_deleted_from_history_watchers_and_after_a_restart(
    make_node: MakeNode,
) -> None:
    clock = FakeClock()
    config = CommentsConfig(post_rate_per_s=1000, post_burst=1000, hot_window_s=60, late_delete_window_s=3600)
    node = await make_node(clock=clock, config=config)
    old = (await node.post("v", "reported late")).comment.comment_id
    kept = (await node.post("v", "fine")).comment.comment_id
    await clock.advance(61)
    node.servicer.book.expire()
    assert node.servicer.book.comments.get(old) is None  # out of memory, only in the file
    watch = Watch(node)
    await watch.next()  # the late joiner's snapshot
    other = comments_pb2.DeleteCommentRequest(stream_id="semi", comment_id=old)
    assert (await status_of(node.stub.DeleteComment(other)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    await node.stub.DeleteComment(comments_pb2.DeleteCommentRequest(stream_id=STREAM, comment_id=old))
    assert [c.comment_id for c in (await node.history()).comments] == [kept]
    node.tick()
    assert list((await watch.next()).deleted_ids) == [old]
    watch.close()
    stats = node.servicer.book.statistics()
    assert (stats.late_deletes, stats.late_held) == (1, 1)
    await node.stop()
    again = await make_node(clock=clock, config=config)  # the late delete is read back to be passed on
    assert again.servicer.book.statistics().late_held == 1
    assert [c.comment_id for c in (await again.history()).comments] == [kept]
    await clock.advance(3601)
    again.servicer.book.expire()
    assert again.servicer.book.statistics().late_held == 0  # memory holds a day of late deletes, not more
    assert [c.comment_id for c in (await again.history()).comments] == [kept]  # the tombstone row stays


async def test_a_version_1_comment_file_is_migrated_and_keeps_its_comments(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    store = await CommentStore.open(path)
    c = Comment("0000000001000.0000000000.a/bcast-0", STREAM, "v", "hello", "", "", priority=False, shadow=False)
    await store.save(CommentSet().add(c))
    await store.close()
    with sqlite3.connect(path) as conn:  # what a version 1 file is: no late_deletes table
        conn.execute("DROP TABLE late_deletes")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = await CommentStore.open(path)
    try:
        assert [x.comment_id for x in await store.page(STREAM, "", 10, "")] == [c.comment_id]
        late = ExpiringMap().set(c.comment_id, 5_000, HlcTimestamp(2_000, 0, "b/bcast-0"), STREAM, "mo")
        await store.save(CommentSet(), late)
        assert await store.page(STREAM, "", 10, "") == []
        assert (await store.load_late(0)).get(c.comment_id) == late.get(c.comment_id)
        assert await store.prune(floor_for(0), 10, now_ms=5_001) == 1  # the late delete's time is over
    finally:
        await store.close()
