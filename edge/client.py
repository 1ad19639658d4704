"""ReactionClient: the viewer-side SDK for sending taps to an edge and watching live counts.

Usage::

    from reactmesh.edge.client import LiveView, ReactionClient

    async def watch_and_tap() -> None:
        async with ReactionClient(["edge-eu:7443", "edge-us:7443"], viewer_id="u42", token=token) as client:
            client.tap("cup-final", "heart")          # cheap and synchronous; call it from UI handlers
            client.tap("cup-final", "like", n=3)
            await client.flush(timeout=5.0)           # every tap so far is acked (or TimeoutError)

            view = LiveView()
            async for frame in client.subscribe("cup-final", broadcaster_addresses=["bcast-eu:7444"]):
                view.apply(frame)
                render(view.totals)

What it guarantees, given an edge that honours ingest.proto:

- **No tap is lost or counted twice.** Every ``batch_interval_s`` (on the client's Clock) the taps of each
  stream become one ``ClientBatch`` numbered 1, 2, 3... per session (one sequence across all streams). A batch
  stays in an ordered buffer until acked. The client speaks over one ``Ingest.Stream`` at a time and always
  writes batches in seq order; after any reconnect it first resends every unacked batch, oldest first. The
  edge applies a batch iff its seq exceeds the session's watermark, so a resent batch that was already counted
  is acked DUPLICATE and not counted again, and one that was not is counted now.
- **Taps are never dropped silently.** When the buffer holds ``max_unacked_batches``, ``tap()`` keeps counting
  into the pending counts and new batches wait for room (backpressure is per-batch, not per-tap). A REJECTED
  batch is dropped on purpose (resending cannot help); it is counted in ``statistics().rejected_taps`` and
  passed to ``on_ack``. The counts conserve: ``taps == pending_taps + unacked_taps + acked_taps +
  rejected_taps``.
- **Retries are polite.** Reconnects use capped exponential backoff with full jitter. A RETRY ack or a
  RESOURCE_EXHAUSTED status with ``retry-after-ms`` makes the client wait at least that long, then reconnect to
  the same edge and resend in order. UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT and UNIMPLEMENTED end
  the session: ``flush()`` raises ``ClientError`` and ``on_error`` is called; the client does not loop.
- **Region failover.** ``edges`` are tried in order; the client stays on the first reachable one and moves to the
  next only when its edge cannot be connected to. Within one region every edge shares the aggregators'
  watermarks, so failover there keeps exactly-once. Across regions it does only as far as watermarks have
  travelled with gossip: a batch counted in the old region whose ack was lost may be counted again in the new
  one (see docs/ARCHITECTURE.md).
- **Stalled edges are left.** If the oldest batch sent on the current stream has no ack after ``ack_timeout_s``,
  the stream is dropped and everything unacked is resent on a new one.

Caveat the edge must honour: once it answers RETRY for a session's batch it must not apply a later batch of
that session on the same stream (answer RETRY to those too, or end the stream); otherwise the later seq
raises the watermark and the resent batch becomes a DUPLICATE. The client stops writing on the first RETRY.

``subscribe()`` follows ``Broadcast.Subscribe``: it remembers the last frame's (epoch, seq) and, after a
disconnect, reconnects with ``resume`` set, so the broadcaster replays what was missed or sends a SNAPSHOT.
``LiveView`` turns frames into what a viewer displays.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import random
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any

import grpc

from reactmesh.edge.errors import RETRY_AFTER_KEY, ConfigError
from reactmesh.merge.clock import Clock, SystemClock
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc, common_pb2, ingest_pb2, ingest_pb2_grpc, polls_pb2

__all__ = [
    "ClientConfig",
    "ClientError",
    "ClientStatistics",
    "ConnectionState",
    "LiveView",
    "ReactionClient",
    "backoff_delay",
]

log = logging.getLogger(__name__)

STREAM_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
EMOJI_RE = re.compile(r"[a-z0-9_]{1,32}")

FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Statuses that resending cannot fix: the client stops and reports them."""

_ACCEPTED = ingest_pb2.BatchAck.ACCEPTED
_DUPLICATE = ingest_pb2.BatchAck.DUPLICATE
_REJECTED = ingest_pb2.BatchAck.REJECTED
_RETRY = ingest_pb2.BatchAck.RETRY

