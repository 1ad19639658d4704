"""A peer list may name the node itself (every broadcaster of a region lists all of them): a node that dials
itself notices from the Hello, stops dialling that address, and its history sync skips its own store too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from reactmesh.merge.clock import SystemClock
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.replication import Dialer, GossipServicer
from reactmesh.region_node.state import RegionGossipNode, RegionState
from reactmesh.region_node.windows.digests import HistoryReader
from reactmesh.region_node.windows.sealer import SealedBefore
from reactmesh.region_node.windows.sync import HistorySync
from reactmesh.v1 import gossip_pb2_grpc


async def test_a_node_that_dials_itself_stops_and_so_does_its_history_sync(tmp_path: Path) -> None:
    clock = SystemClock()
    node = RegionGossipNode("a/bcast-0", "a", "broadcaster", RegionState(), clock)
    store = await Store.open(tmp_path / "h.db")
    reader = HistoryReader(str(tmp_path / "h.db"))
    server = grpc.aio.server()
    GossipServicer(node, reader).add_to_server(server)
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    dialer = Dialer(node, address, clock)
    try:
        dialer.start()
        assert dialer._task is not None
        await asyncio.wait_for(dialer._task, 10)  # it ends by itself
        assert dialer.is_self and dialer.connects == 1
        sync = HistorySync(
            address,
            store,
            reader,
            SealedBefore(clock, 120),
            clock,
            retention_s=3600,
            own_generation=store.node_generation(),
        )
        async with grpc.aio.insecure_channel(address) as channel:
            stub = gossip_pb2_grpc.GossipStub(channel)
            assert await sync.round_safely(stub)  # type: ignore[arg-type]
        assert sync.is_self and sync.idle and sync.stats.full_sweeps == 0
    finally:
        await dialer.close()
        await server.stop(None)
        await store.close()
        await reader.close()
