"""The ``reactmesh.v1.Admin`` servicer over a ModerationBook.

Every call is MODERATE (``edge.auth``): with auth enabled a moderator token, UNAUTHENTICATED without a valid token
and PERMISSION_DENIED for a viewer or host. The token's subject is recorded as the action's actor. Every refusal
is the Authorizer's or the ModerationBook's ServiceError status.
"""

from __future__ import annotations

from typing import Any

import grpc

from reactmesh.edge.auth import Action, Authorizer
from reactmesh.edge.errors import ServiceError, abort_with
from reactmesh.merge.clock import Clock
from reactmesh.region_node.moderation.book import ModerationBook
from reactmesh.v1 import admin_pb2, admin_pb2_grpc


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """Serves ``reactmesh.v1.Admin`` from one ModerationBook."""

    SERVICE_NAME = "reactmesh.v1.Admin"

    def __init__(self, book: ModerationBook, clock: Clock, authorizer: Authorizer | None = None) -> None:
        self.book = book
        self._auth = authorizer or Authorizer.disabled(clock)

    def _actor(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        principal = self._auth.check(context.invocation_metadata(), Action.MODERATE)
        return principal.subject if principal is not None else ""

    async def MuteViewer(
        self, request: admin_pb2.MuteViewerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.MuteViewerResponse:
        try:
            actor = self._actor(context)
            until = await self.book.mute(request.viewer_id, request.duration_s, request.reason, actor)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return admin_pb2.MuteViewerResponse(until_ms=until)

    async def UnmuteViewer(
        self, request: admin_pb2.UnmuteViewerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.UnmuteViewerResponse:
        try:
            await self.book.unmute(request.viewer_id, self._actor(context))
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return admin_pb2.UnmuteViewerResponse()

    async def DrainStream(
        self, request: admin_pb2.DrainStreamRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.DrainStreamResponse:
        try:
            actor = self._actor(context)
            at = await self.book.drain(request.stream_id, request.duration_s, actor)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return admin_pb2.DrainStreamResponse(drained_at_ms=at)

    async def ListMuted(
        self, request: admin_pb2.ListMutedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListMutedResponse:
        try:
            self._actor(context)
            muted = self.book.muted(request.limit)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return admin_pb2.ListMutedResponse(
            viewers=[
                admin_pb2.MutedViewer(
                    viewer_id=viewer_id,
                    until_ms=r.until_ms,
                    reason=r.note,
                    muted_by=r.actor,
                    muted_at_ms=r.stamp.wall_ms,
                )
                for viewer_id, r in muted
            ]
        )

    async def ListFlagged(
        self, request: admin_pb2.ListFlaggedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListFlaggedResponse:
        try:
            self._actor(context)
            flagged = self.book.flagged(request.limit)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return admin_pb2.ListFlaggedResponse(
            viewers=[
                admin_pb2.FlaggedViewer(
                    viewer_id=f.viewer_id,
                    kind=f.kind,
                    detail=f.detail,
                    raised_at_ms=f.raised_at_ms,
                    until_ms=f.until_ms,
                    raised_by=f.raised_by,
                )
                for f in flagged
            ]
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        admin_pb2_grpc.add_AdminServicer_to_server(self, server)

    async def close(self) -> None:
        """Write what is left and close the moderation file."""
        await self.book.stop()