AckCallback = Callable[[ingest_pb2.ClientBatch, ingest_pb2.BatchAck], None]
ErrorCallback = Callable[["ClientError"], None]
ChannelFactory = Callable[[str], Any]


class ClientError(Exception):
    """Raised by ``flush()`` and ``subscribe()`` (and passed to ``on_error``) when a server ends the stream with
    a status that resending cannot fix (see ``FATAL_CODES``); ``code`` and ``details`` are the server's."""

    def __init__(self, code: grpc.StatusCode, details: str, address: str) -> None:
        super().__init__(f"{address}: {code.name}: {details}")
        self.code = code
        self.details = details
        self.address = address


@dataclass(frozen=True)
class ClientConfig:
    """Settings of one ReactionClient; validated at construction."""

    edges: tuple[str, ...]
    viewer_id: str
    batch_interval_s: float = 0.25
    max_unacked_batches: int = 256
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    connect_timeout_s: float = 5.0
    ack_timeout_s: float = 10.0
    max_entries_per_batch: int = 16
    max_count_per_entry: int = 1000
    latency_samples: int = 10_000

    def __post_init__(self) -> None:
        if not self.edges or not all(isinstance(e, str) and e for e in self.edges):
            raise ConfigError("edges", "one or more non-empty 'host:port' addresses", self.edges)
        if not isinstance(self.viewer_id, str) or not 1 <= len(self.viewer_id) <= 128:
            raise ConfigError("viewer_id", "a string of 1..128 chars", self.viewer_id)
        for name in ("batch_interval_s", "backoff_initial_s", "connect_timeout_s", "ack_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(name, "seconds > 0", value)
        if not isinstance(self.backoff_max_s, int | float) or self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                "backoff_max_s", f"seconds >= backoff_initial_s ({self.backoff_initial_s})", self.backoff_max_s
            )
        for name, low in (("max_unacked_batches", 1), ("max_count_per_entry", 1), ("latency_samples", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(name, f"an integer >= {low}", value)
        if not isinstance(self.max_entries_per_batch, int) or not 1 <= self.max_entries_per_batch <= 16:
            raise ConfigError("max_entries_per_batch", "an integer in 1..16 (ingest.proto)", self.max_entries_per_batch)


class ConnectionState(enum.Enum):
    """Where the ingest connection loop is."""

    IDLE = "idle"  # no stream, nothing to send
    CONNECTING = "connecting"
    STREAMING = "streaming"
    WAITING = "waiting"  # backoff or retry-after before reconnecting
    FAILED = "failed"  # a fatal status ended the session; see ClientStatistics.error
    CLOSED = "closed"


@dataclass(frozen=True)
class ClientStatistics:
    """A snapshot of one client's counters.

    Taps conserve: ``taps == pending_taps + unacked_taps + acked_taps + rejected_taps``.
    """

    state: ConnectionState
    edge: str
    taps: int
    pending_taps: int
    unacked_batches: int
    unacked_taps: int
    batches: int
    batches_sent: int
    batches_resent: int
    acks_accepted: int
    acks_duplicate: int
    acks_rejected: int
    acks_retry: int
    acked_taps: int
    accepted_taps: int
    rate_limited_taps: int
    rejected_taps: int
    streams_opened: int
    reconnects: int
    failovers: int
    ack_timeouts: int
    subscribe_reconnects: int
    ack_latencies_s: tuple[float, ...]
    error: str | None


def backoff_delay(failures: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter backoff: uniform in [0, min(max_s, initial_s * 2**(failures-1))]."""
    cap = min(max_s, initial_s * 2.0 ** min(max(failures - 1, 0), 40))
    return rng.uniform(0.0, cap)


class _Unacked:
    __slots__ = ("msg", "sends", "sent_at", "stream_no", "taps")

    def __init__(self, msg: ingest_pb2.ClientBatch, taps: int) -> None:
        self.msg = msg
        self.taps = taps
        self.sends = 0
        self.sent_at = 0.0
        self.stream_no = 0


@dataclass(frozen=True)
class _Unreachable:
    pass


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


class ReactionClient:
    """One viewer session: batches taps, sends them exactly once to an edge, and subscribes to frames.

    Start it with ``await client.start()`` or ``async with``; ``flush()`` starts it too. ``tap()`` works before
    start (taps wait in the pending counts).
    """

    def __init__(
        self,
        edges: Sequence[str],
        viewer_id: str,
        *,
        clock: Clock | None = None,
        batch_interval_s: float = 0.25,
        token: str | None = None,
        max_unacked_batches: int = 256,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        ack_timeout_s: float = 10.0,
        max_count_per_entry: int = 1000,
        rng: random.Random | None = None,
        on_ack: AckCallback | None = None,
        on_error: ErrorCallback | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        """``credentials`` selects TLS (insecure when None). ``channel_factory(address)`` lets many clients share
        channels (the load tool); the client then never closes them. ``rng`` only drives backoff jitter; the
        session id always comes from ``os.urandom``."""
        if isinstance(edges, str):
            raise ConfigError("edges", "a sequence of 'host:port' addresses, not one string", edges)
        self.config = ClientConfig(
            edges=tuple(edges),
            viewer_id=viewer_id,
            batch_interval_s=batch_interval_s,
            max_unacked_batches=max_unacked_batches,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            connect_timeout_s=connect_timeout_s,
            ack_timeout_s=ack_timeout_s,
            max_count_per_entry=max_count_per_entry,
        )
        self.session_id = os.urandom(16)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._token = token
        self._on_ack = on_ack
        self._on_error = on_error
        self._credentials = credentials
        self._channel_factory = channel_factory
        self._channels: dict[str, Any] = {}

        self._pending: dict[str, dict[str, int]] = {}
        self._unacked: dict[int, _Unacked] = {}  # insertion order is seq order
        self._last_seq = 0
        self._new_work = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []

        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._error: ClientError | None = None
        self._state = ConnectionState.IDLE
        self._edge_index = 0
        self._stream_no = 0
        self._stream_progress = False

        self._taps = 0
        self._pending_taps = 0
        self._unacked_taps = 0
        self._batches = 0
        self._batches_sent = 0
        self._batches_resent = 0
        self._acks_accepted = 0
        self._acks_duplicate = 0
        self._acks_rejected = 0
        self._acks_retry = 0
        self._acked_taps = 0
        self._accepted_taps = 0
        self._rate_limited_taps = 0
        self._rejected_taps = 0
        self._reconnects = 0
        self._failovers = 0
        self._ack_timeouts = 0
        self._subscribe_reconnects = 0
        self._latencies: deque[float] = deque(maxlen=self.config.latency_samples)

    # -- taps and batches ---------------------------------------------------------------------------------------

    def tap(self, stream_id: str, emoji: str, n: int = 1) -> None:
        """Count ``n`` taps of ``emoji`` on ``stream_id``; they go out with the next batch.

        Raises ValueError for a malformed stream id or emoji or an ``n`` that is not an int >= 1, RuntimeError
        after ``close()``.
        """
        if type(n) is not int or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if self._closed:
            raise RuntimeError("tap() on a closed ReactionClient")
        counts = self._pending.get(stream_id)
        if counts is None:
            if not STREAM_ID_RE.fullmatch(stream_id):
                raise ValueError(f"stream id must be 1..128 chars of [A-Za-z0-9._:-], got {stream_id!r}")
            counts = self._pending[stream_id] = {}
        count = counts.get(emoji)
        if count is None:
            if not EMOJI_RE.fullmatch(emoji):
                raise ValueError(f"emoji must be 1..32 chars of [a-z0-9_], got {emoji!r}")
            counts[emoji] = n
        else:
            counts[emoji] = count + n
        self._taps += n
        self._pending_taps += n

    def tick(self) -> int:
        """Close pending taps into numbered batches, as many as the unacked buffer has room for.

        The ticker calls this every ``batch_interval_s``; tests may call it directly. Returns how many batches
        were made. A stream's taps become several batches only when they exceed ``max_entries_per_batch``
        emojis or ``max_count_per_entry`` taps of one emoji.
        """
        if not self._pending:
            return 0
        room = self.config.max_unacked_batches - len(self._unacked)
        if room <= 0:
            return 0
        made = 0
        now_ms = self._clock.wall_ms()
        max_entries = self.config.max_entries_per_batch
        max_count = self.config.max_count_per_entry
        for stream_id in list(self._pending):
            counts = self._pending[stream_id]
            while counts and made < room:
                self._append(stream_id, _cut_batch(counts, max_entries, max_count), now_ms)
                made += 1
            if not counts:
                del self._pending[stream_id]
            if made >= room:
                break
        if made:
            self._new_work.set()
        return made

    def _append(self, stream_id: str, entries: list[tuple[str, int]], now_ms: int) -> None:
        seq = self._last_seq + 1
        taps = 0
        counts = []
        for emoji, count in entries:
            counts.append(common_pb2.ReactionCount(emoji=emoji, count=count))
            taps += count
        msg = ingest_pb2.ClientBatch(
            session_id=self.session_id,
            viewer_id=self.config.viewer_id,
            seq=seq,
            stream_id=stream_id,
            counts=counts,
            client_time_ms=now_ms,
        )
        self._unacked[seq] = _Unacked(msg, taps)
        self._last_seq = seq
        self._batches += 1
        self._pending_taps -= taps
        self._unacked_taps += taps

    def unacked_batches(self) -> list[ingest_pb2.ClientBatch]:
        """The batches awaiting an ack, in seq order (a copy; for tests and debugging)."""
        return [u.msg for u in self._unacked.values()]

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the batch ticker and the connection loop (idempotent). The loop connects when there is
        something to send. Ticks fall at start + k * batch_interval_s of the client's Clock."""
        self._ensure_started()
        await asyncio.sleep(0)  # lets the ticker take its first deadline from now

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("ReactionClient is closed")
        if self._tasks:
            return
        for coro in (self._tick_loop(), self._connection_loop()):
            task = asyncio.create_task(coro)
            task.add_done_callback(self._task_done)
            self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("reaction client task failed", exc_info=exc)
        if self._error is None:
            self._fail(ClientError(grpc.StatusCode.INTERNAL, f"client task failed: {exc!r}", "<client>"))

    async def flush(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - Clock seconds, not loop time
        """Close the pending taps into batches and wait until every batch is acked (ACCEPTED, DUPLICATE or
        REJECTED).

        ``timeout`` is in the client's Clock seconds. Raises TimeoutError when batches remain unacked after it,
        ClientError if the session failed, RuntimeError if the client is closed.
        """
        self._ensure_started()
        deadline = self._clock.monotonic() + timeout
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise RuntimeError("ReactionClient closed during flush()")
            self.tick()
            if not self._pending and not self._unacked:
                return
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"flush: {len(self._unacked)} batches unacked, {self._pending_taps} taps pending after {timeout} s"
                )
            await self._wait_changed(remaining)

    async def close(self) -> None:
        """Stop sending and receiving. Does not flush: unacked batches and pending taps are abandoned (they stay
        visible in ``statistics()``); call ``flush()`` first to deliver them."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._state = ConnectionState.CLOSED
        self._notify_changed()
        if self._channel_factory is None:
            for channel in self._channels.values():
                await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> ReactionClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def set_token(self, token: str | None) -> None:
        """Use ``token`` for every call started from now on (e.g. after a refresh)."""
        self._token = token

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    @property
    def error(self) -> ClientError | None:
        """The fatal error that ended the session, if any."""
        return self._error

    def statistics(self) -> ClientStatistics:
        """A snapshot of the counters."""
        return ClientStatistics(
            state=self._state,
            edge=self.config.edges[self._edge_index],
            taps=self._taps,
            pending_taps=self._pending_taps,
            unacked_batches=len(self._unacked),
            unacked_taps=self._unacked_taps,
            batches=self._batches,
            batches_sent=self._batches_sent,
            batches_resent=self._batches_resent,
            acks_accepted=self._acks_accepted,
            acks_duplicate=self._acks_duplicate,
            acks_rejected=self._acks_rejected,
            acks_retry=self._acks_retry,
            acked_taps=self._acked_taps,
            accepted_taps=self._accepted_taps,
            rate_limited_taps=self._rate_limited_taps,
            rejected_taps=self._rejected_taps,
            streams_opened=self._stream_no,
            reconnects=self._reconnects,
            failovers=self._failovers,
            ack_timeouts=self._ack_timeouts,
            subscribe_reconnects=self._subscribe_reconnects,
            ack_latencies_s=tuple(self._latencies),
            error=str(self._error) if self._error is not None else None,
        )

    # -- the ingest connection ----------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.config.batch_interval_s
        while True:
            await self._clock.sleep(interval)
            self.tick()

    async def _connection_loop(self) -> None:
        cfg = self.config
        n = len(cfg.edges)
        failures = 0
        unreachable_streak = 0
        while True:
            while not self._unacked:
                self._state = ConnectionState.IDLE
                self._new_work.clear()
                await self._new_work.wait()
            address = cfg.edges[self._edge_index]
            self._state = ConnectionState.CONNECTING
            channel = self._channel(address)
            delay = 0.0
            if not await _wait_ready(channel, self._clock, cfg.connect_timeout_s):
                unreachable_streak += 1
                if n > 1:
                    self._edge_index = (self._edge_index + 1) % n
                    self._failovers += 1
                    log.warning("edge %s unreachable; failing over to %s", address, cfg.edges[self._edge_index])
                if unreachable_streak % n == 0:
                    failures += 1
                    delay = self._backoff(failures)
            else:
                unreachable_streak = 0
                if self._stream_no > 0:
                    self._reconnects += 1
                outcome = await self._run_stream(channel, address)
                if self._stream_progress:
                    failures = 0
                if isinstance(outcome, _Fatal):
                    self._fail(outcome.error)
                    return
                if isinstance(outcome, _RetryAfter):
                    delay = outcome.seconds + self._rng.uniform(0.0, cfg.backoff_initial_s)
                else:
                    failures += 1
                    delay = self._backoff(failures)
                    log.info("ingest stream to %s ended (%s); reconnecting in %.3f s", address, outcome.reason, delay)
            if delay > 0:
                self._state = ConnectionState.WAITING
                await self._clock.sleep(delay)

    async def _run_stream(self, channel: Any, address: str) -> _Outcome:
        self._stream_no += 1
        stream_no = self._stream_no
        self._stream_progress = False
        self._state = ConnectionState.STREAMING
        call = ingest_pb2_grpc.IngestStub(channel).Stream(metadata=self._metadata())
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
        seq = next(iter(self._unacked), self._last_seq + 1)
        clock = self._clock
        while True:
            while seq > self._last_seq:
                self._new_work.clear()
                await self._new_work.wait()
            batch = self._unacked.get(seq)
            seq += 1
            if batch is None:  # acked while waiting to be resent
                continue
            if batch.sends:
                self._batches_resent += 1
            batch.sends += 1
            batch.sent_at = clock.monotonic()
            batch.stream_no = stream_no
            self._batches_sent += 1
            try:
                await call.write(batch.msg)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return  # the reader sees the call's status

    async def _read_loop(self, call: Any, address: str) -> _Outcome:
        try:
            while True:
                ack = await call.read()
                if ack is grpc.aio.EOF:
                    return _Dropped("edge ended the stream")
                retry_after = self._apply_ack(ack)
                if retry_after is not None:
                    return _RetryAfter(retry_after)
                self._stream_progress = True
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in FATAL_CODES:
                return _Fatal(ClientError(code, exc.details() or "", address))
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                retry_after_s = _retry_after_s(exc.trailing_metadata())
                if retry_after_s is not None:
                    return _RetryAfter(retry_after_s)
            return _Dropped(f"{code.name}: {exc.details()}")

    async def _watch_acks(self, stream_no: int) -> _Outcome:
        timeout = self.config.ack_timeout_s
        while True:
            oldest = next(iter(self._unacked.values()), None)
            wait = timeout
            if oldest is not None and oldest.stream_no == stream_no:
                age = self._clock.monotonic() - oldest.sent_at
                if age >= timeout:
                    self._ack_timeouts += 1
                    return _Dropped(f"no ack for seq {oldest.msg.seq} within {timeout} s")
                wait = timeout - age
            await self._clock.sleep(wait)

    def _apply_ack(self, ack: ingest_pb2.BatchAck) -> float | None:
        """Applies one ack; returns seconds to wait before resending if the edge asked for a retry."""
        batch = self._unacked.get(ack.seq)
        if batch is None:
            return None  # an ack of a batch already settled by an earlier send
        outcome = ack.outcome
        if outcome == _RETRY or outcome not in (_ACCEPTED, _DUPLICATE, _REJECTED):
            self._acks_retry += 1
            return ack.retry_after_ms / 1000.0
        del self._unacked[ack.seq]
        self._unacked_taps -= batch.taps
        if outcome == _REJECTED:
            self._acks_rejected += 1
            self._rejected_taps += batch.taps
            log.warning(
                "batch %d of stream %s rejected (%s): %s",
                ack.seq,
                batch.msg.stream_id,
                ingest_pb2.BatchAck.RejectReason.Name(ack.reject_reason),
                ack.detail,
            )
        else:
            self._acked_taps += batch.taps
            self._latencies.append(self._clock.monotonic() - batch.sent_at)
            if outcome == _ACCEPTED:
                self._acks_accepted += 1
                self._accepted_taps += ack.accepted_taps
                self._rate_limited_taps += ack.rate_limited_taps
            else:
                self._acks_duplicate += 1
        if self._on_ack is not None:
            try:
                self._on_ack(batch.msg, ack)
            except Exception:
                log.exception("on_ack callback failed")
        self._notify_changed()
        return None

    def _fail(self, error: ClientError) -> None:
        self._error = error
        self._state = ConnectionState.FAILED
        log.error("reaction client stopped: %s", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                log.exception("on_error callback failed")
        self._notify_changed()

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.config.backoff_initial_s, self.config.backoff_max_s, self._rng)

    def _notify_changed(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _wait_changed(self, within_s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        timer = asyncio.ensure_future(self._clock.sleep(within_s))
        try:
            await asyncio.wait((fut, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            fut.cancel()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),) if self._token else ()

    def _channel(self, address: str) -> Any:
        channel = self._channels.get(address)
        if channel is None:
            if self._closed:
                raise RuntimeError("ReactionClient is closed")
            if self._channel_factory is not None:
                channel = self._channel_factory(address)
            else:
                options = (
                    ("grpc.initial_reconnect_backoff_ms", int(self.config.backoff_initial_s * 1000)),
                    ("grpc.max_reconnect_backoff_ms", int(self.config.backoff_max_s * 1000)),
                )
                if self._credentials is not None:
                    channel = grpc.aio.secure_channel(address, self._credentials, options=options)
                else:
                    channel = grpc.aio.insecure_channel(address, options=options)
            self._channels[address] = channel
        return channel

    # -- live frames --------------------------------------------------------------------------------------------

    async def subscribe(
        self,
        stream_id: str,
        *,
        broadcaster_addresses: Sequence[str],
        resume: tuple[int, int] | None = None,
    ) -> AsyncIterator[broadcast_pb2.Frame]:
        """Yield the frames of ``stream_id``, reconnecting (backoff, failover in order) with ``resume`` set to the
        last frame's (epoch, seq) after a disconnect.

        A SNAPSHOT may arrive at any time (first frame, or the broadcaster no longer buffers the resume point);
        it replaces what is displayed. Ends when the broadcaster closes the stream after a ``drained`` frame, or
        when the client is closed.
        Raises ClientError on a status in ``FATAL_CODES``.
        """
        if not STREAM_ID_RE.fullmatch(stream_id):
            raise ValueError(f"stream id must be 1..128 chars of [A-Za-z0-9._:-], got {stream_id!r}")
        addresses = (broadcaster_addresses,) if isinstance(broadcaster_addresses, str) else tuple(broadcaster_addresses)
        if not addresses:
            raise ValueError("broadcaster_addresses must name at least one broadcaster")
        cfg = self.config
        last = resume
        index = 0
        failures = 0
        unreachable_streak = 0
        for attempt in itertools.count():
            if self._closed:
                return
            address = addresses[index]
            channel = self._channel(address)
            if attempt > 0:
                self._subscribe_reconnects += 1
            if not await _wait_ready(channel, self._clock, cfg.connect_timeout_s):
                unreachable_streak += 1
                index = (index + 1) % len(addresses)
                delay = 0.0
                if unreachable_streak % len(addresses) == 0:
                    failures += 1
                    delay = self._backoff(failures)
                if delay > 0:
                    await self._clock.sleep(delay)
                continue
            unreachable_streak = 0
            request = broadcast_pb2.SubscribeRequest(stream_id=stream_id)
            if last is not None:
                request.resume.epoch, request.resume.seq = last
            call = broadcast_pb2_grpc.BroadcastStub(channel).Subscribe(request, metadata=self._metadata())
            retry_after_s: float | None = None
            drained = False
            try:
                while True:
                    frame = await call.read()
                    if frame is grpc.aio.EOF:
                        break
                    failures = 0
                    last = (frame.epoch, frame.seq)
                    drained = frame.drained
                    yield frame
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.closed and task is not None and not task.cancelling():
                    return  # close() closed the channel under this call
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL_CODES:
                    raise ClientError(exc.code(), exc.details() or "", address) from None
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    retry_after_s = _retry_after_s(exc.trailing_metadata())
                log.info("subscription to %s ended (%s); reconnecting", address, exc.code().name)
            finally:
                call.cancel()
            if drained:
                return
            failures += 1
            delay = self._backoff(failures)
            if retry_after_s is not None:
                delay = retry_after_s + self._rng.uniform(0.0, cfg.backoff_initial_s)
            if delay > 0 and not self.closed:
                await self._clock.sleep(delay)


async def subscribe(
    stream_id: str,
    *,
    broadcaster_addresses: Sequence[str],
    resume: tuple[int, int] | None = None,
    token: str | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[broadcast_pb2.Frame]:
    """Frames of ``stream_id`` for a reader that does not tap (dashboards, ``reactmesh watch``).

    Same reconnect, resume and failover behaviour as ``ReactionClient.subscribe``.
    """
    reader = ReactionClient(list(broadcaster_addresses), viewer_id="subscriber", token=token, clock=clock)
    try:
        async for frame in reader.subscribe(stream_id, broadcaster_addresses=broadcaster_addresses, resume=resume):
            yield frame
    finally:
        await reader.close()


class LiveView:
    """What a viewer displays for one stream: SNAPSHOT frames replace it, DELTA frames add to it.

    A DELTA whose (epoch, seq) is not after the last applied frame of the same epoch is ignored, so replays
    never count twice.
    """

    def __init__(self) -> None:
        self._totals: dict[str, int] = {}
        self._polls: dict[str, polls_pb2.Poll] = {}
        self.epoch = 0
        self.seq = 0
        self.drained = False
        self.frames_applied = 0

    @property
    def totals(self) -> Mapping[str, int]:
        """Emoji -> count shown (read-only view)."""
        return MappingProxyType(self._totals)

    @property
    def polls(self) -> Mapping[str, polls_pb2.Poll]:
        """Poll id -> latest state of the stream's polls (read-only view)."""
        return MappingProxyType(self._polls)

    def apply(self, frame: broadcast_pb2.Frame) -> bool:
        """Apply one frame; returns False if it was ignored (a replayed DELTA or an unknown kind)."""
        if frame.kind == broadcast_pb2.Frame.SNAPSHOT:
            self._totals = {c.emoji: c.count for c in frame.counts}
            self._polls = {p.poll_id: p for p in frame.polls}
        elif frame.kind == broadcast_pb2.Frame.DELTA:
            if self.frames_applied and frame.epoch == self.epoch and frame.seq <= self.seq:
                return False
            totals = self._totals
            for c in frame.counts:
                totals[c.emoji] = totals.get(c.emoji, 0) + c.count
            for p in frame.polls:
                self._polls[p.poll_id] = p
        else:
            return False
        self.epoch = frame.epoch
        self.seq = frame.seq
        self.drained = self.drained or frame.drained
        self.frames_applied += 1
        return True


def _cut_batch(counts: dict[str, int], max_entries: int, max_count: int) -> list[tuple[str, int]]:
    """Removes one batch's entries from ``counts`` (in place): at most ``max_entries`` emojis, each at most
    ``max_count`` taps; what exceeds stays in ``counts`` for the next batch."""
    entries = list(itertools.islice(counts.items(), max_entries))
    for i, (emoji, count) in enumerate(entries):
        if count > max_count:
            counts[emoji] = count - max_count
            entries[i] = (emoji, max_count)
        else:
            del counts[emoji]
    return entries


def _retry_after_s(metadata: Any) -> float | None:
    if not metadata:
        return None
    for key, value in metadata:
        if key == RETRY_AFTER_KEY:
            try:
                return max(0, int(value)) / 1000.0
            except ValueError:
                return None
    return None


async def _wait_ready(channel: Any, clock: Clock, within_s: float) -> bool:
    """True once ``channel`` is READY; False if it fails to connect or ``within_s`` clock seconds pass."""
    state = channel.get_state(try_to_connect=True)
    if state == grpc.ChannelConnectivity.READY:
        return True
    timer = asyncio.ensure_future(clock.sleep(within_s))
    try:
        while True:
            if state == grpc.ChannelConnectivity.READY:
                return True
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                return False
            change = asyncio.ensure_future(channel.wait_for_state_change(state))
            done, _ = await asyncio.wait((change, timer), return_when=asyncio.FIRST_COMPLETED)
            if change not in done:
                change.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await change
                return False
            state = channel.get_state(try_to_connect=True)
    finally:
        timer.cancel()
