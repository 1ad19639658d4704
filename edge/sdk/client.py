"""ReactionClient: one viewer session that counts taps, sends them exactly once and follows live frames.

The client composes the SDK's parts: a ``batches.Ledger`` (pending taps, numbered batches, ack bookkeeping),
``channels.Channels`` (gRPC channels and token), an ``ingest.IngestConnection`` (the ordered send loop with
failover), a ``subscription.Subscriber`` (Broadcast frames with resume), one ``FullJitterBackoff`` shared by
both loops, and a ticker that cuts batches every ``batch_interval_s`` on the client's Clock. What that
guarantees (exactly-once counting, no silent drops, polite retries, failover) is set out in the
``reactmesh.edge.sdk`` docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import grpc

from reactmesh.edge.backoff import FullJitterBackoff
from reactmesh.edge.errors import ConfigError
from reactmesh.edge.limits import DEFAULT_MAX_COUNT_PER_ENTRY, SESSION_ID_BYTES
from reactmesh.edge.sdk.batches import Ledger, Unacked
from reactmesh.edge.sdk.channels import ChannelFactory, Channels
from reactmesh.edge.sdk.config import ClientConfig
from reactmesh.edge.sdk.errors import ClientError
from reactmesh.edge.sdk.ingest import ConnectionState, IngestConnection
from reactmesh.edge.sdk.subscription import Subscriber
from reactmesh.merge.clock import Clock, SystemClock, sleep_unless
from reactmesh.v1 import broadcast_pb2, ingest_pb2

__all__ = ["AckCallback", "ClientStatistics", "ErrorCallback", "ReactionClient"]

log = logging.getLogger(__name__)

AckCallback = Callable[[ingest_pb2.ClientBatch, ingest_pb2.BatchAck], None]
ErrorCallback = Callable[[ClientError], None]


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
    send_window: int = 0
    send_window_cuts: int = 0
    retry_pauses: int = 0  # RETRY acks that paused the stream's writer (later batches refused with them excluded)


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
        max_count_per_entry: int = DEFAULT_MAX_COUNT_PER_ENTRY,
        ack_latency_target_s: float = 0.25,
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
        self.config = cfg = ClientConfig(
            edges=tuple(edges),
            viewer_id=viewer_id,
            batch_interval_s=batch_interval_s,
            max_unacked_batches=max_unacked_batches,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            connect_timeout_s=connect_timeout_s,
            ack_timeout_s=ack_timeout_s,
            max_count_per_entry=max_count_per_entry,
            ack_latency_target_s=ack_latency_target_s,
        )
        self.session_id = os.urandom(SESSION_ID_BYTES)
        self._clock: Clock = clock if clock is not None else SystemClock()
        backoff = FullJitterBackoff(
            cfg.backoff_initial_s, cfg.backoff_max_s, rng if rng is not None else random.Random()
        )
        self._on_ack = on_ack
        self._on_error = on_error
        self._channels = Channels(
            token=token,
            credentials=credentials,
            channel_factory=channel_factory,
            backoff_initial_s=cfg.backoff_initial_s,
            backoff_max_s=cfg.backoff_max_s,
        )
        self._ledger = Ledger(cfg, self.session_id)
        self._ingest = IngestConnection(
            cfg, self._ledger, self._channels, self._clock, backoff, on_settled=self._settled, on_fatal=self._fail
        )
        self._subscriber = Subscriber(cfg, self._channels, self._clock, backoff)
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._error: ClientError | None = None

    # -- taps and batches ---------------------------------------------------------------------------------------

    def tap(self, stream_id: str, emoji: str, n: int = 1) -> None:
        """Count ``n`` taps of ``emoji`` on ``stream_id``; they go out with the next batch.

        Raises ValueError for a malformed stream id or emoji or an ``n`` that is not an int >= 1, RuntimeError
        after ``close()``.
        """
        if type(n) is not int or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if self._channels.is_closed():
            raise RuntimeError("tap() on a closed ReactionClient")
        self._ledger.add(stream_id, emoji, n)

    def tick(self) -> int:
        """Close pending taps into numbered batches, as many as the unacked buffer has room for.

        The ticker calls this every ``batch_interval_s``; tests may call it directly. Returns how many batches
        were made. A stream's taps become several batches only when they exceed ``max_entries_per_batch``
        emojis or ``max_count_per_entry`` taps of one emoji.
        """
        if not self._ledger.pending:
            return 0
        made = self._ledger.cut(self._clock.wall_ms(), self._ingest.cut_window)
        if made:
            self._ingest.wake()
        return made

    def unacked_batches(self) -> list[ingest_pb2.ClientBatch]:
        """The batches awaiting an ack, in seq order (a copy; for tests and debugging)."""
        return [u.msg for u in self._ledger.unacked.values()]

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the batch ticker and the connection loop (idempotent). The loop connects when there is
        something to send. Ticks fall at start + k * batch_interval_s of the client's Clock."""
        self._ensure_started()
        await asyncio.sleep(0)  # lets the ticker take its first deadline from now

    def _ensure_started(self) -> None:
        if self._channels.is_closed():
            raise RuntimeError("ReactionClient is closed")
        if self._tasks:
            return
        for coro in (self._tick_loop(), self._ingest.run()):
            task = asyncio.create_task(coro)
            task.add_done_callback(self._task_done)
            self._tasks.append(task)

    async def _tick_loop(self) -> None:
        interval = self.config.batch_interval_s
        while True:
            await self._clock.sleep(interval)
            self.tick()

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
        ledger = self._ledger
        deadline = self._clock.monotonic() + timeout
        while True:
            if self._error is not None:
                raise self._error
            if self._channels.is_closed():
                raise RuntimeError("ReactionClient closed during flush()")
            self.tick()
            if not ledger.pending and not ledger.unacked:
                return
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"flush: {len(ledger.unacked)} batches unacked, {ledger.pending_taps} taps pending "
                    f"after {timeout} s"
                )
            await self._wait_changed(remaining)

    async def close(self) -> None:
        """Stop sending and receiving. Does not flush: unacked batches and pending taps are abandoned (they stay
        visible in ``statistics()``); call ``flush()`` first to deliver them."""
        if self._channels.is_closed():
            return
        self._channels.mark_closed()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ingest.state = ConnectionState.CLOSED
        self._notify_changed()
        await self._channels.close()

    async def __aenter__(self) -> ReactionClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def set_token(self, token: str | None) -> None:
        """Use ``token`` for every call started from now on (e.g. after a refresh)."""
        self._channels.token = token

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._channels.is_closed()

    @property
    def error(self) -> ClientError | None:
        """The fatal error that ended the session, if any."""
        return self._error

    @property
    def last_ack_latency_s(self) -> float:
        """Seconds from the last send of the batch settled last to its ack (read it in ``on_ack``); unlike the
        batch's ``client_time_ms``, it leaves out the time the batch waited for a retry-after."""
        return self._ledger.last_latency_s

    @property
    def last_seq(self) -> int:
        """The seq of the newest batch closed (0 before the first): ``tick()``'s batches end at it."""
        return self._ledger.last_seq

    @property
    def pending_taps(self) -> int:
        """Taps counted but not yet closed into a batch (they wait for room in the send window)."""
        return self._ledger.pending_taps

    def statistics(self) -> ClientStatistics:
        """A snapshot of the counters."""
        ledger = self._ledger
        ingest = self._ingest
        return ClientStatistics(
            state=ingest.state,
            edge=self.config.edges[ingest.edge_index],
            taps=ledger.taps,
            pending_taps=ledger.pending_taps,
            unacked_batches=len(ledger.unacked),
            unacked_taps=ledger.unacked_taps,
            batches=ledger.batches,
            batches_sent=ingest.batches_sent,
            batches_resent=ingest.batches_resent,
            acks_accepted=ledger.acks_accepted,
            acks_duplicate=ledger.acks_duplicate,
            acks_rejected=ledger.acks_rejected,
            acks_retry=ledger.acks_retry,
            acked_taps=ledger.acked_taps,
            accepted_taps=ledger.accepted_taps,
            rate_limited_taps=ledger.rate_limited_taps,
            rejected_taps=ledger.rejected_taps,
            streams_opened=ingest.streams_opened,
            reconnects=ingest.reconnects,
            failovers=ingest.failovers,
            ack_timeouts=ingest.ack_timeouts,
            subscribe_reconnects=self._subscriber.reconnects,
            ack_latencies_s=tuple(ledger.latencies),
            error=str(self._error) if self._error is not None else None,
            send_window=ingest.window.batches,
            send_window_cuts=ingest.window.cuts,
            retry_pauses=ingest.retry_pauses,
        )

    # -- acks and failures --------------------------------------------------------------------------------------

    def _apply_ack(self, ack: ingest_pb2.BatchAck) -> float | None:
        """Applies one ack as the reader does; returns seconds to wait before resending if the edge asked for a
        retry."""
        return self._ingest.apply_ack(ack)

    def _settled(self, batch: Unacked, ack: ingest_pb2.BatchAck) -> None:
        if self._on_ack is not None:
            try:
                self._on_ack(batch.msg, ack)
            except Exception:
                log.exception("on_ack callback failed")
        self._notify_changed()

    def _fail(self, error: ClientError) -> None:
        self._error = error
        self._ingest.state = ConnectionState.FAILED
        log.error("reaction client stopped: %s", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                log.exception("on_error callback failed")
        self._notify_changed()

    def _notify_changed(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _wait_changed(self, within_s: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await sleep_unless(self._clock, within_s, fut)

    # -- live frames --------------------------------------------------------------------------------------------

    def subscribe(
        self,
        stream_id: str,
        *,
        broadcaster_addresses: Sequence[str],
        resume: tuple[int, int] | None = None,
    ) -> AsyncIterator[broadcast_pb2.Frame]:
        """Yield the frames of ``stream_id`` over this client's channels and token, reconnecting (backoff,
        failover in order) with ``resume`` set to the last frame's (epoch, seq) after a disconnect; see
        ``Subscriber.frames``. Ends after a ``drained`` frame or when the client is closed.

        Raises ValueError for a malformed stream id, ClientError on a status in ``FATAL_CODES``.
        """
        return self._subscriber.frames(stream_id, broadcaster_addresses=broadcaster_addresses, resume=resume)
