"""A TCP proxy for loopback benchmarks: adds a fixed one-way delay to every byte, and can cut the link.

``DelayProxy(target, delay_s)`` listens on 127.0.0.1 and forwards each accepted connection to ``target``.
Bytes read in either direction are written to the other side ``delay_s`` after they were read, in order (a
link with that one-way latency and no bandwidth limit; a round trip costs ``2 * delay_s``).

``cut()`` is a partition: every open connection is reset and new ones are closed as soon as they are
accepted, so both ends see the link fail (as after a timeout) and must reconnect; ``heal()`` lets
connections through again. ``python -m reactmesh.bench.delay_proxy LISTEN_PORT=HOST:PORT ... --delay-ms D`` runs
proxies in their own process (SIGUSR1 cuts, SIGUSR2 heals, SIGTERM stops).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Sequence


class DelayProxy:
    """One listening port forwarding to ``target`` ("host:port") with ``delay_s`` added each way."""

    def __init__(self, target: str, delay_s: float = 0.0, listen_port: int = 0) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        host, _, port = target.rpartition(":")
        self.target_host = host
        self.target_port = int(port)
        self.delay_s = delay_s
        self.listen_port = listen_port
        self.cut_now = False
        self.connections = 0
        self.bytes_forwarded = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        self.listen_port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def cut(self) -> None:
        """Partition: reset every connection and refuse new ones until ``heal()``."""
        self.cut_now = True
        self._reset_all()

    def heal(self) -> None:
        self.cut_now = False

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except Exception:
            pass
        finally:
            self._pipes.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay_s`` after it was read; then reset both ends."""
        loop = asyncio.get_running_loop()
        delay = self.delay_s
        if delay <= 0:
            while data := await reader.read(65536):
                writer.write(data)
                self.bytes_forwarded += len(data)
                await writer.drain()
            raise ConnectionResetError("peer closed")
        queue: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        done = False

        async def deliver() -> None:
            while True:
                while not queue:
                    if done:
                        return
                    arrived.clear()
                    await arrived.wait()
                due, data = queue.popleft()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                self.bytes_forwarded += len(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                queue.append((loop.time() + delay, data))
                arrived.set()
                if sender.done():
                    break
            done = True
            arrived.set()
            await sender
        finally:
            sender.cancel()
        raise ConnectionResetError("peer closed")


async def serve(routes: Sequence[tuple[int, str]], delay_s: float) -> None:
    proxies = [DelayProxy(target, delay_s, port) for port, target in routes]
    for p in proxies:
        await p.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def cut() -> None:
        for p in proxies:
            p.cut()

    def heal() -> None:
        for p in proxies:
            p.heal()

    loop.add_signal_handler(signal.SIGUSR1, cut)
    loop.add_signal_handler(signal.SIGUSR2, heal)
    print(" ".join(p.address for p in proxies), flush=True)
    await stop.wait()
    for p in proxies:
        await p.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.delay_proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("routes", nargs="+", help="LISTEN_PORT=HOST:PORT")
    p.add_argument("--delay-ms", type=float, default=0.0, help="added one-way delay")
    args = p.parse_args(argv)
    routes = []
    for r in args.routes:
        port, _, target = r.partition("=")
        routes.append((int(port), target))
    asyncio.run(serve(routes, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
