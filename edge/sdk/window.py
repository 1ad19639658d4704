"""SendWindow: how many batches one client keeps unacknowledged, adapted to its ack latency.

A client that keeps sending while its acks slow down only lengthens the queue in front of the edge, and every
batch in it waits. The window is additive-increase, multiplicative-decrease (TCP Reno's congestion window,
RFC 5681) on the latency of acks from the batch's last send:

- an ack slower than ``target_s`` halves the window (at most once per round trip: the acks of batches sent
  before the cut carry the old queue), never below one batch;
- the window starts at ``INITIAL_WINDOW`` batches and, until its first cut, grows by one per ack within the
  target while it was full (doubling per round trip: TCP's slow start); after a cut, by ``1 / size`` per such
  ack (one batch per round trip); never past ``max_batches`` (``ClientConfig.max_unacked_batches``). A flood
  of clients that connect at once so does not put their whole buffers in front of the edge before the first
  ack can tell them it is slow;
- a RETRY from the edge shrinks it to at most ``RETRY_WINDOW``, so a client coming back after a retry-after
  does not resend its whole backlog at once.

The ledger closes batches only while there is room in the window, so taps made meanwhile coalesce into the
next batch: a smaller window loses nothing, it only makes fewer, bigger batches.
"""

from __future__ import annotations

__all__ = ["INITIAL_WINDOW", "RETRY_WINDOW", "SendWindow"]

INITIAL_WINDOW = 4
"""A new client's window, in batches (at 4 batches a second a viewer rarely has more than one unacked)."""

RETRY_WINDOW = 4
"""After a RETRY a client has at most this many batches unacked, growing again by one per round trip."""


class SendWindow:
    """The window of one client; ``on_ack`` per settled batch, ``on_retry`` per RETRY."""

    def __init__(self, max_batches: int, target_s: float) -> None:
        self._max = max_batches
        self._target = target_s
        self.size = float(min(max_batches, INITIAL_WINDOW))
        self._slow_start = True
        self._cut_at = float("-inf")
        self.cuts = 0

    @property
    def batches(self) -> int:
        """Batches the client may have unacked now."""
        return max(1, int(self.size))

    def on_ack(self, latency_s: float, now: float, unacked: int) -> None:
        """An ack arrived ``latency_s`` after its batch's last send, at monotonic ``now``, with ``unacked``
        batches (this one included) outstanding before it."""
        if latency_s > self._target:
            if now - self._cut_at >= latency_s and self.size > 1:
                self.size = max(1.0, self.size / 2)
                self._cut_at = now
                self._slow_start = False
                self.cuts += 1
        elif unacked >= self.batches and self.size < self._max:
            self.size = min(float(self._max), self.size + (1.0 if self._slow_start else 1 / self.size))

    def on_retry(self, now: float) -> None:
        if self.size > RETRY_WINDOW:
            self.size = float(RETRY_WINDOW)
        self._cut_at = now
        self._slow_start = False
