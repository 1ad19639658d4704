"""reactmesh.edge.sdk: the viewer-side SDK for sending taps to an edge and watching live counts.

Usage::

    from reactmesh.edge.sdk import LiveView, ReactionClient

    async def watch_and_tap() -> None:
        async with ReactionClient(["edge-eu:7443", "edge-us:7443"], viewer_id="u42", token=token) as client:
            client.tap("cup-final", "heart")          # cheap and synchronous; call it from UI handlers
            client.tap("cup-final", "like", n=3)
            await client.flush(timeout=5.0)           # every tap so far is acked (or TimeoutError)

            view = LiveView()
            async for frame in client.subscribe("cup-final", broadcaster_addresses=["bcast-eu:7444"]):
                view.apply(frame)
                render(view.totals)

Layout: ``client`` (ReactionClient, the session that ties the parts together, and ClientStatistics),
``batches`` (the ledger: pending taps, numbered batches, ack bookkeeping), ``ingest`` (the ordered send loop
over ``Ingest.Stream`` with failover; ConnectionState), ``subscription`` (following ``Broadcast.Subscribe``
with resume, and ``subscribe()`` for readers that do not tap; not called ``subscribe`` so that it does not
shadow that function), ``live_view`` (LiveView), ``channels`` (the shared gRPC channels and token),
``config`` (ClientConfig), ``errors`` (ClientError, FATAL_CODES). The SDK imports no server module: only
``edge.limits``, ``edge.backoff``, ``edge.errors``, ``merge.clock`` and the stubs.

What it guarantees, given an edge that honours ingest.proto:

- **No tap is lost or counted twice.** Every ``batch_interval_s`` (on the client's Clock) the taps of each
  stream become one ``ClientBatch`` numbered 1, 2, 3... per session (one sequence across all streams). A batch
  stays in an ordered buffer until acked. The client speaks over one ``Ingest.Stream`` at a time and always
  writes batches in seq order; after any reconnect it first resends every unacked batch, oldest first. The
  edge applies a batch iff its seq exceeds the session's watermark, so a resent batch that was already counted
  is acked DUPLICATE and not counted again, and one that was not is counted now.
- **Taps are never dropped silently.** When the buffer holds ``max_unacked_batches``, or the send window
  (``window``: it halves when acks take longer than ``ack_latency_target_s`` and shrinks after a RETRY),
  ``tap()`` keeps counting into the pending counts and new batches wait for room (backpressure is per-batch,
  not per-tap: a slow edge gets fewer, bigger batches). A REJECTED
  batch is dropped on purpose (resending cannot help); it is counted in ``statistics().rejected_taps`` and
  passed to ``on_ack``. The counts conserve: ``taps == pending_taps + unacked_taps + acked_taps +
  rejected_taps``.
- **Retries are polite.** Reconnects use capped exponential backoff with full jitter. A RETRY ack makes the
  client stop writing and wait at least ``retry_after_ms`` (plus jitter), then resend in order from the refused
  batch on the same stream; a RESOURCE_EXHAUSTED status with ``retry-after-ms`` makes it wait as long, then
  reconnect to the same edge and resend in order. UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT and
  UNIMPLEMENTED end the session: ``flush()`` raises ``ClientError`` and ``on_error`` is called; the client does
  not loop.
- **Region failover.** ``edges`` are tried in order; the client stays on the first reachable one and moves to the
  next only when its edge cannot be connected to. Within one region every edge shares the aggregators'
  watermarks, so failover there keeps exactly-once. Across regions it does only as far as watermarks have
  travelled with gossip: a batch counted in the old region whose ack was lost may be counted again in the new
  one (see docs/ARCHITECTURE.md).
- **Stalled edges are left.** If the oldest batch sent on the current stream has no ack after ``ack_timeout_s``,
  the stream is dropped and everything unacked is resent on a new one.

Caveat the edge must honour: once it answers RETRY for a session's batch it must not apply a later batch of
that session on the same stream until the refused one is sent again (answer RETRY to those, or end the
stream); otherwise the later seq raises the watermark and the resent batch becomes a DUPLICATE. The client
stops writing on the first RETRY, reads on, and resends only after the edge has answered every batch it wrote
after the refused one.

``subscribe()`` follows ``Broadcast.Subscribe``: it remembers the last frame's (epoch, seq) and, after a
disconnect, reconnects with ``resume`` set, so the broadcaster replays what was missed or sends a SNAPSHOT.
``LiveView`` turns frames into what a viewer displays.

Every SDK module logs under ``reactmesh.edge.sdk``.
"""

from reactmesh.edge.sdk.channels import ChannelFactory
from reactmesh.edge.sdk.client import AckCallback, ClientStatistics, ErrorCallback, ReactionClient
from reactmesh.edge.sdk.config import ClientConfig
from reactmesh.edge.sdk.errors import FATAL_CODES, ClientError
from reactmesh.edge.sdk.ingest import ConnectionState
from reactmesh.edge.sdk.live_view import LiveView
from reactmesh.edge.sdk.subscription import subscribe

__all__ = [
    "FATAL_CODES",
    "AckCallback",
    "ChannelFactory",
    "ClientConfig",
    "ClientError",
    "ClientStatistics",
    "ConnectionState",
    "ErrorCallback",
    "LiveView",
    "ReactionClient",
    "subscribe",
]
