"""The ``reactmesh.v1.CommentsService`` servicer over a CommentBook, and ``attach_comments``, which builds a node's.

Every call is checked by the node's ``edge.auth.Authorizer`` before the book sees it: PostComment is COMMENT as
the request's viewer_id, LikeComment too, WatchComments SUBSCRIBE, GetComments QUERY, PinComment and DeleteComment
MANAGE_COMMENTS on the request's stream (a host naming it, or a moderator). Every refusal is the Authorizer's
or the CommentBook's ServiceError status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from reactmesh.edge.auth import Action, Authorizer
from reactmesh.edge.errors import ServiceError, abort_with
from reactmesh.merge.clock import Clock
from reactmesh.merge.comments import CommentSet, floor_for
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.hlc import HybridLogicalClock
from reactmesh.merge.replica import ReplicaState
from reactmesh.region_node.broadcaster.core import check_stream_id
from reactmesh.region_node.comments.book import CommentBook
from reactmesh.region_node.comments.config import CommentsConfig
from reactmesh.region_node.comments.hub import to_proto
from reactmesh.region_node.comments.store import CommentStore
from reactmesh.region_node.state import COMMENTS, LATE_DELETES
from reactmesh.v1 import comments_pb2, comments_pb2_grpc

log = logging.getLogger(__name__)


class CommentsServicer(comments_pb2_grpc.CommentsServiceServicer):
    """Serves ``reactmesh.v1.CommentsService`` from one CommentBook."""

    SERVICE_NAME = "reactmesh.v1.CommentsService"

    def __init__(self, book: CommentBook, clock: Clock, authorizer: Authorizer | None = None) -> None:
        self.book = book
        self._auth = authorizer or Authorizer.disabled(clock)

    def _pinned(self, stream_id: str) -> comments_pb2.Pinned | None:
        cs = self.book.comments
        pin = cs.pin(stream_id)
        if pin is None:
            return None
        out = comments_pb2.Pinned()
        if pin.comment_id and not cs.deleted(pin.comment_id):  # a deleted pinned comment is no longer pinned
            out.comment_id = pin.comment_id
            c = cs.get(pin.comment_id)
            if c is not None and cs.visible(pin.comment_id):
                out.comment.CopyFrom(to_proto(c, cs.likes(c.comment_id)))
        return out

    async def PostComment(
        self, request: comments_pb2.PostCommentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> comments_pb2.PostCommentResponse:
        try:
            principal = self._auth.check(context.invocation_metadata(), Action.COMMENT, viewer_id=request.viewer_id)
            c, dup = await self.book.post(
                request.stream_id, request.viewer_id, request.text, request.reply_to, request.client_key, principal
            )
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return comments_pb2.PostCommentResponse(
            comment=to_proto(c, self.book.comments.likes(c.comment_id)), duplicate=dup
        )

    async def WatchComments(
        self, request: comments_pb2.WatchCommentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[comments_pb2.WatchCommentsResponse]:
        try:
            self._auth.check(context.invocation_metadata(), Action.SUBSCRIBE)
            check_stream_id(request.stream_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        watcher = self.book.hub.watch(request.stream_id, request.viewer_id, request.after_id)
        try:
            while True:
                frame = await watcher.queue.get()
                yield comments_pb2.WatchCommentsResponse(frame=frame)
        except asyncio.CancelledError:
            raise
        finally:
            self.book.hub.unwatch(watcher)

    async def GetComments(
        self, request: comments_pb2.GetCommentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> comments_pb2.GetCommentsResponse:
        try:
            self._auth.check(context.invocation_metadata(), Action.QUERY)
            page = await self.book.page(request.stream_id, request.before, request.limit, request.viewer_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        limit = request.limit or 50
        cs = self.book.comments
        out = comments_pb2.GetCommentsResponse(comments=[to_proto(c, cs.likes(c.comment_id)) for c in page])
        if len(page) == limit:
            out.next_before = page[-1].comment_id
        pinned = self._pinned(request.stream_id)
        if pinned is not None:
            out.pinned.CopyFrom(pinned)
        return out

    async def PinComment(
        self, request: comments_pb2.PinCommentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> comments_pb2.PinCommentResponse:
        try:
            self._auth.check(context.invocation_metadata(), Action.MANAGE_COMMENTS, stream_id=request.stream_id)
            await self.book.pin(request.stream_id, request.comment_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        pinned = self._pinned(request.stream_id)
        return comments_pb2.PinCommentResponse(pinned=pinned)

    async def LikeComment(
        self, request: comments_pb2.LikeCommentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> comments_pb2.LikeCommentResponse:
        try:
            self._auth.check(context.invocation_metadata(), Action.COMMENT, viewer_id=request.viewer_id)
            likes = await self.book.like(request.stream_id, request.comment_id, request.viewer_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return comments_pb2.LikeCommentResponse(likes=likes)

    async def DeleteComment(
        self, request: comments_pb2.DeleteCommentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> comments_pb2.DeleteCommentResponse:
        try:
            who = self._auth.check(context.invocation_metadata(), Action.MANAGE_COMMENTS, stream_id=request.stream_id)
            actor = who.subject if who is not None else ""
            await self.book.delete(request.stream_id, request.comment_id, actor)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return comments_pb2.DeleteCommentResponse()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        comments_pb2_grpc.add_CommentsServiceServicer_to_server(self, server)

    async def close(self) -> None:
        """Flush and close the node's comments."""
        await self.book.stop()


async def attach_comments(
    state: ReplicaState,
    clock: Clock,
    node_id: str,
    db_path: str | None,
    config: CommentsConfig | None = None,
    authorizer: Authorizer | None = None,
) -> CommentsServicer:
    """Load the hot window of the node's comments from ``db_path`` into ``state`` and start them.

    ``state`` must hold a CommentSet under ``"comments"``; ``db_path`` None keeps comments in memory only.
    """
    config = config or CommentsConfig()
    comments = state.collections.get(COMMENTS)
    late = state.collections.get(LATE_DELETES)
    if not isinstance(comments, CommentSet) or not isinstance(late, ExpiringMap):
        raise TypeError("the ReplicaState needs extra=region_node.state.comment_collections()")
    store = await CommentStore.open(db_path, synchronous=config.synchronous) if db_path is not None else None
    try:
        was_empty = not len(comments) and not len(late)
        if store is not None:
            floor = floor_for(clock.wall_ms() - config.hot_window_s * 1000)
            state.merge(COMMENTS, await store.load(floor))
            state.merge(LATE_DELETES, await store.load_late(clock.wall_ms() - config.late_delete_window_s * 1000))
        latest = comments.latest_stamp()
        after = latest if latest is not None and latest.wall_ms - clock.wall_ms() <= config.max_drift_ms else None
        hlc = HybridLogicalClock(node_id, clock, config.max_drift_ms, after=after)
        book = CommentBook(
            state,
            hlc,
            clock,
            store=store,
            config=config,
            saved_version=comments.version if was_empty else 0,
            saved_late_version=late.version if was_empty else 0,
        )
    except BaseException:
        if store is not None:
            await store.close()
        raise
    book.start()
    return CommentsServicer(book, clock, authorizer)
