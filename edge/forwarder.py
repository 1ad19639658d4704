"""Forwarder: one ordered Aggregator.Forward stream from this edge to one aggregator.

Client batches are submitted one at a time and packed into EdgeBatches; a batch is sealed when it
holds ``max_entries`` entries, or ``flush_interval_s`` after its first entry (immediately when the
interval is 0, coalescing whatever was submitted meanwhile). Each submitted entry gets a future that
resolves to the aggregator's EntryOutcome (APPLIED, DUPLICATE or REFUSED).

Ordering guarantee, on which exactly-once counting rests: the aggregator applies an entry iff its seq
is above the session's watermark, so entries must reach it in submission order. Entries are written in
submission order; every written EdgeBatch stays in ``unacked`` until its EdgeAck arrives (acks come in
batch order). When the stream breaks, the forwarder reconnects and first resends every unacked
EdgeBatch, byte for byte and in the original order, then continues with new ones. An entry's future is
therefore never failed because of a broken stream; it fails only with ForwarderClosed when ``close()``'s
grace period ends, and then every later entry of the same session fails with it, so a client resending
its unacked batches resends a suffix of its session, in order.

Reconnects: the first attempt after a break is immediate; consecutive failures (streams that end
without a single ack) back off with ``edge.backoff.EqualJitterBackoff``, on the given Clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from reactmesh.edge.backoff import EqualJitterBackoff
from reactmesh.merge.clock import Clock
from reactmesh.v1 import aggregator_pb2, common_pb2

log = logging.getLogger(__name__)

FORWARD_METHOD = "/reactmesh.v1.Aggregator/Forward"

EntryOutcome = aggregator_pb2.EdgeAck.EntryOutcome
_VALID_OUTCOMES = frozenset(
    (aggregator_pb2.EdgeAck.APPLIED, aggregator_pb2.EdgeAck.DUPLICATE, aggregator_pb2.EdgeAck.REFUSED)
)

ChannelFactory = Callable[[str], Any]


class ForwarderClosed(Exception):
    """Set on the future of every entry still unacknowledged when ``Forwarder.close()`` gives up; the
    entry may or may not have been applied, and the client must resend it (it is then applied or
    acknowledged as DUPLICATE)."""


class ForwardProtocolError(Exception):
    """Raised inside the forwarder when an EdgeAck does not match the oldest unacked EdgeBatch (wrong
    batch id, wrong number of outcomes, unknown outcome); the stream is dropped and the batches resent."""


def insecure_channel(address: str) -> Any:
    """The default channel factory: plaintext gRPC to ``address``."""
    return grpc.aio.insecure_channel(address)


@dataclass(slots=True)
class _Sealed:
    batch_id: int
    payload: bytes
    futures: list[asyncio.Future[int]]
    first_at: float  # monotonic time its first entry was submitted


class Forwarder:
    """The ordered forwarding path to one aggregator. Use from one event loop."""

    def __init__(
        self,
        address: str,
        clock: Clock,
        *,
        flush_interval_s: float,
        max_entries: int,
        backoff_s: float,
        backoff_max_s: float,
        channel_factory: ChannelFactory = insecure_channel,
        rng: random.Random | None = None,
    ) -> None:
        self.address = address
        self._clock = clock
        self._flush_interval = flush_interval_s
        self._max_entries = max_entries
        self._backoff = EqualJitterBackoff(backoff_s, backoff_max_s, rng or random.Random())
        self._channel_factory = channel_factory
        self._channel: Any = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

        self._next_batch_id = 1
        self._building = aggregator_pb2.EdgeBatch()
        self._building_futures: list[asyncio.Future[int]] = []
        self._building_first_at = 0.0
        self._ready: deque[_Sealed] = deque()  # sealed, not yet written
        self._unacked: deque[_Sealed] = deque()  # written, awaiting their EdgeAck, in order
        self._work = asyncio.Event()  # something to send
        self._flush_now = asyncio.Event()  # stop waiting for the flush interval
        self._idle = asyncio.Event()  # nothing pending, nothing unacked
        self._idle.set()
        self._acked_this_stream = False

        self.connected = False
        self.streams_opened = 0
        self.stream_failures = 0
        self.batches_sent = 0
        self.batches_resent = 0
        self.entries_sent = 0
        self.protocol_errors = 0

    # -- submission (synchronous: the call order is the forwarding order) --

    def submit(
        self,
        session_id: bytes,
        seq: int,
        stream_id: str,
        counts: Iterable[common_pb2.ReactionCount],
        accepted_at_ms: int,
    ) -> asyncio.Future[int]:
        """Queue one client batch; the future resolves to its EdgeAck.EntryOutcome."""
        if self._closing:
            raise RuntimeError(f"forwarder to {self.address} is closed")
        entry = self._building.entries.add(
            session_id=session_id, seq=seq, stream_id=stream_id, accepted_at_ms=accepted_at_ms
        )
        entry.counts.extend(counts)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self._building_futures:
            self._building_first_at = self._clock.monotonic()
        self._building_futures.append(future)
        if len(self._building_futures) >= self._max_entries:
            self._seal()
            self._flush_now.set()
        self._idle.clear()
        self._work.set()
        return future

    def flush(self) -> None:
        """Send what is queued now instead of at the end of the flush interval."""
        self._flush_now.set()

    def _seal(self) -> None:
        batch = self._building
        batch.batch_id = self._next_batch_id
        self._next_batch_id += 1
        self._ready.append(
            _Sealed(batch.batch_id, batch.SerializeToString(), self._building_futures, self._building_first_at)
        )
        self._building = aggregator_pb2.EdgeBatch()
        self._building_futures = []

    # -- lifecycle --

    def start(self) -> None:
        """Open the channel and start forwarding (needs a running event loop)."""
        if self._task is not None:
            raise RuntimeError("forwarder already started")
        self._channel = self._channel_factory(self.address)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"forwarder {self.address}")

    async def close(self, grace_s: float) -> None:
        """Flush, wait up to ``grace_s`` (clock time) for every ack, then stop; entries still unacked
        fail with ForwarderClosed."""
        self._closing = True
        self._flush_now.set()
        self._work.set()
        if self._task is not None and grace_s > 0 and not self._idle.is_set():
            idle = asyncio.ensure_future(self._idle.wait())
            deadline = asyncio.ensure_future(self._clock.sleep(grace_s))
            try:
                await asyncio.wait((idle, deadline, self._task), return_when=asyncio.FIRST_COMPLETED)
            finally:
                idle.cancel()
                deadline.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._building_futures:
            self._seal()
        error = ForwarderClosed(f"forwarder to {self.address} closed before the aggregator acknowledged")
        for sealed in (*self._unacked, *self._ready):
            for future in sealed.futures:
                if not future.done():
                    future.set_exception(error)
        self._unacked.clear()
        self._ready.clear()
        self._idle.set()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    # -- the connection loop --

    async def _run(self) -> None:
        failures = 0
        while True:
            if failures > 1:
                await self._clock.sleep(self._backoff.compute(failures - 1))
            self._acked_this_stream = False
            try:
                await self._stream_once()
            except Exception:
                log.exception("Forward stream to %s failed unexpectedly", self.address)
            self.stream_failures += 1
            failures = 1 if self._acked_this_stream else failures + 1

    async def _stream_once(self) -> None:
        """Run one Forward stream until it breaks."""
        call = self._channel.stream_stream(
            FORWARD_METHOD,
            request_serializer=None,
            response_deserializer=aggregator_pb2.EdgeAck.FromString,
        )(wait_for_ready=True)
        self.streams_opened += 1
        reader = asyncio.ensure_future(self._read_acks(call))
        writer = asyncio.ensure_future(self._write_batches(call))
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if isinstance(error, ForwardProtocolError):
                    self.protocol_errors += 1
                    log.warning("aggregator %s broke the Forward protocol: %s", self.address, error)
                elif error is not None:
                    log.info("Forward stream to %s ended: %s", self.address, error)
                else:
                    log.info("Forward stream to %s closed by the aggregator", self.address)
        finally:
            self.connected = False
            reader.cancel()
            writer.cancel()
            call.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)

    async def _write_batches(self, call: Any) -> None:
        for sealed in tuple(self._unacked):
            await call.write(sealed.payload)
            self.batches_resent += 1
        self.connected = True
        while True:
            if not self._ready and not self._building_futures:
                self._work.clear()
                await self._work.wait()
                continue
            if not self._ready and self._flush_interval > 0 and not self._flush_now.is_set():
                await self._wait_flush_interval()
            if not self._ready:
                self._seal()
            if not self._closing:
                self._flush_now.clear()
            sealed = self._ready.popleft()
            self._unacked.append(sealed)
            await call.write(sealed.payload)
            self.batches_sent += 1
            self.entries_sent += len(sealed.futures)

    async def _wait_flush_interval(self) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(self._flush_interval))
        early = asyncio.ensure_future(self._flush_now.wait())
        try:
            await asyncio.wait((sleeper, early), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            early.cancel()

    async def _read_acks(self, call: Any) -> None:
        while True:
            ack = await call.read()
            if ack is grpc.aio.EOF:
                return
            if not self._unacked:
                raise ForwardProtocolError(f"EdgeAck {ack.batch_id} with no EdgeBatch outstanding")
            sealed = self._unacked[0]
            outcomes = ack.outcomes
            if ack.batch_id != sealed.batch_id:
                raise ForwardProtocolError(f"EdgeAck for batch {ack.batch_id}, expected {sealed.batch_id}")
            if len(outcomes) != len(sealed.futures):
                raise ForwardProtocolError(
                    f"EdgeAck {ack.batch_id} has {len(outcomes)} outcomes for {len(sealed.futures)} entries"
                )
            if not _VALID_OUTCOMES.issuperset(outcomes):
                raise ForwardProtocolError(f"EdgeAck {ack.batch_id} has an unknown entry outcome")
            self._unacked.popleft()
            self._acked_this_stream = True
            for future, outcome in zip(sealed.futures, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
            if not self._unacked and not self._ready and not self._building_futures:
                self._idle.set()

    # -- introspection --

    @property
    def pending_entries(self) -> int:
        """Entries submitted but not yet written to the stream."""
        return len(self._building_futures) + sum(len(s.futures) for s in self._ready)

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest entry submitted and not yet acked has waited at monotonic ``now`` (0 if none)."""
        if self._unacked:
            return now - self._unacked[0].first_at
        if self._ready:
            return now - self._ready[0].first_at
        if self._building_futures:
            return now - self._building_first_at
        return 0.0

    @property
    def unacked_batches(self) -> int:
        return len(self._unacked)

    def statistics(self) -> dict[str, int]:
        return {
            "connected": int(self.connected),
            "streams_opened": self.streams_opened,
            "stream_failures": self.stream_failures,
            "batches_sent": self.batches_sent,
            "batches_resent": self.batches_resent,
            "entries_sent": self.entries_sent,
            "unacked_batches": len(self._unacked),
            "pending_entries": self.pending_entries,
            "protocol_errors": self.protocol_errors,
        }
