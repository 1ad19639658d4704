"""The Ingest service: client batches in, acks out once the aggregator has committed them.

``Edge`` owns one edge's parts (config, clock, authenticator, validator, rate limiter, hash ring, one
Forwarder per aggregator) and decides each batch in ``admit``:
auth -> validate -> muted/drained -> in-flight bound and shedding -> rate limit -> forward -> ack.
``IngestServicer`` speaks gRPC on top of it.

Guarantees:

- Every ClientBatch gets exactly one BatchAck, or its call ends with a status; an ack is ACCEPTED or
  DUPLICATE only after the aggregator reported the entry APPLIED or DUPLICATE (i.e. committed), except a batch
  with no tap granted and a shadow-muted one (below), acked at once and never forwarded.
- A session's batches reach its aggregator in the order the client sent them. Nothing the edge does
  makes a client resend a batch after a later seq of its session was applied: no later batch of a stream is
  forwarded after one refused for a resend. Refusals that need a resend end the whole stream (overload,
  shutdown, expired token), except shedding, which keeps it open (below).
- Load shedding (``edge.admission``): past the adaptive in-flight limit, steered by the commit lag, a batch
  is answered RETRY with a ``retry_after_ms`` hint before anything of it is forwarded or counted. The stream
  stays open: every later seq the client had already written is answered RETRY too, at once and unforwarded,
  until the refused seq arrives again, which is admitted afresh. The client so resends on the stream it
  has rather than opening a new one: a server short of CPU picks up new streams slowly (seconds under
  overload, see BENCHMARKS.md "Issue 16, item 3"), while it reads an open one at once.
- With auth enabled (``edge.auth``) a call opens only with a valid token (UNAUTHENTICATED otherwise); a batch of
  a viewer other than the token's subject ends the stream with PERMISSION_DENIED (counted as a BAD_VIEWER_ID
  rejection), and one sent after the token expired with UNAUTHENTICATED.
- One session per stream: a batch of another session ends the stream with INVALID_ARGUMENT. Garbage
  bytes end the call with INVALID_ARGUMENT; nothing a client sends can crash the server.
- Memory is bounded: ``max_inflight_entries`` forwarded-but-unacked batches edge-wide (beyond it a
  stream ends with RESOURCE_EXHAUSTED and ``retry-after-ms``), ``max_viewers_tracked`` rate buckets.

Anti-abuse (``edge.abuse``): every batch past the rate limiter feeds the AbuseDetector with the taps it offered
and the taps granted; newly raised flags go to the flag listeners (``add_flag_listener``) and into
``statistics()``. With ``abuse.shadow_mute``, a batch of a flagged viewer (an active local flag, or one the
``set_flag_lookup`` function reports, e.g. learned from other edges) is acked as it would have been (ACCEPTED, the
taps the rate limit grants) but is neither forwarded nor counted: ``taps_shadow_muted`` counts its taps. The ack
comes at once rather than after a commit, as for a batch the rate limit drops entirely.

Every batch outcome passes one seam, ``Edge._emit``, which updates ``statistics()`` and calls the
registered EdgeListeners (e.g. Prometheus counters), so handlers carry no metrics code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from reactmesh.edge.abuse import AbuseDetector, Flag
from reactmesh.edge.admission import Admission
from reactmesh.edge.auth import Action, Authorizer, Principal
from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.errors import (
    ServiceError,
    abort_with,
    internal,
    invalid_argument,
    resource_exhausted,
    unavailable,
)
from reactmesh.edge.forwarder import ChannelFactory, Forwarder, insecure_channel
from reactmesh.edge.limits import SESSION_ID_BYTES
from reactmesh.edge.moderation import EdgeModeration
from reactmesh.edge.ratelimit import RateLimiter
from reactmesh.edge.ring import HashRing
from reactmesh.edge.validation import Validator
from reactmesh.merge.clock import Clock, SystemClock
from reactmesh.v1 import aggregator_pb2, common_pb2, ingest_pb2

log = logging.getLogger(__name__)

SERVICE_NAME = "reactmesh.v1.Ingest"

BatchAck = ingest_pb2.BatchAck
Outcome = BatchAck.Outcome
Reason = BatchAck.RejectReason
AckOrError = BatchAck | ServiceError
Deliver = Callable[[AckOrError], None]
FlagListener = Callable[[Flag], None]
"""Told about every newly raised flag, on the event loop; must be cheap and must not raise."""
FlagLookup = Callable[[str], bool]
"""True for a viewer flagged elsewhere (e.g. by another edge); called per batch with shadow_mute on."""

_APPLIED = aggregator_pb2.EdgeAck.APPLIED
_DUPLICATE = aggregator_pb2.EdgeAck.DUPLICATE
_RETRY = BatchAck.RETRY


class EdgeListener(Protocol):
    """Told about every batch decision: ``outcome`` (a BatchAck.Outcome; RETRY for a batch refused by
    overload), ``taps`` counted, ``rate_limited`` taps dropped, ``reason`` for REJECTED.

    Called synchronously on the event loop for every batch: it must be cheap and must not raise."""

    def __call__(self, outcome: int, taps: int, rate_limited: int, reason: int) -> None: ...


def _trim(counts: Any, granted: int) -> list[common_pb2.ReactionCount]:
    """The first ``granted`` taps of ``counts``, in batch order; every count stays >= 1."""
    kept: list[common_pb2.ReactionCount] = []
    for entry in counts:
        if granted <= 0:
            break
        take = entry.count if entry.count <= granted else granted
        kept.append(common_pb2.ReactionCount(emoji=entry.emoji, count=take))
        granted -= take
    return kept


class Edge:
    """One edge: admission, routing and forwarding of client batches, and its admin hooks."""

    SERVICE_NAME = "reactmesh.v1.Ingest"

    def __init__(
        self,
        config: EdgeConfig,
        clock: Clock | None = None,
        *,
        channel_factory: ChannelFactory = insecure_channel,
        listeners: tuple[EdgeListener, ...] = (),
        authorizer: Authorizer | None = None,
        node_id: str = "edge",
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.clock: Clock = clock or SystemClock()
        self.listeners: list[EdgeListener] = list(listeners)
        self._auth = authorizer or Authorizer.disabled(self.clock)
        self._validator = Validator.from_config(config)
        self._limiter = RateLimiter(self.clock, config.rate_per_s, config.burst, config.max_viewers_tracked)
        self._ring = HashRing(config.aggregators, config.ring_vnodes)
        self._forwarders = {
            address: Forwarder(
                address,
                self.clock,
                flush_interval_s=config.flush_interval_ms / 1000,
                max_entries=config.max_entries_per_edge_batch,
                backoff_s=config.reconnect_backoff_ms / 1000,
                backoff_max_s=config.reconnect_backoff_max_ms / 1000,
                channel_factory=channel_factory,
            )
            for address in config.aggregators
        }
        # Mutes, drains and flags of the whole mesh, replicated here by gossip (see ``edge.moderation``).
        self.moderation = EdgeModeration(node_id, self.clock)
        self._accepting = False
        self._started = False
        self._inflight = 0
        self._unwritten = 0  # acks of forwarded batches queued for their client, not yet written
        self._max_inflight = config.max_inflight_entries
        self.admission = Admission(
            config.shedding,
            self.clock,
            max_inflight=config.max_inflight_entries,
            retry_floor_ms=config.retry_after_ms,
            oldest_age=self._oldest_age,
        )
        self._outcomes = [0] * (max(Outcome.values()) + 1)
        self._rejects = [0] * (max(Reason.values()) + 1)
        self._taps_accepted = 0
        self._taps_rate_limited = 0
        self._abuse = AbuseDetector(config.abuse, self.clock, config.rate_per_s)
        self._detect = config.abuse.enabled
        self._shadow_mute = config.abuse.shadow_mute
        self._flag_listeners: list[FlagListener] = []
        self._flag_lookup: FlagLookup | None = None
        self._taps_shadow_muted = 0
        self._batches_shadow_muted = 0
        self._retry_followups = 0
        self._flag_ttl_s = config.abuse.flag_ttl_s
        self.add_flag_listener(self._record_flag)

    # -- lifecycle --

    async def start(self) -> None:
        """Connect to the aggregators and start accepting batches."""
        if self._started:
            raise RuntimeError("edge already started")
        self._started = True
        for forwarder in self._forwarders.values():
            forwarder.start()
        self.admission.start_probe()
        self._accepting = True

    async def close(self, grace_s: float = 5.0) -> None:
        """Stop accepting batches, flush, and wait up to ``grace_s`` for in-flight acks; batches still
        unacked then end their streams with UNAVAILABLE (clients resend them elsewhere)."""
        self._accepting = False
        self.admission.stop_probe()
        await asyncio.gather(*(f.close(grace_s) for f in self._forwarders.values()))

    def flush(self) -> None:
        """Send every queued entry now rather than at the end of the flush interval."""
        for forwarder in self._forwarders.values():
            forwarder.flush()

    def add_to_server(self, server: Any) -> IngestServicer:
        """Register the Ingest service on a grpc.aio server; returns the servicer."""
        servicer = IngestServicer(self)
        servicer.add_to_server(server)
        return servicer

    # -- admin hooks --

    # This edge alone; the Admin service of any broadcaster does the same for every edge of every region.

    def mute(self, viewer_id: str, until_ms: int) -> None:
        """Reject ``viewer_id``'s batches here (VIEWER_MUTED) until wall time ``until_ms``."""
        self.moderation.mute(viewer_id, until_ms)

    def unmute(self, viewer_id: str) -> None:
        self.moderation.unmute(viewer_id)

    def drain(self, stream_id: str, until_ms: int | None = None) -> None:
        """Reject further batches for ``stream_id`` here (STREAM_DRAINED), until ``until_ms`` (default a day)."""
        now = self.clock.wall_ms()
        self.moderation.drain(stream_id, until_ms if until_ms is not None else now + 86_400_000)

    def undrain(self, stream_id: str) -> None:
        self.moderation.undrain(stream_id)

    def _record_flag(self, flag: Flag) -> None:
        self.moderation.raise_flag(flag, self._flag_ttl_s)

    # -- admission --

    def authenticate(self, metadata: Any) -> Principal | None:
        """The caller's principal, None when auth is disabled; raises UNAUTHENTICATED, or PERMISSION_DENIED for
        a token that may not ingest at all."""
        return self._auth.check(metadata, Action.INGEST)

    def route(self, session_id: bytes) -> Forwarder:
        return self._forwarders[self._ring.lookup(session_id)]

    def admit(self, batch: ingest_pb2.ClientBatch, principal: Principal | None, deliver: Deliver) -> BatchAck | None:
        """Decide ``batch``: returns its ack now, or None after forwarding it, in which case ``deliver``
        is later called exactly once with the ack, or with a ServiceError ending the caller's call.

        Raises ServiceError (RESOURCE_EXHAUSTED, UNAVAILABLE, UNAUTHENTICATED for a token that expired since
        the call opened, PERMISSION_DENIED for a batch of a viewer other than the token's subject) when the
        caller must end its call without forwarding this batch or any later one."""
        if not self._accepting:
            raise unavailable("edge is not accepting batches (starting or shutting down)")
        seq = batch.seq
        if principal is not None:
            expired = self._auth.still_valid(principal)
            if expired is not None:
                raise expired
            try:
                self._auth.authorize(principal, Action.INGEST, viewer_id=batch.viewer_id)
            except ServiceError:
                self._emit(BatchAck.REJECTED, 0, 0, BatchAck.BAD_VIEWER_ID)
                raise
        rejection = self._validator.check(batch)
        if rejection is not None:
            return self._reject(seq, *rejection)
        moderation = self.moderation
        if len(moderation.mutes) or len(moderation.drains):
            now = self.clock.wall_ms()
            if moderation.muted(batch.viewer_id, now):
                return self._reject(seq, BatchAck.VIEWER_MUTED, "viewer is muted")
            if moderation.drained(batch.stream_id, now):
                return self._reject(seq, BatchAck.STREAM_DRAINED, "stream is drained")
        if self._inflight >= self._max_inflight:
            self._emit(BatchAck.RETRY, 0, 0, BatchAck.REJECT_REASON_UNSPECIFIED)
            raise resource_exhausted("edge overloaded; resend unacknowledged batches later", self.config.retry_after_ms)
        retry_ms = self.admission.admit(self._inflight + self._unwritten)
        if retry_ms is not None:
            return self._retry(seq, retry_ms)
        counts = batch.counts
        taps = sum(entry.count for entry in counts)
        granted = self._limiter.take(batch.viewer_id, taps)
        if self._screen(batch, granted):
            self._emit(BatchAck.ACCEPTED, 0, taps - granted, BatchAck.REJECT_REASON_UNSPECIFIED)
            self._taps_shadow_muted += granted
            self._batches_shadow_muted += 1
            return BatchAck(seq=seq, outcome=BatchAck.ACCEPTED, accepted_taps=granted, rate_limited_taps=taps - granted)
        if granted == 0:
            self._emit(BatchAck.ACCEPTED, 0, taps, BatchAck.REJECT_REASON_UNSPECIFIED)
            return BatchAck(seq=seq, outcome=BatchAck.ACCEPTED, accepted_taps=0, rate_limited_taps=taps)
        forwarded = counts if granted == taps else _trim(counts, granted)
        future = self.route(batch.session_id).submit(
            batch.session_id, seq, batch.stream_id, forwarded, self.clock.wall_ms()
        )
        self._inflight += 1
        future.add_done_callback(partial(self._resolved, seq, granted, taps - granted, deliver, self.clock.monotonic()))
        return None

    def _retry(self, seq: int, retry_after_ms: int) -> BatchAck:
        """The RETRY ack of a batch refused by shedding."""
        self._emit(BatchAck.RETRY, 0, 0, BatchAck.REJECT_REASON_UNSPECIFIED)
        return BatchAck(
            seq=seq,
            outcome=BatchAck.RETRY,
            retry_after_ms=retry_after_ms,
            detail="edge at capacity; resend this and later batches after retry_after_ms",
        )

    def refuse_after(self, seq: int, refused: int, retry_after_ms: int) -> BatchAck:
        """The RETRY ack of a batch written after ``refused`` on a stream, before the client resent ``refused``:
        answered at once, never forwarded (applying it would make the resent ``refused`` a DUPLICATE)."""
        self._emit(BatchAck.RETRY, 0, 0, BatchAck.REJECT_REASON_UNSPECIFIED)
        self._retry_followups += 1
        return BatchAck(
            seq=seq,
            outcome=BatchAck.RETRY,
            retry_after_ms=retry_after_ms,
            detail=f"seq {refused} of this stream was refused; resend from it after retry_after_ms",
        )

    def ack_queued(self) -> None:
        """An answer to a forwarded batch was queued for its client's call (it stays in flight until written)."""
        self._unwritten += 1

    def ack_written(self, wait_s: float | None) -> None:
        """A queued answer was written after ``wait_s`` in its queue, or dropped with its call (None)."""
        self._unwritten -= 1
        if wait_s is not None:
            self.admission.observe_write_wait(wait_s)

    def _oldest_age(self, now: float) -> float:
        return max((f.oldest_age(now) for f in self._forwarders.values()), default=0.0)

    def _screen(self, batch: ingest_pb2.ClientBatch, granted: int) -> bool:
        """Feed the abuse detector; True when the batch is to be shadow-muted."""
        viewer = batch.viewer_id
        if self._detect:
            counts = {entry.emoji: entry.count for entry in batch.counts}
            for flag in self._abuse.observe(viewer, batch.session_id, batch.stream_id, counts, granted):
                for listener in self._flag_listeners:
                    try:
                        listener(flag)
                    except Exception:
                        log.exception("flag listener %r failed", listener)
        if not self._shadow_mute:
            return False
        if self._abuse.flagged(viewer) or self.moderation.flagged(viewer, self.clock.wall_ms()):
            return True
        if self._flag_lookup is None:
            return False
        try:
            return self._flag_lookup(viewer)
        except Exception:
            log.exception("flag lookup %r failed", self._flag_lookup)
            return False

    def _resolved(
        self, seq: int, granted: int, limited: int, deliver: Deliver, sent_at: float, future: asyncio.Future[int]
    ) -> None:
        self._inflight -= 1
        self.admission.completed(self.clock.monotonic() - sent_at)
        if future.cancelled() or future.exception() is not None:
            deliver(unavailable("edge shut down before the aggregator acknowledged; resend unacknowledged batches"))
            return
        outcome = future.result()
        if outcome == _APPLIED:
            self._emit(BatchAck.ACCEPTED, granted, limited, BatchAck.REJECT_REASON_UNSPECIFIED)
            ack = BatchAck(seq=seq, outcome=BatchAck.ACCEPTED, accepted_taps=granted, rate_limited_taps=limited)
        elif outcome == _DUPLICATE:
            self._emit(BatchAck.DUPLICATE, 0, 0, BatchAck.REJECT_REASON_UNSPECIFIED)
            ack = BatchAck(seq=seq, outcome=BatchAck.DUPLICATE)
        else:
            ack = self._reject(seq, BatchAck.REJECT_REASON_UNSPECIFIED, "refused by the aggregator")
        deliver(ack)

    def _reject(self, seq: int, reason: Reason, detail: str) -> BatchAck:
        self._emit(BatchAck.REJECTED, 0, 0, reason)
        return BatchAck(seq=seq, outcome=BatchAck.REJECTED, reject_reason=reason, detail=detail)

    def _emit(self, outcome: int, taps: int, rate_limited: int, reason: int) -> None:
        """The one seam every batch outcome passes through."""
        self._outcomes[outcome] += 1
        if outcome == BatchAck.REJECTED:
            self._rejects[reason] += 1
        self._taps_accepted += taps
        self._taps_rate_limited += rate_limited
        for listener in self.listeners:
            try:
                listener(outcome, taps, rate_limited, reason)
            except Exception:
                log.exception("edge listener %r failed", listener)

    # -- anti-abuse --

    def add_flag_listener(self, listener: FlagListener) -> None:
        """Call ``listener`` with every abuse flag this edge raises from now on."""
        self._flag_listeners.append(listener)

    def set_flag_lookup(self, lookup: FlagLookup | None) -> None:
        """Also treat viewers ``lookup`` reports as flagged when shadow-muting (None: local flags only)."""
        self._flag_lookup = lookup

    def flagged(self, viewer_id: str) -> bool:
        """True while ``viewer_id`` has an active flag raised by this edge."""
        return self._abuse.flagged(viewer_id)

    def active_flags(self) -> list[Flag]:
        """This edge's active flags, oldest first."""
        return self._abuse.active_flags()

    # -- introspection --

    @property
    def inflight(self) -> int:
        return self._inflight

    def statistics(self) -> dict[str, int]:
        """A snapshot of this edge's counters."""
        stats = {
            "batches_accepted": self._outcomes[BatchAck.ACCEPTED],
            "batches_duplicate": self._outcomes[BatchAck.DUPLICATE],
            "batches_rejected": self._outcomes[BatchAck.REJECTED],
            "batches_overloaded": self._outcomes[BatchAck.RETRY],
            "batches_retry_followups": self._retry_followups,
            "taps_accepted": self._taps_accepted,
            "taps_rate_limited": self._taps_rate_limited,
            "inflight": self._inflight,
            "acks_unwritten": self._unwritten,
            "viewers_tracked": len(self._limiter),
            "viewers_muted": len(self.moderation.mutes),
            "streams_drained": len(self.moderation.drains),
            "viewers_flagged_mesh": len(self.moderation.flags),
        }
        for reason in Reason.values():
            if reason != BatchAck.REJECT_REASON_UNSPECIFIED:
                stats[f"batches_rejected_{Reason.Name(reason).lower()}"] = self._rejects[reason]
        stats["batches_rejected_refused"] = self._rejects[BatchAck.REJECT_REASON_UNSPECIFIED]
        totals: dict[str, int] = {}
        for forwarder in self._forwarders.values():
            for key, value in forwarder.statistics().items():
                totals[f"forward_{key}"] = totals.get(f"forward_{key}", 0) + value
        stats.update(totals)
        stats.update(self.admission.statistics())
        stats["batches_shadow_muted"] = self._batches_shadow_muted
        stats["taps_shadow_muted"] = self._taps_shadow_muted
        stats.update((f"abuse_{key}", value) for key, value in self._abuse.statistics().items())
        return stats

    def forwarder_statistics(self) -> dict[str, dict[str, int]]:
        """Per aggregator address, that forwarder's counters."""
        return {address: f.statistics() for address, f in self._forwarders.items()}


