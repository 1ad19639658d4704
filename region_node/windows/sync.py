"""History anti-entropy: a broadcaster repairs its stored (sealed) windows from each source and peer, in rounds
of bounded work, over Gossip.HistoryDigests and Gossip.HistoryRows (protos/reactmesh/v1/gossip.proto).

Open windows travel with delta gossip like totals. Once sealed they leave memory (region_node.windows.sealer) and
delta gossip no longer carries them, so whatever a peer missed (a partition longer than the horizon, a restart, a
new peer with an empty disk) is repaired here. Each ``HistorySync`` pulls from one peer; every node pulls from
everyone it gossips with, so stores converge by max like the in-memory CRDT does.

Each round (every ``interval_s``) compares at most ``page_buckets`` bucket digests and fetches at most
``max_rows_per_round`` rows, whatever the size of the history, in this order:

1. Rows of buckets found to differ earlier (per replica: only the replicas whose hashes differ are fetched).
2. Changes: buckets the peer wrote after sealing (late deltas, its own repairs), oldest first, from a change mark
   the peer returns as ``head``; so a repair spreads from node to node within a few rounds.
3. Sweeps, newest minute first: each minute once, soon after it is sealed here; and the whole retention after
   each (re)connection or a new peer store (a new ``generation``), so a new or long-partitioned node gets live
   state from delta gossip at once and its history in the background, most recent first.
4. After each (re)connection, a sweep of the streams' totals buckets (``TOTALS_MINUTE``): totals of ended streams
   leave memory everywhere, so delta gossip no longer carries them and a new node learns them here.

A peer that is down makes a round fail; the next successful round starts a new full sweep.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from reactmesh.merge.checks import int_in, number_in
from reactmesh.merge.clock import Clock
from reactmesh.region_node.state import TOTALS, WINDOWS
from reactmesh.region_node.tls import ClientTLS
from reactmesh.region_node.windows.digests import MAX_PAGE, MAX_ROWS, TOTALS_MINUTE, Bucket, HistoryReader
from reactmesh.region_node.windows.sealer import SealedBefore, Slot, WindowSink
from reactmesh.v1 import gossip_pb2, gossip_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistorySyncConfig:
    """Bounds of one node's history repair, per peer and round."""

    interval_s: float = 1.0
    page_buckets: int = 256
    max_rows_per_round: int = 20_000
    rpc_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        number_in("broadcaster.history.interval_s", self.interval_s, 0, 3600, low_open=True, unit="seconds")
        int_in("broadcaster.history.page_buckets", self.page_buckets, 1, MAX_PAGE)
        int_in("broadcaster.history.max_rows_per_round", self.max_rows_per_round, 1, 10_000_000)
        number_in("broadcaster.history.rpc_timeout_s", self.rpc_timeout_s, 0, 600, low_open=True, unit="seconds")


@dataclass
class _Range:
    lo: int
    hi: int
    after: Bucket | None = None


@dataclass
class SyncStats:
    rounds: int = 0
    failures: int = 0
    buckets_compared: int = 0
    buckets_differing: int = 0
    rows_fetched: int = 0
    full_sweeps: int = 0
    sweeps_done: int = 0


