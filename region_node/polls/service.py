"""The ``reactmesh.v1.Polls`` servicer over a PollBook, and ``attach_polls``, which builds a node's polls.

Every call is checked by the node's ``edge.auth.Authorizer`` before the book sees it: CreatePoll and ClosePoll are
MANAGE_POLL on the poll's stream (a host naming it, or a moderator), Vote is VOTE as the request's viewer_id,
GetPoll is READ_POLL. Every refusal is the Authorizer's or the PollBook's ServiceError status.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from reactmesh.edge.auth import Action, Authorizer
from reactmesh.edge.errors import ServiceError, abort_with
from reactmesh.merge.clock import Clock
from reactmesh.merge.hlc import HybridLogicalClock
from reactmesh.merge.polls import PollSet
from reactmesh.region_node.polls.book import PollBook, StreamDirectory, to_proto
from reactmesh.region_node.polls.config import PollsConfig
from reactmesh.region_node.polls.store import PollStore
from reactmesh.region_node.state import POLLS, RegionState
from reactmesh.v1 import polls_pb2, polls_pb2_grpc

log = logging.getLogger(__name__)


class PollsServicer(polls_pb2_grpc.PollsServicer):
    """Serves ``reactmesh.v1.Polls`` from one PollBook."""

    SERVICE_NAME = "reactmesh.v1.Polls"

    def __init__(self, book: PollBook, clock: Clock, authorizer: Authorizer | None = None) -> None:
        self.book = book
        self._auth = authorizer or Authorizer.disabled(clock)

    async def CreatePoll(
        self, request: polls_pb2.CreatePollRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> polls_pb2.Poll:
        try:
            self._auth.check(context.invocation_metadata(), Action.MANAGE_POLL, stream_id=request.stream_id)
            value = await self.book.create(
                request.stream_id, request.question, list(request.options), request.closes_at_ms
            )
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return to_proto(value)

    async def Vote(
        self, request: polls_pb2.VoteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> polls_pb2.VoteResponse:
        try:
            self._auth.check(context.invocation_metadata(), Action.VOTE, viewer_id=request.viewer_id)
            value, _ = await self.book.vote(request.poll_id, request.viewer_id, request.option)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return polls_pb2.VoteResponse(poll=to_proto(value))

    async def ClosePoll(
        self, request: polls_pb2.ClosePollRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> polls_pb2.Poll:
        try:
            principal = self._auth.authenticate(context.invocation_metadata())
            if principal is not None:
                self._auth.authorize(principal, Action.MANAGE_POLL, stream_id=self.book.stream_of(request.poll_id))
            value = await self.book.close(request.poll_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return to_proto(value)

    async def GetPoll(
        self, request: polls_pb2.GetPollRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> polls_pb2.Poll:
        try:
            self._auth.check(context.invocation_metadata(), Action.READ_POLL)
            value = self.book.get(request.poll_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return to_proto(value)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        polls_pb2_grpc.add_PollsServicer_to_server(self, server)

    async def close(self) -> None:
        """Flush and close the node's polls (call before the broadcaster closes)."""
        await self.book.stop()


async def attach_polls(
    state: RegionState,
    broadcaster: StreamDirectory | None,
    clock: Clock,
    node_id: str,
    db_path: str | None,
    config: PollsConfig | None = None,
    authorizer: Authorizer | None = None,
) -> PollsServicer:
    """Load the node's polls from ``db_path`` into ``state``, wire them to ``broadcaster`` and start them.

    ``state`` must have been built with ``RegionState(extra={POLLS: PollSet()})``; ``db_path``
    None keeps polls in memory only (they then survive a restart only through peers). The HLC of
    the node (replica ``node_id``) starts after the greatest stamp loaded.
    """
    config = config or PollsConfig()
    polls = state.collections.get(POLLS)
    if not isinstance(polls, PollSet):
        raise TypeError(f'the RegionState needs extra={{"{POLLS}": PollSet()}}, has {type(polls).__name__}')
    store = await PollStore.open(db_path, synchronous=config.synchronous) if db_path is not None else None
    try:
        was_empty = not len(polls)
        if store is not None:
            state.merge(POLLS, await store.load(polls.history_limit))
        latest = polls.latest_stamp
        after = latest if latest is not None and latest.wall_ms - clock.wall_ms() <= config.max_drift_ms else None
        if latest is not None and after is None:
            log.warning("%s: stored poll stamp %s is too far ahead of this clock to start the HLC", db_path, latest)
        hlc = HybridLogicalClock(node_id, clock, config.max_drift_ms, after=after)
        book = PollBook(
            state,
            hlc,
            clock,
            streams=broadcaster,
            store=store,
            config=config,
            saved_version=polls.version if was_empty else 0,
        )
    except BaseException:
        if store is not None:
            await store.close()
        raise
    book.start()
    return PollsServicer(book, clock, authorizer)