def _parse_batch(data: bytes) -> ingest_pb2.ClientBatch | None:
    """Request deserializer that turns undecodable bytes into None instead of an UNKNOWN status."""
    try:
        return ingest_pb2.ClientBatch.FromString(data)
    except DecodeError:
        return None


@dataclass(slots=True)
class _StreamState:
    out: asyncio.Queue[AckOrError | tuple[BatchAck, float] | None]
    closed: bool = False  # the call's writer has ended: answers delivered now are dropped
    outstanding: int = 0
    eof: bool = False
    failed: bool = False
    session_id: bytes | None = None
    quickest_ms: int | None = None  # smallest (read time - client_time_ms) of the stream's batches so far
    top_seq: int = 0  # the highest seq read on the stream: a seq at or below it is a resend


class IngestServicer:
    """grpc.aio servicer of reactmesh.v1.Ingest over an Edge."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    def add_to_server(self, server: Any) -> None:
        """Register on ``server`` with a deserializer that maps garbage to INVALID_ARGUMENT."""
        handlers = {
            "Stream": grpc.stream_stream_rpc_method_handler(
                self.Stream, request_deserializer=_parse_batch, response_serializer=BatchAck.SerializeToString
            ),
            "Send": grpc.unary_unary_rpc_method_handler(
                self.Send, request_deserializer=_parse_batch, response_serializer=BatchAck.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        server.add_registered_method_handlers(SERVICE_NAME, handlers)

    async def Stream(self, request_iterator: Any, context: Any) -> None:
        try:
            principal = self._edge.authenticate(context.invocation_metadata())
        except ServiceError as error:
            await abort_with(context, error)
            return
        state = _StreamState(asyncio.Queue())
        reader = asyncio.ensure_future(self._read(request_iterator, principal, state))
        edge = self._edge
        monotonic = edge.clock.monotonic
        try:
            while True:
                item = await state.out.get()
                if item is None:
                    return
                if isinstance(item, ServiceError):
                    await abort_with(context, item)
                    return
                if isinstance(item, tuple):  # a forwarded batch's answer, queued at ``queued_at``
                    ack, queued_at = item
                    await context.write(ack)
                    edge.ack_written(monotonic() - queued_at)
                else:
                    await context.write(item)
        finally:
            state.closed = True
            reader.cancel()
            while not state.out.empty():
                if isinstance(state.out.get_nowait(), tuple):
                    edge.ack_written(None)

    async def _read(self, requests: Any, principal: Principal | None, state: _StreamState) -> None:
        """Admit the stream's batches in order; stops at the first error, queued for the writer."""
        out = state.out

        edge = self._edge
        monotonic = edge.clock.monotonic

        def deliver(item: AckOrError) -> None:
            state.outstanding -= 1
            if isinstance(item, ServiceError):
                state.failed = True
                out.put_nowait(item)
            elif not state.closed:
                edge.ack_queued()
                out.put_nowait((item, monotonic()))
            if state.eof and state.outstanding == 0:
                out.put_nowait(None)

        admit = edge.admit
        clock = edge.clock
        admission = edge.admission
        refused = 0  # the seq shedding refused on this stream, until the client sends it again
        refused_ms = 0
        try:
            async for batch in requests:
                if state.failed:
                    return
                if batch is None:
                    raise invalid_argument("undecodable ClientBatch")
                seq = batch.seq
                if seq > state.top_seq:
                    state.top_seq = seq
                    if batch.client_time_ms:
                        # A resend carries its first close time, so only first sends measure the inbound wait.
                        took = clock.wall_ms() - batch.client_time_ms
                        if state.quickest_ms is None or took < state.quickest_ms:
                            state.quickest_ms = took
                        admission.observe_inbound((took - state.quickest_ms) / 1000)
                if state.session_id is None:
                    if len(batch.session_id) == SESSION_ID_BYTES:
                        state.session_id = batch.session_id
                elif batch.session_id != state.session_id:
                    raise invalid_argument("one session per stream: batch of another session_id")
                if refused:
                    if seq > refused:  # written before the client read the RETRY: refused with it
                        out.put_nowait(edge.refuse_after(seq, refused, refused_ms))
                        continue
                    if seq == refused:
                        refused = 0
                ack = admit(batch, principal, deliver)
                if ack is None:
                    state.outstanding += 1
                else:
                    out.put_nowait(ack)
                    if ack.outcome == _RETRY:
                        refused, refused_ms = seq, ack.retry_after_ms
        except ServiceError as error:
            state.failed = True
            out.put_nowait(error)
            return
        except DecodeError:
            state.failed = True
            out.put_nowait(invalid_argument("undecodable ClientBatch"))
            return
        except Exception:
            log.exception("Ingest.Stream reader failed")
            state.failed = True
            out.put_nowait(internal("internal error"))
            return
        state.eof = True
        if state.outstanding == 0:
            out.put_nowait(None)

    async def Send(self, request: ingest_pb2.ClientBatch | None, context: Any) -> BatchAck | None:
        if request is None:
            await abort_with(context, invalid_argument("undecodable ClientBatch"))
            return None
        result: asyncio.Future[AckOrError] = asyncio.get_running_loop().create_future()

        def deliver(item: AckOrError) -> None:
            if not result.done():
                result.set_result(item)

        try:
            principal = self._edge.authenticate(context.invocation_metadata())
            ack = self._edge.admit(request, principal, deliver)
            item = ack if ack is not None else await result
            if isinstance(item, ServiceError):
                raise item
        except ServiceError as error:
            await abort_with(context, error)
            return None
        return item
