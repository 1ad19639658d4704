"""A gossip session cancelled while it is already ending (its peer went away) still ends as cancelled.

This was the shutdown hang of issue 12: a node stops its own aggregator server, which ends its broadcaster's
session to it; while that session waited for its sender task to finish, ``Dialer.close`` cancelled the dialer,
the cancel was swallowed, and the dialer redialled forever, so ``Node.stop`` never returned.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from reactmesh.merge.clock import SystemClock
from reactmesh.merge.gossip import GossipNode
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.replica import ReplicaState
from reactmesh.region_node.replication import Dialer
from reactmesh.v1 import gossip_pb2
from tests.support.polling import eventually


class SlowToCancelClock(SystemClock):
    """A clock whose sleepers take until ``release`` to finish being cancelled (as a sender finishing a write)."""

    def __init__(self) -> None:
        self.cancelling = asyncio.Event()
        self.release = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelling.set()
            await self.release.wait()
            raise


class PeerThatLeaves:
    """A transport whose peer says Hello, then goes away when ``leave`` is set."""

    def __init__(self) -> None:
        self.leave = asyncio.Event()
        self._said_hello = False

    async def read(self) -> object:
        if not self._said_hello:
            self._said_hello = True
            return gossip_pb2.GossipMessage(hello=gossip_pb2.Hello(node_id="peer", region="r", role="role"))
        await self.leave.wait()
        raise ConnectionError("peer went away")

    async def write(self, message: gossip_pb2.GossipMessage) -> None:
        return None


async def test_a_session_cancelled_while_it_ends_raises_cancelled_error() -> None:
    clock = SlowToCancelClock()
    node = GossipNode("n", "r", "role", ReplicaState({"counts": KeyedGCounter()}), clock)
    transport = PeerThatLeaves()
    session = asyncio.create_task(node.run_session(transport, dialer=True))
    await eventually(lambda: node.stats.sessions == 1)
    transport.leave.set()  # the session ends: its sender is being cancelled, slowly
    await asyncio.wait_for(clock.cancelling.wait(), 5)
    session.cancel()  # Dialer.close arrives meanwhile
    clock.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(session, 5)


class SwallowingNode:
    """A gossip node whose sessions swallow every cancel, then end: the worst a session can do."""

    def __init__(self) -> None:
        self.sessions = 0

    async def run_session(self, transport: object, *, dialer: bool) -> None:
        self.sessions += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        raise ConnectionError("session ended")


async def test_dialer_close_returns_even_if_a_session_swallows_the_cancel() -> None:
    node = SwallowingNode()
    dialer = Dialer(node, "127.0.0.1:1", SystemClock(), backoff_initial_s=0.01, backoff_max_s=0.01)  # type: ignore[arg-type]
    dialer.start()
    await eventually(lambda: node.sessions == 1)
    closing = asyncio.ensure_future(dialer.close())
    done, _ = await asyncio.wait((closing,), timeout=5)
    assert closing in done, "Dialer.close() did not return"
