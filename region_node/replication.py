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
from reactmesh.edge.errors import abort_with, invalid_argument
from reactmesh.merge.clock import Clock
from reactmesh.merge.gossip import GossipNode, ProtocolError
from reactmesh.v1 import gossip_pb2, gossip_pb2_grpc

log = logging.getLogger(__name__)


class GossipServicer(gossip_pb2_grpc.GossipServicer):
    """Serves Gossip.Exchange for one GossipNode."""

    SERVICE_NAME = "reactmesh.v1.Gossip"

    def __init__(self, node: GossipNode) -> None:
        self.node = node

    # The session reads and writes through the context (GossipNode drives both directions), which grpc.aio
    # allows for a handler that returns None instead of yielding.
    async def Exchange(  # type: ignore[override]
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        try:
            await self.node.run_session(_ServerTransport(context), dialer=False)
        except ProtocolError as exc:
            await abort_with(context, invalid_argument(str(exc)))

    def add_to_server(self, server: grpc.aio.Server) -> None:
        gossip_pb2_grpc.add_GossipServicer_to_server(self, server)


class _ServerTransport:
    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._ctx = context

    async def read(self) -> object:
        return await self._ctx.read()

    async def write(self, message: gossip_pb2.GossipMessage) -> None:
        await self._ctx.write(message)


class Dialer:
    """Keeps one gossip session open to ``address``; reconnects until ``close()``."""

    def __init__(
        self,
        node: GossipNode,
        address: str,
        clock: Clock,
        *,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        channel_options: tuple[tuple[str, Any], ...] = (),
        credentials: grpc.ChannelCredentials | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.address = address
        self.clock = clock
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._options = channel_options
        self._credentials = credentials
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connects = 0
        self.connected = False

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
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(self.address, self._credentials, options=self._options)
            else:
                channel = grpc.aio.insecure_channel(self.address, options=self._options)
            try:
                call = gossip_pb2_grpc.GossipStub(channel).Exchange()
                self.connects += 1
                started = self.clock.monotonic()
                self.connected = True
                await self.node.run_session(call, dialer=True)
            except (grpc.aio.AioRpcError, ProtocolError, ConnectionError) as exc:
                log.debug("gossip session to %s ended: %s", self.address, exc)
            finally:
                self.connected = False
                await channel.close(grace=None)
            if self.clock.monotonic() - started > 5.0:
                attempt = 0
            attempt += 1
            await self.clock.sleep(backoff_delay(attempt, self.backoff_initial_s, self.backoff_max_s, self._rng))
