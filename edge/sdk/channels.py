"""The SDK's gRPC channels: one per address, opened on first use, shared by ingest and subscriptions.

``Channels`` also carries what every call of a client sends (the bearer token) and whether the client is
closed (``is_closed()`` is a method, so a loop re-reads it after every await). Channels it opened it closes;
channels from a ``channel_factory`` belong to the caller and are never closed here (the load tool shares them
between many clients). ``wait_ready`` is how both loops decide that an address is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc

from reactmesh.merge.clock import Clock

__all__ = ["ChannelFactory", "Channels", "wait_ready"]

ChannelFactory = Callable[[str], Any]


class Channels:
    """The channels, token and closed flag of one client."""

    def __init__(
        self,
        *,
        token: str | None,
        credentials: grpc.ChannelCredentials | None,
        channel_factory: ChannelFactory | None,
        backoff_initial_s: float,
        backoff_max_s: float,
    ) -> None:
        """``credentials`` selects TLS (insecure when None); the backoff settings become the channels' own
        reconnect backoff."""
        self.token = token
        self._closed = False
        self._credentials = credentials
        self._factory = channel_factory
        self._options = (
            ("grpc.initial_reconnect_backoff_ms", int(backoff_initial_s * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(backoff_max_s * 1000)),
        )
        self._channels: dict[str, Any] = {}

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata: ``authorization: Bearer <token>`` when there is a token."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def is_closed(self) -> bool:
        """True once ``mark_closed()`` has been called."""
        return self._closed

    def mark_closed(self) -> None:
        """Open no channel from now on; the owner then stops its loops and calls ``close()``."""
        self._closed = True

    def get(self, address: str) -> Any:
        """The channel to ``address``, opened now if needed. Raises RuntimeError once closed (for an address not
        yet opened)."""
        channel = self._channels.get(address)
        if channel is None:
            if self._closed:
                raise RuntimeError("ReactionClient is closed")
            if self._factory is not None:
                channel = self._factory(address)
            elif self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            else:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        """Close the channels this object opened and forget all of them (after ``mark_closed()``)."""
        if self._factory is None:
            for channel in self._channels.values():
                await channel.close()
        self._channels.clear()


async def wait_ready(channel: Any, clock: Clock, within_s: float) -> bool:
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
