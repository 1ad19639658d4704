"""Following a stream's live frames over ``Broadcast.Subscribe``, with resume, backoff and failover.

``Subscriber.frames`` remembers the last frame's (epoch, seq) and, after a disconnect, reconnects with
``resume`` set, so the broadcaster replays what was missed or sends a SNAPSHOT. Broadcasters are tried in
order: an unreachable one is skipped at once, and a full round of unreachable ones backs off (full jitter);
a stream that ends without ``drained`` backs off too, or waits the ``retry-after-ms`` a RESOURCE_EXHAUSTED
status carries. A status in ``FATAL_CODES`` raises ClientError. ``ReactionClient.subscribe`` uses the
client's channels; ``subscribe()`` is the same loop for a reader that does not tap.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Sequence

import grpc

from reactmesh.edge.backoff import FullJitterBackoff
from reactmesh.edge.limits import STREAM_ID_FORM, STREAM_ID_RE
from reactmesh.edge.sdk.channels import Channels, wait_ready
from reactmesh.edge.sdk.config import ClientConfig
from reactmesh.edge.sdk.errors import FATAL_CODES, ClientError, retry_after_s
from reactmesh.merge.clock import Clock, SystemClock
from reactmesh.v1 import broadcast_pb2, broadcast_pb2_grpc

__all__ = ["Subscriber", "subscribe"]

log = logging.getLogger(__name__)


class Subscriber:
    """Subscriptions over one client's channels; ``reconnects`` counts every attempt after a stream's first."""

    def __init__(self, config: ClientConfig, channels: Channels, clock: Clock, backoff: FullJitterBackoff) -> None:
        self._connect_timeout_s = config.connect_timeout_s
        self._channels = channels
        self._clock = clock
        self._backoff = backoff
        self.reconnects = 0

    async def frames(
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
        Raises ValueError for a malformed stream id or no address, ClientError on a status in ``FATAL_CODES``.
        """
        if not STREAM_ID_RE.fullmatch(stream_id):
            raise ValueError(f"stream id must be {STREAM_ID_FORM}, got {stream_id!r}")
        addresses = (broadcaster_addresses,) if isinstance(broadcaster_addresses, str) else tuple(broadcaster_addresses)
        if not addresses:
            raise ValueError("broadcaster_addresses must name at least one broadcaster")
        channels = self._channels
        clock = self._clock
        backoff = self._backoff
        last = resume
        index = 0
        failures = 0
        unreachable_streak = 0
        for attempt in itertools.count():
            if channels.is_closed():
                return
            address = addresses[index]
            channel = channels.get(address)
            if attempt > 0:
                self.reconnects += 1
            if not await wait_ready(channel, clock, self._connect_timeout_s):
                unreachable_streak += 1
                index = (index + 1) % len(addresses)
                delay = 0.0
                if unreachable_streak % len(addresses) == 0:
                    failures += 1
                    delay = backoff.compute(failures)
                if delay > 0:
                    await clock.sleep(delay)
                continue
            unreachable_streak = 0
            request = broadcast_pb2.SubscribeRequest(stream_id=stream_id)
            if last is not None:
                request.resume.epoch, request.resume.seq = last
            call = broadcast_pb2_grpc.BroadcastStub(channel).Subscribe(request, metadata=channels.metadata())
            wait_s: float | None = None
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
                if channels.is_closed() and task is not None and not task.cancelling():
                    return  # close() closed the channel under this call
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL_CODES:
                    raise ClientError(exc.code(), exc.details() or "", address) from None
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    wait_s = retry_after_s(exc.trailing_metadata())
                log.info("subscription to %s ended (%s); reconnecting", address, exc.code().name)
            finally:
                call.cancel()
            if drained:
                return
            failures += 1
            delay = backoff.compute(failures)
            if wait_s is not None:
                delay = backoff.after_retry_after(wait_s)
            if delay > 0 and not channels.is_closed():
                await clock.sleep(delay)


async def subscribe(
    stream_id: str,
    *,
    broadcaster_addresses: Sequence[str],
    resume: tuple[int, int] | None = None,
    token: str | None = None,
    clock: Clock | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> AsyncIterator[broadcast_pb2.Frame]:
    """Frames of ``stream_id`` for a reader that does not tap (dashboards, ``reactmesh watch``).

    Same reconnect, resume and failover behaviour as ``ReactionClient.subscribe``, with ClientConfig's default
    timings; ConfigError if ``broadcaster_addresses`` is empty. ``credentials`` selects TLS (insecure when None).
    """
    config = ClientConfig(edges=tuple(broadcaster_addresses), viewer_id="subscriber")
    channels = Channels(
        token=token,
        credentials=credentials,
        channel_factory=None,
        backoff_initial_s=config.backoff_initial_s,
        backoff_max_s=config.backoff_max_s,
    )
    backoff = FullJitterBackoff(config.backoff_initial_s, config.backoff_max_s, random.Random())
    reader = Subscriber(config, channels, clock if clock is not None else SystemClock(), backoff)
    try:
        async for frame in reader.frames(stream_id, broadcaster_addresses=broadcaster_addresses, resume=resume):
            yield frame
    finally:
        channels.mark_closed()
        await channels.close()
