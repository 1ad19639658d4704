"""gRPC wiring of the gossip protocol: the Gossip servicer, and dialers that keep a session open
to every configured peer, reconnecting with capped exponential backoff and full jitter.

Inside a region each broadcaster dials every aggregator and receives their committed deltas;
between regions broadcasters dial each other (see docs/ARCHITECTURE.md, "Topology").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import grpc

from reactmesh.edge.backoff import backoff_delay
from reactmesh.edge.errors import ServiceError, abort_with, failed_precondition, invalid_argument
from reactmesh.edge.limits import STREAM_ID_FORM, is_stream_id
from reactmesh.merge.clock import Clock
from reactmesh.merge.gossip import GossipNode, ProtocolError, SelfSession
from reactmesh.region_node.tls import ClientTLS
from reactmesh.region_node.windows.digests import MAX_PAGE, MAX_ROWS, DigestPage, HistoryReader
from reactmesh.v1 import gossip_pb2, gossip_pb2_grpc

log = logging.getLogger(__name__)


class GossipServicer(gossip_pb2_grpc.GossipServicer):
    """Serves Gossip.Exchange for one GossipNode, and the history digests and rows of the node's store when it
    has one (``history``; else those calls answer FAILED_PRECONDITION)."""

    SERVICE_NAME = "reactmesh.v1.Gossip"

    def __init__(self, node: GossipNode, history: HistoryReader | None = None) -> None:
        self.node = node
        self.history = history

    # The session reads and writes through the context (GossipNode drives both directions), which grpc.aio
    # allows for a handler that returns None instead of yielding.
    async def Exchange(  # type: ignore[override]
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        try:
            await self.node.run_session(_ServerTransport(context), dialer=False)
        except SelfSession as exc:
            await abort_with(context, failed_precondition(str(exc)))
        except ProtocolError as exc:
            await abort_with(context, invalid_argument(str(exc)))

    async def HistoryDigests(
        self, request: gossip_pb2.HistoryDigestsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gossip_pb2.HistoryDigestsResponse:
        try:
            reader = self._reader()
            if request.limit > MAX_PAGE:
                raise invalid_argument(f"limit must be at most {MAX_PAGE} buckets, got {request.limit}")
            scope = request.WhichOneof("scope")
            if scope == "range":
                r = request.range
                if r.minute_lo < 0 or r.minute_hi < r.minute_lo:
                    raise invalid_argument(
                        f"range must be 0 <= minute_lo <= minute_hi, got [{r.minute_lo}, {r.minute_hi})"
                    )
                after = (r.after.minute, r.after.stream_id) if r.HasField("after") else None
                page = await reader.range_page(r.minute_lo, r.minute_hi, after, request.limit)
            elif scope == "changes":
                page = await reader.changes_page(request.changes.after, request.limit)
            elif scope == "totals":
                page = await reader.totals_page(request.totals.after_stream or None, request.limit)
            else:
                raise invalid_argument("set range, changes or totals")
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return _digest_page(page)

    async def HistoryRows(
        self, request: gossip_pb2.HistoryRowsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gossip_pb2.HistoryRowsResponse:
        try:
            reader = self._reader()
            if not is_stream_id(request.bucket.stream_id):
                raise invalid_argument(f"bucket.stream_id must be {STREAM_ID_FORM}")
            if not 1 <= request.limit <= MAX_ROWS:
                raise invalid_argument(f"limit must be 1..{MAX_ROWS} rows, got {request.limit}")
            after = (request.after.start_s, request.after.emoji) if request.HasField("after") else None
            rows, more = await reader.rows(
                (request.bucket.minute, request.bucket.stream_id), request.replica, after, request.limit
            )
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return gossip_pb2.HistoryRowsResponse(
            rows=[gossip_pb2.HistoryRow(start_s=s, emoji=e, count=c) for s, e, c in rows], more=more
        )

    def _reader(self) -> HistoryReader:
        if self.history is None:
            raise failed_precondition("this node keeps no stored history")
        return self.history

    def add_to_server(self, server: grpc.aio.Server) -> None:
        gossip_pb2_grpc.add_GossipServicer_to_server(self, server)


def _digest_page(page: DigestPage) -> gossip_pb2.HistoryDigestsResponse:
    return gossip_pb2.HistoryDigestsResponse(
        buckets=[
            gossip_pb2.HistoryBucket(
                stream_id=b.stream,
                minute=b.minute,
                changed=b.changed,
                replicas=[
                    gossip_pb2.HistoryReplicaDigest(replica=r.replica, hash=r.hash, rows=r.rows) for r in b.replicas
                ],
            )
            for b in page.buckets
        ],
        more=page.more,
        head=page.head,
        generation=page.generation,
    )


class _ServerTransport:
    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._ctx = context

    async def read(self) -> object:
        return await self._ctx.read()

    async def write(self, message: gossip_pb2.GossipMessage) -> None:
        await self._ctx.write(message)


class Dialer:
    """Keeps one gossip session open to ``address``; reconnects until ``close()``. With ``tls`` every connection
    presents the node's certificate as it is on disk at that moment (mTLS), and refused handshakes are counted."""

    def __init__(
        self,
        node: GossipNode,
        address: str,
        clock: Clock,
        *,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        channel_options: tuple[tuple[str, Any], ...] = (),
        tls: ClientTLS | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.address = address
        self.clock = clock
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._options = channel_options
        self._tls = tls
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connects = 0
        self.connected = False
        self.is_self = False
        """Set when ``address`` turned out to be this node (it then stops dialling)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"gossip-dial-{self.address}")

    async def close(self) -> None:
        self._closed = True  # ends the loop even if a session swallowed the cancel below
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            if self._tls is not None:
                channel = self._tls.channel(self.address, self._options)
            else:
                channel = grpc.aio.insecure_channel(self.address, options=self._options)
            try:
                call = gossip_pb2_grpc.GossipStub(channel).Exchange()
                self.connects += 1
                started = self.clock.monotonic()
                self.connected = True
                await self.node.run_session(call, dialer=True)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "this node itself" in (exc.details() or ""):
                    self.is_self = True
                    log.info("gossip: %s is this node (%s); not dialling it", self.address, self.node.node_id)
                    return  # (the finally below closes the channel)
                if self._tls is not None:
                    self._tls.observe(self.address, exc)
                log.debug("gossip session to %s ended: %s", self.address, exc)
            except (ProtocolError, ConnectionError) as exc:
                log.debug("gossip session to %s ended: %s", self.address, exc)
            finally:
                self.connected = False
                await channel.close(grace=None)
            if self.clock.monotonic() - started > 5.0:
                attempt = 0
                if self._tls is not None:
                    self._tls.connected(self.address)
            attempt += 1
            await self.clock.sleep(backoff_delay(attempt, self.backoff_initial_s, self.backoff_max_s, self._rng))
