"""The seeds' alternative design as a baseline: a Redis Lua script per client batch.

``RedisServer`` starts Debian's ``redis-server`` on a free loopback port with a temporary directory and
stops it afterwards. ``SCRIPT`` is the per-batch logic of the Redis design: if the batch's seq is above the
session's watermark, set the watermark and HINCRBY each emoji's count into the stream's totals hash and its
per-second window hash; else do nothing (a duplicate).

``run_entries`` feeds pre-encoded ``EVALSHA`` commands (RESP bytes built before timing, as our side gets
pre-built protobuf bytes) over one socket, pipelined: the commands of one EdgeBatch are written in one send,
and the next EdgeBatch is written before the replies of the previous one are read (two in flight), so Redis
is never waiting on the client's round trip. The ``redis`` Python package is used only for setup (SCRIPT
LOAD, INFO); it and ``redis-server`` are optional: without them the baseline is skipped with a note.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reactmesh.bench.procs import free_port, optional_module

SCRIPT = """
local seq = tonumber(ARGV[2])
local wm = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if seq <= wm then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1])
end
return 1
"""

Entry = tuple[bytes, int, str, int, Sequence[tuple[str, int]]]
"""(session_id, seq, stream_id, accepted_at_ms, ((emoji, count), ...)); the window is accepted_at_ms // 1000."""


def available() -> str | None:
    """None if the baseline can run, else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server not found (apt-get install -y redis-server)"
    if optional_module("redis") is None:
        return "the redis Python package is not installed (pip install redis)"
    return None


class RedisServer:
    """A throwaway redis-server on 127.0.0.1; ``persistence`` is "none" or an appendfsync policy."""

    def __init__(self, persistence: str = "none") -> None:
        if persistence not in ("none", "everysec", "always"):
            raise ValueError(f"persistence must be none, everysec or always, got {persistence!r}")
        self.persistence = persistence
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self._dir = tempfile.TemporaryDirectory(prefix="reactmesh-redis-")
        self.port = free_port()
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name]
        args += ["--save", "", "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]
        if self.persistence == "none":
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", self.persistence]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._dir is not None:
            self._dir.cleanup()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def client(self) -> Any:
        redis = optional_module("redis")
        return redis.Redis(host="127.0.0.1", port=self.port)


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def encode_batches(sha: str, batches: Iterable[Sequence[Entry]]) -> list[tuple[bytes, int]]:
    """Each EdgeBatch's entries as one buffer of EVALSHA commands, with the command count."""
    out = []
    sha_b = _bulk(sha.encode())
    for batch in batches:
        parts = []
        for session, seq, stream, accepted_at_ms, counts in batch:
            stream_b = stream.encode()
            args = [
                b"",
                sha_b,
                _bulk(b"3"),
                _bulk(b"wm"),
                _bulk(b"t:" + stream_b),
                _bulk(b"w:" + stream_b + b":" + str(accepted_at_ms // 1000).encode()),
                _bulk(session),
                _bulk(str(seq).encode()),
            ]
            for emoji, n in counts:
                args.append(_bulk(emoji.encode()))
                args.append(_bulk(str(n).encode()))
            parts.append(b"*%d\r\n$7\r\nEVALSHA\r\n" % len(args))
            parts.extend(args[1:])
        out.append((b"".join(parts), len(batch)))
    return out


def load_script(server: RedisServer) -> str:
    client = server.client()
    try:
        sha: str = client.script_load(SCRIPT)
        return sha
    finally:
        client.close()


def run_entries(server: RedisServer, encoded: Sequence[tuple[bytes, int]]) -> tuple[float, int]:
    """Send every buffer, two in flight; return (seconds, entries applied per the replies)."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    applied = 0
    pending: list[int] = []
    buf = b""

    def read_replies(n: int) -> None:
        nonlocal buf, applied
        # Every reply is one line (":1", ":0" or an error), so replies are counted by CRLFs.
        while buf.count(b"\r\n") < n:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            buf += chunk
        cut = 0
        for _ in range(n):
            cut = buf.index(b"\r\n", cut) + 2
        mine, buf = buf[:cut], buf[cut:]
        if b"-" in mine:
            raise RuntimeError(f"redis error: {mine[mine.index(b'-') :][:200].decode(errors='replace')}")
        applied += mine.count(b":1\r\n")

    started = time.perf_counter()
    try:
        for data, n in encoded:
            sock.sendall(data)
            pending.append(n)
            if len(pending) >= 2:
                read_replies(pending.pop(0))
        while pending:
            read_replies(pending.pop(0))
    finally:
        seconds = time.perf_counter() - started
        with contextlib.suppress(OSError):
            sock.close()
    return seconds, applied


def totals(server: RedisServer, streams: Iterable[str]) -> dict[str, int]:
    """stream/emoji -> count, from the totals hashes (to check the baseline counted the same)."""
    client = server.client()
    try:
        out = {}
        for stream in streams:
            for emoji, n in client.hgetall(f"t:{stream}").items():
                out[f"{stream}/{emoji.decode()}"] = int(n)
        return out
    finally:
        client.close()


def data_dir_size(server: RedisServer) -> int:
    if server._dir is None:
        return 0
    return sum(p.stat().st_size for p in Path(server._dir.name).rglob("*") if p.is_file())
