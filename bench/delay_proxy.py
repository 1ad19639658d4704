"""A TCP proxy that adds a fixed one-way delay per direction and can cut and heal its link.

This kernel has no netem, so link delay for gossip tests and benchmarks comes from here. While the link is
up, bytes are forwarded in order, none lost or duplicated, and each chunk is written no earlier than
``delay_s`` (client -> target) or ``reverse_delay_s`` (target -> client) after it was read: a one-way delay,
not a bandwidth limit (chunks in flight overlap). EOF is forwarded as a half-close.

``cut("reset")`` resets every open connection on both sides (RST, via SO_LINGER 0) and resets each new one as
soon as it is accepted, until ``heal()``: peers see a refused, broken link at once. ``cut("stall")`` models a
link that loses every packet: nothing is forwarded in either direction and new connections wait, while bytes
already read are held and bytes not yet read stay in the kernel buffers; ``heal()`` resumes every connection
where it stopped at once (a real outage adds TCP's retransmission backoff on top; the network namespace
harness in tests/support/netns.py, cut by "drop", measures that).

    async with DelayProxy(DelayProxyConfig(target="127.0.0.1:7103", delay_s=0.04)) as proxy:
        ...  # dial proxy.address instead of the target
        proxy.cut()
        proxy.heal()

Command line (by hand): ``python -m reactmesh.bench.delay_proxy --target HOST:PORT --delay-ms 40``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reactmesh.merge.errors import ConfigError

CutMode = Literal["reset", "stall"]
_CHUNK = 64 * 1024
_QUEUED_CHUNKS = 64


def _split(field: str, address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(field, '"host:port"', address)
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class DelayProxyConfig:
    """Where the proxy listens and forwards, and the delay of each direction in seconds."""

    target: str
    delay_s: float = 0.0
    reverse_delay_s: float | None = None  # None: the same as delay_s
    listen: str = "127.0.0.1:0"

    def __post_init__(self) -> None:
        _split("target", self.target)
        _split("listen", self.listen)
        if not 0 <= self.delay_s <= 60:
            raise ConfigError("delay_s", "seconds in [0, 60]", self.delay_s)
        if self.reverse_delay_s is not None and not 0 <= self.reverse_delay_s <= 60:
            raise ConfigError("reverse_delay_s", "seconds in [0, 60] or None", self.reverse_delay_s)

    @property
    def back_delay_s(self) -> float:
        return self.delay_s if self.reverse_delay_s is None else self.reverse_delay_s


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    bytes_forward: int = 0
    bytes_back: int = 0


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, dropping anything unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for t in self.tasks:
            t.cancel()
        _reset(self.client)
        _reset(self.upstream)


class DelayProxy:
    """One listening socket forwarding every accepted connection to ``config.target``."""

    def __init__(self, config: DelayProxyConfig) -> None:
        self.config = config
        self.stats = ProxyStats()
        self._open = asyncio.Event()
        self._open.set()
        self._mode: CutMode | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.StreamWriter] = set()  # accepted while stalled
        self._closing = False
        self.address = ""

    async def start(self) -> None:
        host, port = _split("listen", self.config.listen)
        self._server = await asyncio.start_server(self._accept, host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = f"{host}:{bound[1]}"

    async def close(self) -> None:
        """Stop listening and reset every connection; returns when every handler has ended."""
        if self._server is not None:
            self._server.close()
        self._closing = True
        self.cut("reset")
        self._open.set()  # lets handlers that waited while stalled see _closing and end
        # Handlers end by themselves once their connections are reset (cancelling them would make
        # asyncio.streams log the cancellation as an error).
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> DelayProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_cut(self) -> bool:
        return self._mode is not None

    def cut(self, mode: CutMode = "reset") -> None:
        """Stop forwarding: reset every connection now and every new one, or stall them all (see module doc)."""
        if mode not in ("reset", "stall"):
            raise ValueError(f'mode must be "reset" or "stall", got {mode!r}')
        self._mode = mode
        self._open.clear()
        if mode == "reset":
            for conn in list(self._connections):
                self.stats.resets += 1
                conn.reset()
            self._connections.clear()
            for writer in list(self._waiting):
                self.stats.resets += 1
                _reset(writer)
            self._waiting.clear()

    def _resetting(self) -> bool:
        return self._mode == "reset" or self._closing

    def heal(self) -> None:
        if self._closing:
            return
        self._mode = None
        self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if self._resetting():
            self.stats.resets += 1
            _reset(writer)
            return
        if not self._open.is_set():
            self._waiting.add(writer)
            await self._open.wait()
            if writer not in self._waiting:  # reset by cut("reset") while it waited
                return
            self._waiting.discard(writer)
        host, port = _split("target", self.config.target)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            _reset(writer)
            return
        if self._resetting():  # cut while connecting
            _reset(writer)
            _reset(up_writer)
            return
        conn = _Connection(writer, up_writer)
        forward = asyncio.create_task(self._pump(reader, up_writer, self.config.delay_s, forward=True))
        back = asyncio.create_task(self._pump(up_reader, writer, self.config.back_delay_s, forward=False))
        conn.tasks = [forward, back]
        self._connections.add(conn)
        try:
            results = await asyncio.gather(forward, back, return_exceptions=True)
            if any(isinstance(r, BaseException) for r in results):
                conn.reset()
            else:
                writer.close()
                up_writer.close()
        finally:
            self._connections.discard(conn)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float, *, forward: bool) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes | OSError]] = asyncio.Queue(_QUEUED_CHUNKS)

        async def read() -> None:
            while True:
                await self._open.wait()
                try:
                    data = await src.read(_CHUNK)
                except OSError as exc:  # passed on in order, so the writer resets both sides
                    await queue.put((loop.time(), exc))
                    return
                await queue.put((loop.time() + delay, data))
                if not data:
                    return

        reader = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()
                if isinstance(data, OSError):
                    raise data
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()
                if forward:
                    self.stats.bytes_forward += len(data)
                else:
                    self.stats.bytes_back += len(data)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reactmesh.bench.delay_proxy", description="TCP proxy with a fixed one-way delay."
    )
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, client -> target")
    parser.add_argument("--reverse-delay-ms", type=float, default=None, help="target -> client (default: same)")
    args = parser.parse_args(argv)
    back = None if args.reverse_delay_ms is None else args.reverse_delay_ms / 1000
    config = DelayProxyConfig(args.target, args.delay_ms / 1000, back, args.listen)
    async with DelayProxy(config) as proxy:
        print(f"delay_proxy {proxy.address} -> {config.target}", flush=True)
        await asyncio.Event().wait()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(_main(None)))
    except KeyboardInterrupt:
        sys.exit(130)
