"""The SDK's batch ledger: taps counted into pending counts, cut into numbered ClientBatches, kept until acked.

A ``Ledger`` belongs to one session. It numbers batches 1, 2, 3... across all streams, keeps every batch it
cut in an ordered buffer (insertion order is seq order) until an ack settles it, and never holds more than
``max_unacked_batches``: beyond that taps keep counting into the pending counts and wait for room. A batch
holds at most ``max_entries_per_batch`` emojis of one stream, each at most ``max_count_per_entry`` taps.

Taps conserve: ``taps == pending_taps + unacked_taps + acked_taps + rejected_taps`` after every call. The
ledger does no I/O and knows no clock of its own; ``ingest.ReactionClient`` drives it.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque

from reactmesh.edge.limits import EMOJI_FORM, EMOJI_RE, STREAM_ID_FORM, STREAM_ID_RE
from reactmesh.edge.sdk.config import ClientConfig
from reactmesh.v1 import common_pb2, ingest_pb2

__all__ = ["Ledger", "Unacked", "cut_batch"]

log = logging.getLogger(__name__)

_ACCEPTED = ingest_pb2.BatchAck.ACCEPTED
_DUPLICATE = ingest_pb2.BatchAck.DUPLICATE
_REJECTED = ingest_pb2.BatchAck.REJECTED
_RETRY = ingest_pb2.BatchAck.RETRY


class Unacked:
    """One batch awaiting its ack, with what the connection loop records about its sends."""

    __slots__ = ("msg", "sends", "sent_at", "stream_no", "taps")

    def __init__(self, msg: ingest_pb2.ClientBatch, taps: int) -> None:
        self.msg = msg
        self.taps = taps
        self.sends = 0
        self.sent_at = 0.0
        self.stream_no = 0


def cut_batch(counts: dict[str, int], max_entries: int, max_count: int) -> list[tuple[str, int]]:
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


class Ledger:
    """Pending taps and unacked batches of one session, and the counters that account for every tap."""

    def __init__(self, config: ClientConfig, session_id: bytes) -> None:
        self.config = config
        self.session_id = session_id
        self.pending: dict[str, dict[str, int]] = {}
        self.unacked: dict[int, Unacked] = {}  # insertion order is seq order
        self.last_seq = 0

        self.taps = 0
        self.pending_taps = 0
        self.unacked_taps = 0
        self.batches = 0
        self.acks_accepted = 0
        self.acks_duplicate = 0
        self.acks_rejected = 0
        self.acks_retry = 0
        self.acked_taps = 0
        self.accepted_taps = 0
        self.rate_limited_taps = 0
        self.rejected_taps = 0
        self.latencies: deque[float] = deque(maxlen=config.latency_samples)
        self.last_latency_s = 0.0  # of the batch settled last: from its last send to its ack

    def add(self, stream_id: str, emoji: str, n: int) -> None:
        """Count ``n`` taps (the caller checks it is an int >= 1) of ``emoji`` on ``stream_id``.

        Raises ValueError for a malformed stream id or emoji.
        """
        counts = self.pending.get(stream_id)
        if counts is None:
            if not STREAM_ID_RE.fullmatch(stream_id):
                raise ValueError(f"stream id must be {STREAM_ID_FORM}, got {stream_id!r}")
            counts = self.pending[stream_id] = {}
        count = counts.get(emoji)
        if count is None:
            if not EMOJI_RE.fullmatch(emoji):
                raise ValueError(f"emoji must be {EMOJI_FORM}, got {emoji!r}")
            counts[emoji] = n
        else:
            counts[emoji] = count + n
        self.taps += n
        self.pending_taps += n

    def cut(self, now_ms: int, window: int | None = None) -> int:
        """Close pending taps into numbered batches stamped ``now_ms``, as many as the unacked buffer (at most
        ``window`` batches, when given) has room for; returns how many were made."""
        if not self.pending:
            return 0
        limit = self.config.max_unacked_batches if window is None else min(window, self.config.max_unacked_batches)
        room = limit - len(self.unacked)
        if room <= 0:
            return 0
        made = 0
        max_entries = self.config.max_entries_per_batch
        max_count = self.config.max_count_per_entry
        for stream_id in list(self.pending):
            counts = self.pending[stream_id]
            while counts and made < room:
                self._append(stream_id, cut_batch(counts, max_entries, max_count), now_ms)
                made += 1
            if not counts:
                del self.pending[stream_id]
            if made >= room:
                break
        return made

    def _append(self, stream_id: str, entries: list[tuple[str, int]], now_ms: int) -> None:
        seq = self.last_seq + 1
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
        self.unacked[seq] = Unacked(msg, taps)
        self.last_seq = seq
        self.batches += 1
        self.pending_taps -= taps
        self.unacked_taps += taps

    def settle(self, ack: ingest_pb2.BatchAck, now: float) -> Unacked | float | None:
        """Apply one ack at monotonic time ``now``.

        Returns the batch it settled (ACCEPTED, DUPLICATE or REJECTED: it leaves the buffer); or, for RETRY or
        an outcome this SDK does not know, the seconds the edge asked to wait before resending (the batch
        stays); or None for an ack of a batch already settled by an earlier send.
        """
        batch = self.unacked.get(ack.seq)
        if batch is None:
            return None
        outcome = ack.outcome
        if outcome == _RETRY or outcome not in (_ACCEPTED, _DUPLICATE, _REJECTED):
            self.acks_retry += 1
            return ack.retry_after_ms / 1000.0
        del self.unacked[ack.seq]
        self.unacked_taps -= batch.taps
        if outcome == _REJECTED:
            self.acks_rejected += 1
            self.rejected_taps += batch.taps
            log.warning(
                "batch %d of stream %s rejected (%s): %s",
                ack.seq,
                batch.msg.stream_id,
                ingest_pb2.BatchAck.RejectReason.Name(ack.reject_reason),
                ack.detail,
            )
        else:
            self.acked_taps += batch.taps
            self.last_latency_s = now - batch.sent_at
            self.latencies.append(self.last_latency_s)
            if outcome == _ACCEPTED:
                self.acks_accepted += 1
                self.accepted_taps += ack.accepted_taps
                self.rate_limited_taps += ack.rate_limited_taps
            else:
                self.acks_duplicate += 1
        return batch
