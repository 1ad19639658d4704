"""The SDK's ingest connection: a ledger's batches sent in order over one ``Ingest.Stream`` at a time.

``IngestConnection.run`` waits until the ledger holds an unacked batch, connects to the first reachable edge
(trying ``edges`` in order, failing over only when the current one cannot be connected to) and runs one
stream: a writer sends batches in seq order, starting with every unacked one, oldest first; a reader applies
acks to the ledger; a watchdog drops the stream when the oldest batch sent on it has no ack after
``ack_timeout_s``. A RETRY ack pauses the writer on the same stream: it waits until the edge has answered
every batch it wrote after the refused one (the edge answers those RETRY at once) and at least
``retry_after_ms`` plus jitter, then resends from the refused seq; the reader reads on throughout, so the
batches admitted before the RETRY are acked on the stream that carried them. Keeping the stream matters under
overload: a CPU-bound server picks up a new stream only after seconds. An edge that ends the stream after a
RETRY instead (older edges did) is waited out the same way and reconnected to. A stream sends at most
``window`` (``edge.sdk.window``: AIMD on ack latency, small after a RETRY) batches beyond the oldest unacked
one. Why a stream ended decides what happens next: RESOURCE_EXHAUSTED with ``retry-after-ms`` waits at
least that and reconnects to the same edge; a status in ``FATAL_CODES`` ends the loop through ``on_fatal``;
anything else reconnects with full-jitter backoff (reset by a stream that got an ack). The client resends
nothing itself: a batch stays in the ledger until an ack settles it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from reactmesh.edge.backoff import FullJitterBackoff
from reactmesh.edge.sdk.batches import Ledger, Unacked
from reactmesh.edge.sdk.channels import Channels, wait_ready
from reactmesh.edge.sdk.config import ClientConfig
from reactmesh.edge.sdk.errors import FATAL_CODES, ClientError, retry_after_s
from reactmesh.edge.sdk.window import SendWindow
from reactmesh.merge.clock import Clock
from reactmesh.v1 import ingest_pb2, ingest_pb2_grpc

__all__ = ["ConnectionState", "IngestConnection"]

log = logging.getLogger(__name__)


class ConnectionState(enum.Enum):
    """Where the ingest connection loop is."""

    IDLE = "idle"  # no stream, nothing to send
    CONNECTING = "connecting"
    STREAMING = "streaming"
    WAITING = "waiting"  # backoff or retry-after before reconnecting
    FAILED = "failed"  # a fatal status ended the session; see ClientStatistics.error
    CLOSED = "closed"


@dataclass(frozen=True)
class _Dropped:
    reason: str


@dataclass(frozen=True)
class _RetryAfter:
    seconds: float


@dataclass(frozen=True)
class _Fatal:
    error: ClientError


_Outcome = _Dropped | _RetryAfter | _Fatal


class _Pause:
    """A stream on which the edge answered RETRY: its writer resends from ``refused`` once the edge has answered
    every seq it wrote (``answered`` reaches them) and the monotonic time ``resume_at`` has come."""

    __slots__ = ("answered", "changed", "refused", "resume_at", "retry_s", "stream_no")

    def __init__(self, stream_no: int, refused: int, retry_s: float, resume_at: float) -> None:
        self.stream_no = stream_no
        self.refused = refused
        self.retry_s = retry_s
        self.resume_at = resume_at
        self.answered = refused  # the highest seq answered RETRY on the stream since the pause began
        self.changed = asyncio.Event()


class IngestConnection:
    """The connection loop of one client. ``on_settled(batch, ack)`` is called for every ack that settles a
    batch, ``on_fatal(error)`` once, when a fatal status ends the loop."""

    def __init__(
        self,
        config: ClientConfig,
        ledger: Ledger,
        channels: Channels,
        clock: Clock,
        backoff: FullJitterBackoff,
        *,
        on_settled: Callable[[Unacked, ingest_pb2.BatchAck], None],
        on_fatal: Callable[[ClientError], None],
    ) -> None:
        self.config = config
        self._ledger = ledger
        self._channels = channels
        self._clock = clock
        self._backoff = backoff
        self._on_settled = on_settled
        self._on_fatal = on_fatal
        self._new_work = asyncio.Event()
        self._stream_progress = False

        self.state = ConnectionState.IDLE
        self.edge_index = 0
        self.streams_opened = 0
        self._pause: _Pause | None = None  # set by a RETRY ack, cleared when the writer resends
        self.retry_pauses = 0
        self.window = SendWindow(config.max_unacked_batches, config.ack_latency_target_s)
        self._acked = asyncio.Event()
        self.batches_sent = 0
        self.batches_resent = 0
        self.reconnects = 0
        self.failovers = 0
        self.ack_timeouts = 0

    @property
    def cut_window(self) -> int:
        """How many batches the ledger may hold unacked when it cuts new ones: none while a RETRY pauses the
        stream. Taps made meanwhile wait in the pending counts, so that a batch closes when it can be sent: the
        edge reads the time from a batch's close to its arrival as queueing in front of it, and a batch closed
        during the pause would report the pause as such."""
        return 0 if self._paused() is not None else self.window.batches

    def wake(self) -> None:
        """Tell the loop that the ledger has new batches."""
        self._new_work.set()

    async def run(self) -> None:
        """Send the ledger's batches until cancelled, or until a fatal status (reported to ``on_fatal``)."""
        cfg = self.config
        unacked = self._ledger.unacked
        n = len(cfg.edges)
        failures = 0
        unreachable_streak = 0
        while True:
            while not unacked:
                self.state = ConnectionState.IDLE
                self._new_work.clear()
                await self._new_work.wait()
            address = cfg.edges[self.edge_index]
            self.state = ConnectionState.CONNECTING
            channel = self._channels.get(address)
            delay = 0.0
            if not await wait_ready(channel, self._clock, cfg.connect_timeout_s):
                unreachable_streak += 1
                if n > 1:
                    self.edge_index = (self.edge_index + 1) % n
                    self.failovers += 1
                    log.warning("edge %s unreachable; failing over to %s", address, cfg.edges[self.edge_index])
                if unreachable_streak % n == 0:
                    failures += 1
                    delay = self._backoff.compute(failures)
            else:
                unreachable_streak = 0
                if self.streams_opened > 0:
                    self.reconnects += 1
                outcome = await self._run_stream(channel, address)
                if self._stream_progress:
                    failures = 0
                if isinstance(outcome, _Fatal):
                    self._on_fatal(outcome.error)
                    return
                if isinstance(outcome, _RetryAfter):
                    delay = self._backoff.after_retry_after(outcome.seconds)
                else:
                    failures += 1
                    delay = self._backoff.compute(failures)
                    log.info("ingest stream to %s ended (%s); reconnecting in %.3f s", address, outcome.reason, delay)
            if delay > 0:
                self.state = ConnectionState.WAITING
                await self._clock.sleep(delay)

    async def _run_stream(self, channel: Any, address: str) -> _Outcome:
        self.streams_opened += 1
        stream_no = self.streams_opened
        self._stream_progress = False
        self._pause = None  # a pause of an earlier stream ended with it
        self.state = ConnectionState.STREAMING
        call = ingest_pb2_grpc.IngestStub(channel).Stream(metadata=self._channels.metadata())
        writer = asyncio.create_task(self._write_loop(call, stream_no))
        reader = asyncio.create_task(self._read_loop(call, address))
        watchdog = asyncio.create_task(self._watch_acks(stream_no))
        try:
            done, _ = await asyncio.wait((reader, watchdog), return_when=asyncio.FIRST_COMPLETED)
            return (reader if reader in done else watchdog).result()
        finally:
            call.cancel()
            for task in (writer, reader, watchdog):
                task.cancel()
            for task in (writer, reader, watchdog):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _write_loop(self, call: Any, stream_no: int) -> None:
        ledger = self._ledger
        unacked = ledger.unacked
        seq = next(iter(unacked), ledger.last_seq + 1)
        written = seq - 1  # the highest seq written on this stream
        clock = self._clock
        while True:
            pause = self._pause
            if pause is not None and pause.stream_no == stream_no:
                seq = await self._sit_out(pause, written)
                continue
            if seq > ledger.last_seq:
                self._new_work.clear()
                await self._new_work.wait()
                continue
            if unacked and seq - next(iter(unacked)) >= self.window.batches:
                self._acked.clear()
                await self._acked.wait()
                continue
            batch = unacked.get(seq)
            seq += 1
            if batch is None:  # acked while waiting to be resent
                continue
            if batch.sends:
                self.batches_resent += 1
            batch.sends += 1
            batch.sent_at = clock.monotonic()
            batch.stream_no = stream_no
            self.batches_sent += 1
            written = batch.msg.seq
            try:
                await call.write(batch.msg)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return  # the reader sees the call's status

    async def _sit_out(self, pause: _Pause, written: int) -> int:
        """Wait out a RETRY on the stream; returns the seq to resend from."""
        while pause.answered < written:  # later batches still in flight would be answered RETRY after the resend
            pause.changed.clear()
            await pause.changed.wait()
        delay = pause.resume_at - self._clock.monotonic()
        if delay > 0:
            await self._clock.sleep(delay)
        self._pause = None
        self.state = ConnectionState.STREAMING
        return pause.refused

    async def _read_loop(self, call: Any, address: str) -> _Outcome:
        try:
            while True:
                ack = await call.read()
                if ack is grpc.aio.EOF:
                    pause = self._paused()
                    return _Dropped("edge ended the stream") if pause is None else _RetryAfter(pause.retry_s)
                retry_after = self.apply_ack(ack)
                if retry_after is not None:
                    self._refused(ack.seq, retry_after)
                else:
                    self._stream_progress = True
        except grpc.aio.AioRpcError as exc:
            pause = self._paused()
            if pause is not None:
                return _RetryAfter(pause.retry_s)
            code = exc.code()
            if code in FATAL_CODES:
                return _Fatal(ClientError(code, exc.details() or "", address))
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                wait_s = retry_after_s(exc.trailing_metadata())
                if wait_s is not None:
                    return _RetryAfter(wait_s)
            return _Dropped(f"{code.name}: {exc.details()}")

    def _paused(self) -> _Pause | None:
        """The pause of the current stream, if a RETRY paused it."""
        pause = self._pause
        return pause if pause is not None and pause.stream_no == self.streams_opened else None

    def _refused(self, seq: int, retry_s: float) -> None:
        """The edge answered RETRY to ``seq`` on the current stream."""
        pause = self._paused()
        if pause is not None:  # a batch written after the refused one, answered with it
            pause.refused = min(pause.refused, seq)
            pause.answered = max(pause.answered, seq)
            pause.changed.set()
            return
        now = self._clock.monotonic()
        resume_at = now + self._backoff.after_retry_after(retry_s)
        self._pause = _Pause(self.streams_opened, seq, retry_s, resume_at)
        self.retry_pauses += 1
        self.state = ConnectionState.WAITING
        self.window.on_retry(now)
        for batch in self._ledger.unacked.values():
            if batch.msg.seq >= seq:
                # Refused, not lost: the watchdog's ack clock for them restarts when they are resent.
                batch.sent_at = resume_at
        self._new_work.set()  # wake the writer wherever it waits, so that it pauses
        self._acked.set()

    async def _watch_acks(self, stream_no: int) -> _Outcome:
        timeout = self.config.ack_timeout_s
        unacked = self._ledger.unacked
        while True:
            oldest = next(iter(unacked.values()), None)
            wait = timeout
            if oldest is not None and oldest.stream_no == stream_no:
                age = self._clock.monotonic() - oldest.sent_at
                if age >= timeout:
                    self.ack_timeouts += 1
                    return _Dropped(f"no ack for seq {oldest.msg.seq} within {timeout} s")
                wait = timeout - age
            await self._clock.sleep(wait)

    def apply_ack(self, ack: ingest_pb2.BatchAck) -> float | None:
        """Applies one ack; returns seconds to wait before resending if the edge asked for a retry."""
        ledger = self._ledger
        now = self._clock.monotonic()
        settled = ledger.settle(ack, now)
        if not isinstance(settled, Unacked):
            return settled
        if settled.sends:
            self.window.on_ack(ledger.last_latency_s, now, len(ledger.unacked) + 1)
        self._acked.set()
        self._on_settled(settled, ack)
        return None
