"""Live comments across three regions of real processes (``ProcessMesh``, auth on, real SQLite files, gossip over
gRPC on loopback).

Proves: every accepted comment is stored exactly once in every region and history pages are identical everywhere
(resends to another region included: one copy is shown everywhere); watchers in every region see every comment
with no unflagged gap; a resume in another region after the last seen id gets exactly the rest; a delete taken
in one region and a pin taken in another reach the watchers of every region and every history; a region SIGKILLed
and restarted while the others take comments comes back with identical pages; a burst on one stream far above
the sample rate reaches every watcher in every region with the priority lane whole and the rest sampled; a
comment already out of every region's memory (a 1 s hot window) deleted in one region leaves every history and
reaches another region's watcher. How long
the delete took to reach the last watcher is printed (the issue asks for < 2 s), not asserted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from reactmesh.edge.tokens import Minter, Role, bearer
from reactmesh.region_node.devmesh import ProcessMesh, free_port_block
from reactmesh.v1 import comments_pb2, comments_pb2_grpc
from tests.support.metered import scrape, value
from tests.support.polling import eventually, settled

STREAM = "final"
REGIONS = ("a", "b", "c")
PER_REGION = 40
OVERRIDES = {"broadcaster": {"comments": {"post_rate_per_s": 1000, "post_burst": 1000, "sample_rate_per_s": 20}}}
HOT = "hot"


class Watcher:
    """A WatchComments call read in the background: every comment id, deletes, pins and gap flags it saw."""

    def __init__(
        self, stub: comments_pb2_grpc.CommentsServiceStub, metadata: tuple[tuple[str, str], ...], stream: str = STREAM
    ) -> None:
        self.ids: list[str] = []
        self.priority: set[str] = set()
        self.sampled_out = 0
        self.deleted: dict[str, float] = {}
        self.pinned = ""
        self.gaps = 0
        self.call = stub.WatchComments(comments_pb2.WatchCommentsRequest(stream_id=stream), metadata=metadata)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.call:
            f = msg.frame
            self.ids.extend(c.comment_id for c in f.comments)
            self.priority.update(c.comment_id for c in f.comments if c.priority)
            self.sampled_out += f.sampled_out
            for cid in f.deleted_ids:
                self.deleted.setdefault(cid, time.monotonic())
            if f.HasField("pinned"):
                self.pinned = f.pinned.comment_id
            self.gaps += f.gap

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await self.task


async def all_pages(stub: comments_pb2_grpc.CommentsServiceStub, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    out, before = [], ""
    while True:
        page = await stub.GetComments(
            comments_pb2.GetCommentsRequest(stream_id=STREAM, before=before, limit=100), metadata=metadata, timeout=5
        )
        out.extend(c.comment_id for c in page.comments)
        if not page.next_before:
            return out
        before = page.next_before


Stubs = dict[str, comments_pb2_grpc.CommentsServiceStub]


@contextlib.asynccontextmanager
async def three_regions(tmp_path: Path, overrides: dict[str, Any]) -> AsyncIterator[tuple[ProcessMesh, Minter, Stubs]]:
    """Three regions of real processes with auth on, a token minter, and a CommentsService stub per region."""
    async with ProcessMesh(
        regions=REGIONS, base_port=free_port_block(30), data_dir=tmp_path, auth=True, overrides=overrides
    ) as mesh:
        assert mesh.auth_key is not None
        channels = {r: grpc.aio.insecure_channel(mesh.plans[r].broadcaster) for r in REGIONS}
        try:
            stubs = {r: comments_pb2_grpc.CommentsServiceStub(c) for r, c in channels.items()}
            yield mesh, Minter(mesh.auth_key), stubs
        finally:
            for c in channels.values():
                await c.close()


async def test_comments_converge_in_three_regions_of_real_processes(tmp_path: Path) -> None:
    async with three_regions(tmp_path, OVERRIDES) as (mesh, minter, stubs):
        reader = bearer(minter.mint("reader"))
        watchers = {r: Watcher(stubs[r], bearer(minter.mint(f"watch-{r}"))) for r in REGIONS}
        try:
            accepted: set[str] = set()
            for i in range(PER_REGION):
                for r in REGIONS:
                    viewer = f"v{i % 5}-{r}"
                    req = comments_pb2.PostCommentRequest(
                        stream_id=STREAM, viewer_id=viewer, text=f"{r} says {i}", client_key=f"k{i}"
                    )
                    # Host tokens: every comment takes the priority lane, so watchers get them all at 20/s sampling.
                    meta = bearer(minter.mint(viewer, roles=(Role.HOST,)))
                    answer = await stubs[r].PostComment(req, metadata=meta, timeout=5)
                    accepted.add(answer.comment.comment_id)
                    if i % 10 == 0:  # the client's retry lands in the next region
                        retry = await stubs[REGIONS[(REGIONS.index(r) + 1) % 3]].PostComment(
                            req, metadata=meta, timeout=5
                        )
                        if not retry.duplicate:
                            accepted.add(retry.comment.comment_id)

            async def converged() -> list[str]:
                pages = {r: await all_pages(stubs[r], reader) for r in REGIONS}
                assert pages["a"] == pages["b"] == pages["c"]
                assert len(pages["a"]) == PER_REGION * 3 == len(set(pages["a"]))
                return pages["a"]

            history = await settled(converged, within=30)
            assert set(history) <= accepted and history == sorted(history, reverse=True)
            await eventually(lambda: all(set(w.ids) >= set(history) for w in watchers.values()), within=30)
            for w in watchers.values():
                assert w.gaps == 0
                assert len(w.ids) == len(set(w.ids))

            # A resume in region c after a comment region a's watcher saw midway gets exactly the rest.
            shown = set(history)  # a resend's second copy is shown where it was taken until the first arrives
            seen_a = [cid for cid in watchers["a"].ids if cid in shown]
            mark = seen_a[len(seen_a) // 2]
            resume = stubs["c"].WatchComments(
                comments_pb2.WatchCommentsRequest(stream_id=STREAM, after_id=mark), metadata=reader
            )
            first = (await asyncio.wait_for(resume.read(), 10)).frame
            resume.cancel()
            assert not first.gap
            seen_c = [cid for cid in watchers["c"].ids if cid in shown]
            assert [c.comment_id for c in first.comments] == seen_c[seen_c.index(mark) + 1 :]

            # A delete from region a's moderator, a pin from region b's host.
            victim, star = history[3], history[7]
            mod = bearer(minter.mint("mod", roles=(Role.MODERATOR,)))
            host = bearer(minter.mint("hal", roles=(Role.HOST,), streams=(STREAM,)))
            started = time.monotonic()
            await stubs["a"].DeleteComment(
                comments_pb2.DeleteCommentRequest(stream_id=STREAM, comment_id=victim), metadata=mod, timeout=5
            )
            await stubs["b"].PinComment(
                comments_pb2.PinCommentRequest(stream_id=STREAM, comment_id=star), metadata=host, timeout=5
            )
            await eventually(lambda: all(victim in w.deleted for w in watchers.values()), within=20)
            took = max(w.deleted[victim] for w in watchers.values()) - started
            print(f"delete from region a reached the watchers of every region after {took:.3f} s")
            await eventually(lambda: all(w.pinned == star for w in watchers.values()), within=20)

            async def moderated() -> None:
                for r in REGIONS:
                    page = await stubs[r].GetComments(
                        comments_pb2.GetCommentsRequest(stream_id=STREAM, limit=100), metadata=reader, timeout=5
                    )
                    assert victim not in [c.comment_id for c in page.comments] and page.pinned.comment_id == star

            await settled(moderated, within=20)

            # Region b's process is SIGKILLed (its acknowledged comments are in its file), the others keep taking
            # comments, b restarts from its file and catches up by gossip: pages identical everywhere again.
            before_kill = await all_pages(stubs["b"], reader)
            mesh.kill("b", "main")
            await mesh.wait("b", "main")
            for i in range(10):
                for r in ("a", "c"):
                    req = comments_pb2.PostCommentRequest(stream_id=STREAM, viewer_id=f"late-{r}", text=f"late {i}")
                    await stubs[r].PostComment(req, metadata=bearer(minter.mint(f"late-{r}")), timeout=5)
            await mesh.start("b", "main")
            await mesh.wait_ready()

            async def caught_up() -> list[str]:
                pages = {r: await all_pages(stubs[r], reader) for r in REGIONS}
                assert pages["a"] == pages["b"] == pages["c"]
                assert len(pages["a"]) == len(before_kill) + 20 and set(before_kill) <= set(pages["a"])
                return pages["a"]

            await settled(caught_up, within=30)

            # A burst on another stream, posted in every region, far above the 20/s each viewer is sent: every
            # watcher in every region gets every priority comment, and the rest is sampled.
            hot = {r: Watcher(stubs[r], reader, stream=HOT) for r in REGIONS}
            watchers.update({f"hot-{r}": w for r, w in hot.items()})
            host_ids: set[str] = set()
            for i in range(300):
                r = REGIONS[i % 3]
                viewer = f"fan{i % 30}"
                roles = (Role.HOST,) if i % 30 == 0 else (Role.VIEWER,)
                req = comments_pb2.PostCommentRequest(stream_id=HOT, viewer_id=viewer, text=f"burst {i}")
                answer = await stubs[r].PostComment(req, metadata=bearer(minter.mint(viewer, roles=roles)), timeout=5)
                if answer.comment.priority:
                    host_ids.add(answer.comment.comment_id)
            assert len(host_ids) == 10
            await eventually(lambda: all(w.priority >= host_ids for w in hot.values()), within=30)
            for w in hot.values():
                assert w.gaps == 0 and w.sampled_out > 0 and len(w.ids) < 300
        finally:
            for w in watchers.values():
                await w.close()


async def test_a_comment_out_of_every_regions_memory_is_deleted_in_every_history(tmp_path: Path) -> None:
    short = {"broadcaster": {"comments": {**OVERRIDES["broadcaster"]["comments"], "hot_window_s": 1}}}
    async with three_regions(tmp_path, short) as (mesh, minter, stubs):
        reader = bearer(minter.mint("reader"))
        posted = []
        for text in ("reported late", "fine"):
            req = comments_pb2.PostCommentRequest(stream_id=STREAM, viewer_id="ann", text=text)
            answer = await stubs["a"].PostComment(req, metadata=bearer(minter.mint("ann")), timeout=5)
            posted.append(answer.comment.comment_id)
        victim, kept = posted

        async def everywhere(expected: list[str]) -> None:
            for r in REGIONS:
                assert await all_pages(stubs[r], reader) == expected

        await settled(lambda: everywhere([kept, victim]), within=30)
        metrics = {r: f"127.0.0.1:{int(mesh.plans[r].edge.rsplit(':', 1)[1]) + 5}" for r in REGIONS}

        async def out_of_memory() -> None:  # the hot window (1 s) has passed everywhere
            for r in REGIONS:
                assert value(await scrape(metrics[r]), "reactmesh_comments_held") == 0

        await settled(out_of_memory, within=30)
        watcher = Watcher(stubs["c"], bearer(minter.mint("watch-c")))
        mod = bearer(minter.mint("mod", roles=(Role.MODERATOR,)))
        await stubs["b"].DeleteComment(
            comments_pb2.DeleteCommentRequest(stream_id=STREAM, comment_id=victim), metadata=mod, timeout=5
        )
        await settled(lambda: everywhere([kept]), within=30)
        await eventually(lambda: victim in watcher.deleted, within=30)
        await watcher.close()
        for r in REGIONS:
            assert value(await scrape(metrics[r]), "reactmesh_comments_late_deletes_held") == 1