class HistorySync:
    """Repairs one node's stored windows from one peer (see the module docstring)."""

    def __init__(
        self,
        address: str,
        store: WindowSink,
        reader: HistoryReader,
        line: SealedBefore,
        clock: Clock,
        *,
        retention_s: int,
        config: HistorySyncConfig | None = None,
        channel_options: tuple[tuple[str, Any], ...] = (),
        own_generation: str | None = None,
        tls: ClientTLS | None = None,
    ) -> None:
        self.address = address
        self._store = store
        self._reader = reader
        self._line = line
        self._clock = clock
        self.retention_s = retention_s
        self.config = config or HistorySyncConfig()
        self._options = channel_options
        self._tls = tls
        self._generation: str | None = None
        self._changes_after = 0
        self._ranges: list[_Range] = []
        self._swept_hi = 0
        self._fetch: deque[tuple[Bucket, str]] = deque()
        self._row_after: tuple[int, str] | None = None
        self._totals_after: str | None = None
        self._totals_sweep = False
        self._connected = False
        self._own_generation = own_generation
        self.is_self = False
        """Set when the peer's store is this node's own (a peer list that names the node itself): rounds stop."""
        self.stats = SyncStats()

    @property
    def idle(self) -> bool:
        """Nothing left to compare or fetch until more minutes are sealed or the peer changes something."""
        if self.is_self:
            return True
        return not self._ranges and not self._fetch and not self._totals_sweep and self._generation is not None

    async def run(self) -> None:
        """Run a round every ``interval_s`` until cancelled."""
        channel: Any = (
            self._tls.reloading_channel(self.address, self._options)
            if self._tls is not None
            else grpc.aio.insecure_channel(self.address, options=self._options)
        )
        stub: gossip_pb2_grpc.GossipAsyncStub = gossip_pb2_grpc.GossipStub(channel)
        try:
            while True:
                await self._clock.sleep(self.config.interval_s)
                await self.round_safely(stub)
        finally:
            await channel.close(grace=None)

    async def round_safely(self, stub: gossip_pb2_grpc.GossipAsyncStub) -> bool:
        """One round; False (and a full sweep after the next success) if the peer could not be reached."""
        try:
            await self.round(stub)
        except grpc.aio.AioRpcError as exc:
            self.stats.failures += 1
            if self._tls is not None:
                self._tls.observe(self.address, exc)
            if self._connected:
                log.info("history sync with %s paused: %s", self.address, exc.code().name)
            self._connected = False
            return False
        return True

    async def round(self, stub: gossip_pb2_grpc.GossipAsyncStub) -> None:
        """One bounded round (see the module docstring). Raises grpc.aio.AioRpcError if the peer fails."""
        cfg = self.config
        if self.is_self:
            return
        self.stats.rounds += 1
        now_s = self._clock.wall_ms() // 1000
        sealed_hi = self._line.advance() // 60  # minutes below it are wholly sealed
        lo = (now_s - self.retention_s) // 60
        if not self._connected:
            head = await stub.HistoryDigests(
                gossip_pb2.HistoryDigestsRequest(changes=gossip_pb2.HistoryChanges(after=0), limit=0),
                timeout=cfg.rpc_timeout_s,
            )
            if self._own_generation is not None and head.generation == self._own_generation:
                self.is_self = True
                log.info("history sync: %s is this node; not syncing with it", self.address)
                return
            if head.generation != self._generation:
                self._changes_after = head.head
                self._generation = head.generation
            self._ranges = [_Range(lo, sealed_hi)]
            self._swept_hi = sealed_hi
            self._fetch.clear()
            self._row_after = None
            self._totals_after = None
            self._totals_sweep = True
            self._connected = True
            self.stats.full_sweeps += 1
        elif sealed_hi > self._swept_hi:
            self._ranges.append(_Range(max(lo, self._swept_hi), sealed_hi))
            self._swept_hi = sealed_hi
        budget = cfg.max_rows_per_round
        budget = await self._drain(stub, budget)
        if budget and not self._fetch:
            page = await stub.HistoryDigests(
                gossip_pb2.HistoryDigestsRequest(
                    changes=gossip_pb2.HistoryChanges(after=self._changes_after), limit=cfg.page_buckets
                ),
                timeout=cfg.rpc_timeout_s,
            )
            if page.generation != self._generation:
                self._connected = False  # a new store behind the same address: start over next round
                return
            await self._compare(page.buckets)
            marks = [b.changed for b in page.buckets]
            self._changes_after = max(marks) if marks else max(self._changes_after, page.head)
            budget = await self._drain(stub, budget)
        while budget and not self._fetch and self._ranges:
            r = self._ranges[-1]
            if r.lo >= r.hi:
                self._ranges.pop()
                continue
            request = gossip_pb2.HistoryDigestsRequest(
                range=gossip_pb2.HistoryRange(minute_lo=r.lo, minute_hi=r.hi), limit=cfg.page_buckets
            )
            if r.after is not None:
                request.range.after.minute, request.range.after.stream_id = r.after
            page = await stub.HistoryDigests(request, timeout=cfg.rpc_timeout_s)
            await self._compare(page.buckets)
            if page.more and page.buckets:
                last = page.buckets[-1]
                r.after = (last.minute, last.stream_id)
            else:
                self._ranges.pop()
                self.stats.sweeps_done += 1
            budget = await self._drain(stub, budget)
            break  # one page of digests per round
        if budget and not self._fetch and not self._ranges and self._totals_sweep:
            request = gossip_pb2.HistoryDigestsRequest(
                totals=gossip_pb2.HistoryTotals(after_stream=self._totals_after or ""), limit=cfg.page_buckets
            )
            page = await stub.HistoryDigests(request, timeout=cfg.rpc_timeout_s)
            await self._compare(page.buckets)
            if page.more and page.buckets:
                self._totals_after = page.buckets[-1].stream_id
            else:
                self._totals_sweep = False
            await self._drain(stub, budget)

    async def _compare(self, buckets: Iterable[gossip_pb2.HistoryBucket]) -> None:
        remote = {(b.minute, b.stream_id): b for b in buckets}
        if not remote:
            return
        mine = await self._reader.digests(list(remote))
        self.stats.buckets_compared += len(remote)
        for key, b in remote.items():
            here = mine.get(key, {})
            differing = [r.replica for r in b.replicas if here.get(r.replica) != r.hash]
            if differing:
                self.stats.buckets_differing += 1
                self._fetch.extend((key, replica) for replica in differing)

    async def _drain(self, stub: gossip_pb2_grpc.GossipAsyncStub, budget: int) -> int:
        """Fetch queued rows within ``budget``; return what is left of it."""
        while budget and self._fetch:
            (minute, stream), replica = self._fetch[0]
            request = gossip_pb2.HistoryRowsRequest(replica=replica, limit=min(budget, MAX_ROWS))
            request.bucket.minute, request.bucket.stream_id = minute, stream
            if self._row_after is not None:
                request.after.start_s, request.after.emoji = self._row_after
            page = await stub.HistoryRows(request, timeout=self.config.rpc_timeout_s)
            if minute == TOTALS_MINUTE:
                slots: list[Slot] = [(TOTALS, (stream, r.emoji), replica, r.count) for r in page.rows]
            else:
                slots = [(WINDOWS, (stream, r.emoji, r.start_s), replica, r.count) for r in page.rows]
            if slots:
                await self._store.commit({}, slots, self._clock.wall_ms(), sealed_before_s=self._line.value)
            self.stats.rows_fetched += len(slots)
            budget = max(0, budget - max(1, len(slots)))
            if page.more and page.rows:
                self._row_after = (page.rows[-1].start_s, page.rows[-1].emoji)
            else:
                self._fetch.popleft()
                self._row_after = None
        return budget
