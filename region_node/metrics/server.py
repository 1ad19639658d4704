"""``GET /metrics`` over HTTP/1.1 on the node's event loop, so collectors never race another thread."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)


class MetricsServer:
    """A minimal HTTP/1.1 server of ``GET /metrics`` on the event loop (one request per connection)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.address = ""

    async def start(self, listen: str) -> str:
        """Listen on "host:port" (port 0 picks one); return the bound "host:port"."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        self._server = await asyncio.start_server(self._handle, host, int(port), limit=16 * 1024)
        bound = int(self._server.sockets[0].getsockname()[1])
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.address = f"[{shown}]:{bound}" if ":" in shown else f"{shown}:{bound}"
        return self.address

    async def close(self) -> None:
        """Stop listening and end connections in progress."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, headers, body, send_body = self._respond(head)
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(body)}"]
            writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1"))
            if send_body:
                writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[str, list[tuple[str, str]], bytes, bool]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return "400 Bad Request", [("Content-Type", "text/plain")], b"bad request line\n", True
        method, target, _ = parts
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        text = [("Content-Type", "text/plain; charset=utf-8")]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", [*text, ("Allow", "GET, HEAD")], b"GET /metrics\n", True
        path = target.split("?", 1)[0]
        if path == "/":
            return "200 OK", text, b"reactmesh: metrics at /metrics\n", method == "GET"
        if path != "/metrics":
            return "404 Not Found", text, b"not found; metrics are at /metrics\n", method == "GET"
        encoder, content_type = choose_encoder(fields.get("accept", ""))
        try:
            body = encoder(self._registry)
        except Exception:
            log.exception("collecting metrics failed")
            return "500 Internal Server Error", text, b"collecting metrics failed\n", method == "GET"
        headers = [("Content-Type", content_type)]
        if "gzip" in fields.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return "200 OK", headers, body, method == "GET"
