"""soak: an aggregator's and a broadcaster's memory over a simulated hour at 1,000 active streams.

Per run, three fresh interpreters:

- the aggregator child: a real ``Aggregator`` (its SQLite file in a temporary directory) and its
  ``RegionGossipNode``;
- the broadcaster child: a broadcaster node's replica (``RegionState`` with polls), a real ``Broadcaster``
  and ``QueryServicer`` over it, its history store and ``WindowWriter`` (stepped once per simulated second),
  and its ``RegionGossipNode`` (the dialling side, as in a region);
- this process: it owns simulated time, plays the viewers and carries the gossip messages between the two.

Time is simulated: each child runs on a ``merge.clock.FakeClock`` that moves only when this process says so,
one simulated second per step, so an hour takes minutes. In step k:

1. The aggregator gets the client batches of second k (every stream gets ``batches_per_stream_s`` batches,
   each from one of its live sessions; ``resend_share`` of them resend the session's previous batch and must
   come back DUPLICATE), applies them with ``receive`` and commits them with ONE ``tick()``: the 10 commits
   a second of the shipped 100 ms tick are folded into one, with the whole second's batches (the windows
   and totals touched are the same; the commit count is not). Then its clock moves one second: the gossip
   session's sender polls every 10 ms of it, its digest timer fires every 15 s.
2. At the same time the broadcaster merges what the aggregator sent in step k-1, and its clock moves one
   second in ``tick_ms`` steps, ``Broadcaster.tick()`` after each (10 frames a second per active stream into
   the resume buffers; there are no subscribers, so nothing is serialized).

Gossip is the real session, ``GossipNode.run_session`` on both sides (Hello, bounded Deltas with
acknowledgements, anti-entropy digests and repairs, ``region_route``: the aggregator sends everything, the
broadcaster sends the watermarks back), over a transport whose messages this process carries: what one side
writes in step k is read by the other at the start of step k+1, a link of one simulated second. Gossip bytes
per round are the serialized ``GossipMessage`` bytes both ways in one step (the gRPC and HTTP/2 framing
around them is not counted). Every step's commit touches every stream, and a digest reaches the sender a
second or two after the receiver computed it, so every 15 s nearly every bucket differs and the sender answers
with the whole state of each one (totals and watermarks). On a real link with millisecond latency a digest
meets a differing state only when a commit falls into its flight, so the repairs here are an upper bound.

Sessions come and go: ``sessions_per_stream`` are live per stream at any time, each for a uniform
``session_min_s``..``session_max_s``, replaced by a new session when it ends, so live sessions stay constant
while sessions ever seen grow linearly. Configuration is as shipped (windows sealed out of memory after
``window_horizon_s`` = 120 s on both sides, the broadcaster writing them through to its history store in the
child's directory, as a node does; watermarks ``watermark_ttl_s`` = 7 days, and the replicated watermark map
expires with that TTL everywhere), with
REACTMESH_BENCH_OVERRIDES applied to the ``aggregator``, ``broadcaster`` and ``gossip`` sections, so a later
change is measured with the same command.
The load is set by SoakParams, REACTMESH_BENCH_SOAK='{"streams": 2000, "seconds": 7200}' overrides any field.

Why two processes and not one with per-component accounting: the issue asks for the RSS of an aggregator and
of a broadcaster, and in a region they are separate processes; here each child's RSS is exactly its own.
Splitting one process's memory between components (tracemalloc deltas around each component's work) was
not chosen because its error grows with the run: every object allocated in one component's turn and freed in
the other's (a gossip message, an event-loop handle, a block reused through the interpreter's free lists)
moves its bytes from one account to the other, every step. A FakeClock cannot span processes, but lockstep
can: this process moves both clocks through the same simulated seconds.

Sampled every ``sample_every_s``: each child's RSS (and, with ``"tracemalloc": true`` in
REACTMESH_BENCH_SOAK, the bytes tracemalloc counts; off by default, as it slows the run and inflates RSS),
its keys in memory, the sessions it tracks, and this process's counts of sessions live, within the
aggregator's ``watermark_ttl_s`` ("active": a resend from them would be recognized) and ever seen. Figures:

- ``*_rss_growth_last_half_pct``: RSS at the end over RSS at the sample nearest half time (the issue's
  done-when: under 5% once memory is bounded);
- ``*_bytes_per_slot_in_memory``: RSS growth since the first sample over totals + window keys held;
  ``*_bytes_per_live_slot``: the same growth over totals + open windows (windows of the last
  ACCEPTED_AT_TOLERANCE_MS, which can still grow); ``*_bytes_per_active_session``: over active sessions. Each
  puts the process's whole growth over one denominator, so they are not additive;
- ``gossip_bytes_per_round_*``: over every step with load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import json
import marshal
import os
import random
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reactmesh.bench.common import env_overrides
from reactmesh.bench.procs import child_env, rss_bytes, run_loop
from reactmesh.bench.report import Options, Report, Target
from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.edge.limits import MAX_ENTRIES_PER_EDGE_BATCH
from reactmesh.merge.checks import boolean, int_in, number_in
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import ConfigError
from reactmesh.merge.gossip import GossipConfig
from reactmesh.merge.polls import PollSet
from reactmesh.region_node.aggregator.config import ACCEPTED_AT_TOLERANCE_MS, AggregatorConfig
from reactmesh.region_node.aggregator.core import Aggregator
from reactmesh.region_node.aggregator.pending import ForwardStream
from reactmesh.region_node.aggregator.store import Store
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.broadcaster.core import Broadcaster
from reactmesh.region_node.config import BroadcasterSection, build
from reactmesh.region_node.query import QueryServicer
from reactmesh.region_node.state import DIGESTED, POLLS, RegionGossipNode, RegionState
from reactmesh.region_node.windows.digests import HistoryReader
from reactmesh.region_node.windows.sealer import WindowWriter
from reactmesh.v1 import aggregator_pb2, common_pb2, gossip_pb2

NAME = "soak"
REGION = "a"
START_WALL_MS = 1_700_000_000_000
EMOJI_WEIGHTS = (60, 15, 10, 7, 5, 3)
"""How often each of DEFAULT_REACTIONS is picked for a batch."""
STEP_TIMEOUT_S = 600.0
_MB = 1_000_000
DRAIN_STEPS = 3
"""Steps without load after the last second, so the broadcaster gets everything (the totals check)."""
_NODE_KEYS = {
    "aggregator": ("listen", "node_id", "region", "db_path"),
    "broadcaster": (
        "listen",
        "node_id",
        "sources",
        "peers",
        "polls_db_path",
        "polls",
        "history_db_path",
        "window_horizon_s",
        "window_retention_s",
        "history",
    ),
}
"""Node-file keys of a mesh section that are not component settings (the soak sets or has no use for them)."""


@dataclass(frozen=True)
class SoakParams:
    """The simulated load; ConfigError names a bad field."""

    streams: int = 1000
    seconds: int = 3600
    sessions_per_stream: int = 10
    batches_per_stream_s: int = 1
    session_min_s: int = 120
    session_max_s: int = 480
    resend_share: float = 0.02
    sample_every_s: int = 60
    seed: int = 7
    tracemalloc: bool = False

    def __post_init__(self) -> None:
        int_in("soak.streams", self.streams, 1, 1_000_000)
        int_in("soak.seconds", self.seconds, 2, 10_000_000)
        int_in("soak.sessions_per_stream", self.sessions_per_stream, 1, 100_000)
        int_in("soak.batches_per_stream_s", self.batches_per_stream_s, 1, 1000)
        int_in("soak.session_min_s", self.session_min_s, 1, 10_000_000)
        int_in("soak.session_max_s", self.session_max_s, self.session_min_s, 10_000_000)
        number_in("soak.resend_share", self.resend_share, 0, 1)
        int_in("soak.sample_every_s", self.sample_every_s, 1, self.seconds)
        int_in("soak.seed", self.seed, 0, 2**63)
        boolean("soak.tracemalloc", self.tracemalloc)

    @classmethod
    def chosen(cls, quick: bool) -> SoakParams:
        """The full or quick load, with REACTMESH_BENCH_SOAK's fields over it."""
        base = {"streams": 200, "seconds": 600, "sample_every_s": 30} if quick else {}
        raw = os.environ.get("REACTMESH_BENCH_SOAK", "").strip()
        extra = json.loads(raw) if raw else {}
        if not isinstance(extra, dict):
            raise ConfigError("REACTMESH_BENCH_SOAK", "a JSON object of SoakParams fields", raw)
        return build(cls, "soak", {**base, **extra})


def component_configs(data_dir: Path) -> tuple[AggregatorConfig, BroadcasterConfig, GossipConfig]:
    """The components' settings: as shipped, with REACTMESH_BENCH_OVERRIDES over them."""
    over = env_overrides()

    def section(name: str) -> dict[str, Any]:
        return {k: v for k, v in over.get(name, {}).items() if k not in _NODE_KEYS.get(name, ())}

    agg = build(
        AggregatorConfig,
        "aggregator",
        {**section("aggregator"), "node_id": f"{REGION}/agg-0", "region": REGION, "db_path": str(data_dir / "agg.db")},
    )
    bcast = build(BroadcasterConfig, "broadcaster", section("broadcaster"))
    gossip = build(GossipConfig, "gossip", {"digest_collections": DIGESTED, **section("gossip")})
    return agg, bcast, gossip


# -- the wire between this process and a child ----------------------------------------------------------


class Wire:
    """Length-prefixed ``marshal`` frames (dicts of numbers, strings, bytes and lists) over two pipe ends."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._r = read_fd
        self._w = write_fd
        os.set_blocking(read_fd, True)
        os.set_blocking(write_fd, True)

    def send(self, message: dict[str, Any]) -> None:
        payload = marshal.dumps(message)
        data = memoryview(struct.pack(">I", len(payload)) + payload)
        while data:
            data = data[os.write(self._w, data) :]

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame; EOFError if the other end closed, TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        (size,) = struct.unpack(">I", self._read(4, deadline))
        message: dict[str, Any] = marshal.loads(self._read(size, deadline))
        return message

    def _read(self, n: int, deadline: float | None) -> bytes:
        chunks: list[bytes] = []
        while n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._r], [], [], left)[0]:
                    raise TimeoutError("no frame in time")
            chunk = os.read(self._r, min(n, 1 << 20))
            if not chunk:
                raise EOFError("pipe closed")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


class RelayTransport:
    """A gossip session's transport whose messages the parent carries: ``write`` serializes each message into
    ``outbox``; ``read`` returns what ``deliver`` handed in, and None (the end of the stream) after ``close``."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.outbox: list[bytes] = []

    async def read(self) -> object:
        data = await self._inbox.get()
        return None if data is None else gossip_pb2.GossipMessage.FromString(data)

    async def write(self, message: gossip_pb2.GossipMessage) -> None:
        self.outbox.append(message.SerializeToString())

    def deliver(self, messages: Sequence[bytes]) -> None:
        for data in messages:
            self._inbox.put_nowait(data)

    def take(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    def close(self) -> None:
        self._inbox.put_nowait(None)


# -- the children --------------------------------------------------------------------------------------------


def _process_sample(params: SoakParams) -> dict[str, int]:
    return {
        "rss": rss_bytes(os.getpid()),
        "traced": tracemalloc.get_traced_memory()[0] if params.tracemalloc else 0,
    }


async def _end_session(link: RelayTransport, session: asyncio.Task[None]) -> None:
    link.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session, 10)


async def aggregator_child(params: SoakParams, data_dir: Path, wire: Wire) -> None:
    clock = FakeClock(START_WALL_MS)
    config, _, gossip_config = component_configs(data_dir)
    agg = Aggregator(config, clock)
    await agg.start()
    node = RegionGossipNode(config.node_id, REGION, "aggregator", agg.state, clock, gossip_config)
    link = RelayTransport()
    session = asyncio.create_task(node.run_session(link, dialer=False))
    fwd = ForwardStream()
    agg.attach(fwd)
    wire.send({"ready": True})
    while not (request := wire.receive()).get("stop"):
        link.deliver(request["gossip"])
        for data in request["batches"]:
            agg.receive(fwd, aggregator_pb2.EdgeBatch.FromString(data))
        await agg.tick()
        applied = duplicate = 0
        while not fwd.out.empty():
            ack = fwd.out.get_nowait()
            if isinstance(ack, aggregator_pb2.EdgeAck):
                applied += sum(1 for o in ack.outcomes if o == aggregator_pb2.EdgeAck.APPLIED)
                duplicate += sum(1 for o in ack.outcomes if o == aggregator_pb2.EdgeAck.DUPLICATE)
        await clock.advance(1.0)
        reply: dict[str, Any] = {"gossip": link.take(), "applied": applied, "duplicate": duplicate}
        if request["sample"]:
            stats = agg.statistics()
            db = [data_dir / f"agg.db{suffix}" for suffix in ("", "-wal", "-shm")]
            reply["sample"] = {
                **_process_sample(params),
                "totals": len(agg.state.totals),
                "windows": len(agg.state.windows),
                "watermarks": len(agg.state.watermarks),
                "sessions_tracked": int(stats["sessions_tracked"]),
                "windows_expired": int(stats["windows_expired"]),
                "watermarks_expired": int(stats["watermarks_expired"]),
                "db_bytes": sum(p.stat().st_size for p in db if p.exists()),
                "digest_repairs": node.stats.digest_repairs,
            }
        wire.send(reply)
    await _end_session(link, session)
    await agg.close()
    wire.send({"stopped": True})


async def broadcaster_child(params: SoakParams, data_dir: Path, wire: Wire) -> None:
    clock = FakeClock(START_WALL_MS)
    _, config, gossip_config = component_configs(data_dir)
    replica = RegionState(extra={POLLS: PollSet()})
    broadcaster = Broadcaster(config, clock, replica)
    # Its history store, written through and sealed each second, and the Query service over both, as in a node.
    section = env_overrides().get("broadcaster", {})
    history_path = data_dir / "history.db"
    store = await Store.open(history_path, synchronous="NORMAL")
    reader = HistoryReader(str(history_path))
    writer = WindowWriter(
        replica,
        store,
        clock,
        horizon_s=int(section.get("window_horizon_s", BroadcasterSection.window_horizon_s)),
        retention_s=int(section.get("window_retention_s", BroadcasterSection.window_retention_s)),
    )
    query = QueryServicer(replica, clock, reader, lambda: writer.sealed_before_s)
    writer.add_seal_listener(query.forget_windows_before)
    node = RegionGossipNode(f"{REGION}/bcast-0", REGION, "broadcaster", replica, clock, gossip_config)
    link = RelayTransport()
    session = asyncio.create_task(node.run_session(link, dialer=True))
    tick_s = config.tick_ms / 1000
    ticks = max(1, round(1 / tick_s))
    wire.send({"ready": True})
    while not (request := wire.receive()).get("stop"):
        link.deliver(request["gossip"])
        for _ in range(ticks):
            await clock.advance(tick_s)
            broadcaster.tick()
        await writer.step()
        reply: dict[str, Any] = {"gossip": link.take()}
        if request["sample"]:
            stats = broadcaster.statistics()
            db = [history_path.with_name(history_path.name + suffix) for suffix in ("", "-wal", "-shm")]
            reply["sample"] = {
                **_process_sample(params),
                "totals": len(replica.totals),
                "windows": len(replica.windows),
                "windows_sealed": writer.stats["windows_sealed"],
                "history_db_bytes": sum(p.stat().st_size for p in db if p.exists()),
                "watermarks": len(replica.watermarks),
                "streams": stats.streams,
                "frames_emitted": stats.frames_emitted,
                "digest_repairs": node.stats.digest_repairs,
            }
        wire.send(reply)
    taps = sum(v for _, v in replica.totals.items())
    await _end_session(link, session)
    await broadcaster.close()
    await writer.close()
    await store.close()
    await reader.close()
    wire.send({"stopped": True, "taps": taps})


def child_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.scenarios.soak child")
    p.add_argument("role", choices=("aggregator", "broadcaster"))
    p.add_argument("--params", required=True, help="SoakParams as JSON")
    p.add_argument("--dir", required=True, help="the run's temporary directory")
    args = p.parse_args(argv)
    params = SoakParams(**json.loads(args.params))
    if params.tracemalloc:
        tracemalloc.start()
    # Frames go to the original stdout; anything printed goes to stderr.
    wire = Wire(0, os.dup(1))
    os.dup2(2, 1)
    role = aggregator_child if args.role == "aggregator" else broadcaster_child
    try:
        run_loop(lambda: role(params, Path(args.dir), wire))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # at once: a store's worker thread would keep the process, and the parent waiting, alive
    return 0


# -- the viewers ---------------------------------------------------------------------------------------------


class _Session:
    __slots__ = ("counts", "ends_at", "id", "last_sent", "seq")

    def __init__(self, session_id: bytes, ends_at: int) -> None:
        self.id = session_id
        self.ends_at = ends_at
        self.seq = 0
        self.last_sent = -1
        self.counts: list[tuple[str, int]] = []


class Audience:
    """The simulated viewers: a fixed number of live sessions per stream, each replaced when it ends."""

    def __init__(self, params: SoakParams, rng: random.Random) -> None:
        self.params = params
        self.rng = rng
        self.stream_ids = [f"live-{i:05d}" for i in range(params.streams)]
        self.live: list[list[_Session]] = []
        self._ends: list[tuple[int, int, int]] = []  # (ends_at, stream, slot), a heap
        for i in range(params.streams):
            sessions = []
            for j in range(params.sessions_per_stream):
                # The first sessions have already lived part of their life, so ends are spread from the start.
                s = _Session(rng.randbytes(16), 1 + int(rng.random() * self._lifetime()))
                sessions.append(s)
                self._ends.append((s.ends_at, i, j))
            self.live.append(sessions)
        heapq.heapify(self._ends)
        self._ended: list[int] = []  # last_sent of every ended session that sent, a heap
        self.sessions_seen = 0
        self.applied = 0
        self.resent = 0
        self.taps = 0
        self.open_windows: deque[int] = deque(maxlen=ACCEPTED_AT_TOLERANCE_MS // 1000)

    def _lifetime(self) -> int:
        return self.rng.randint(self.params.session_min_s, self.params.session_max_s)

    def _churn(self, t: int) -> None:
        ends = self._ends
        while ends and ends[0][0] <= t:
            _, i, j = heapq.heappop(ends)
            old = self.live[i][j]
            if old.last_sent >= 0:
                heapq.heappush(self._ended, old.last_sent)
            new = self.live[i][j] = _Session(self.rng.randbytes(16), t + self._lifetime())
            heapq.heappush(ends, (new.ends_at, i, j))

    def second(self, t: int) -> list[bytes]:
        """Second ``t``'s client batches (accepted during [t-1, t) s of simulated time), as serialized EdgeBatches."""
        self._churn(t)
        rng = self.rng
        base_ms = START_WALL_MS + (t - 1) * 1000
        entries = []
        windows: set[tuple[int, str]] = set()
        for i, stream in enumerate(self.stream_ids):
            sessions = self.live[i]
            for _ in range(self.params.batches_per_stream_s):
                s = sessions[rng.randrange(len(sessions))]
                if s.seq and rng.random() < self.params.resend_share:
                    self.resent += 1  # the ack was lost: the same batch again, which must be a duplicate
                else:
                    if not s.seq:
                        self.sessions_seen += 1
                    s.seq += 1
                    kinds = 1 if rng.random() < 0.85 else 2
                    emojis = set(rng.choices(DEFAULT_REACTIONS, EMOJI_WEIGHTS, k=kinds))
                    s.counts = [(e, rng.randint(1, 10)) for e in sorted(emojis)]
                    windows.update((i, e) for e in emojis)
                    self.applied += 1
                    self.taps += sum(n for _, n in s.counts)
                s.last_sent = t
                entries.append(
                    aggregator_pb2.ForwardedBatch(
                        session_id=s.id,
                        seq=s.seq,
                        stream_id=stream,
                        accepted_at_ms=base_ms + rng.randrange(1000),
                        counts=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in s.counts],
                    )
                )
        self.open_windows.append(len(windows))
        step = MAX_ENTRIES_PER_EDGE_BATCH
        return [
            aggregator_pb2.EdgeBatch(batch_id=t * 1000 + n, entries=entries[k : k + step]).SerializeToString()
            for n, k in enumerate(range(0, len(entries), step))
        ]

    def counts(self, t: int, ttl_s: int) -> dict[str, int]:
        """Sessions live now, within ``ttl_s`` of their last batch ("active"), and ever seen."""
        cutoff = t - ttl_s
        ended = self._ended
        while ended and ended[0] < cutoff:
            heapq.heappop(ended)
        live_active = sum(1 for sessions in self.live for s in sessions if s.last_sent >= max(0, cutoff))
        return {
            "sessions_live": sum(len(sessions) for sessions in self.live),
            "sessions_active": live_active + len(ended),
            "sessions_seen": self.sessions_seen,
            "open_windows": sum(self.open_windows),
        }


# -- this process: one run -----------------------------------------------------------------------------------


class _Child:
    """One child process and its wire; stderr goes to a log in the run's directory."""

    def __init__(self, role: str, params: SoakParams, data_dir: Path) -> None:
        self.role = role
        self.log_path = data_dir / f"{role}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reactmesh.bench.scenarios.soak",
                    "child",
                    role,
                    "--params",
                    json.dumps(dataclasses.asdict(params)),
                    "--dir",
                    str(data_dir),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wire = Wire(self.proc.stdout.fileno(), self.proc.stdin.fileno())

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.wire.send(message)
        except BrokenPipeError:
            raise self._failed() from None

    def receive(self) -> dict[str, Any]:
        try:
            return self.wire.receive(STEP_TIMEOUT_S)
        except (EOFError, TimeoutError) as exc:
            raise self._failed(exc) from None

    def _failed(self, cause: BaseException | None = None) -> RuntimeError:
        self.close()
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        return RuntimeError(f"soak {self.role} child failed ({cause!r}, exit {self.proc.returncode}):\n{tail}")

    def close(self, grace: float = 0.0) -> None:
        """Wait up to ``grace`` seconds for the child to exit, then kill it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def run_once(params: SoakParams, ttl_s: int) -> dict[str, Any]:
    """One run: the series of samples, the bytes of each gossip round both ways, and the checks."""
    with tempfile.TemporaryDirectory(prefix="reactmesh-soak-") as tmp:
        children = {role: _Child(role, params, Path(tmp)) for role in ("aggregator", "broadcaster")}
        try:
            return _drive(params, ttl_s, children["aggregator"], children["broadcaster"])
        finally:
            for child in children.values():
                child.close(grace=30)


def _drive(params: SoakParams, ttl_s: int, agg: _Child, bcast: _Child) -> dict[str, Any]:
    started = time.monotonic()
    agg.receive()
    bcast.receive()
    audience = Audience(params, random.Random(params.seed))
    to_agg: list[bytes] = []
    to_bcast: list[bytes] = []
    batches: list[bytes] = []
    rounds: list[tuple[int, int]] = []
    series: list[dict[str, Any]] = []
    applied = duplicate = 0
    last = params.seconds + DRAIN_STEPS
    for t in range(last + 1):
        sample = t <= params.seconds and (t % params.sample_every_s == 0 or t == params.seconds)
        agg.send({"batches": batches, "gossip": to_agg, "sample": sample})
        bcast.send({"gossip": to_bcast, "sample": sample})
        counts = audience.counts(t, ttl_s) if sample else {}
        # The next second's load is built while both children work on this one.
        batches = audience.second(t + 1) if t < params.seconds else []
        a, b = agg.receive(), bcast.receive()
        to_bcast, to_agg = a["gossip"], b["gossip"]
        applied += a["applied"]
        duplicate += a["duplicate"]
        if 1 <= t <= params.seconds:
            rounds.append((sum(map(len, to_bcast)), sum(map(len, to_agg))))
        if sample:
            series.append(
                {
                    "t_s": t,
                    **counts,
                    **{f"agg_{k}": v for k, v in a["sample"].items()},
                    **{f"bcast_{k}": v for k, v in b["sample"].items()},
                }
            )
            if t and t % max(1, params.seconds // 6) == 0:
                print(
                    f"    {t:,}/{params.seconds:,} simulated s after {time.monotonic() - started:.0f} s: aggregator "
                    f"{a['sample']['rss'] / _MB:,.0f} MB, broadcaster {b['sample']['rss'] / _MB:,.0f} MB",
                    flush=True,
                )
    agg.send({"stop": True})
    bcast.send({"stop": True})
    agg.receive()
    end = bcast.receive()
    return {
        "series": series,
        "rounds": rounds,
        "wall_s": time.monotonic() - started,
        "applied_ok": applied == audience.applied and duplicate == audience.resent,
        "totals_ok": end["taps"] == audience.taps,
    }


# -- figures -------------------------------------------------------------------------------------------------


def figures_of(result: dict[str, Any], params: SoakParams) -> dict[str, float]:
    series = result["series"]
    first, last = series[0], series[-1]
    mid = max((s for s in series if s["t_s"] <= params.seconds / 2), key=lambda s: s["t_s"])
    hours = (last["t_s"] - mid["t_s"]) / 3600
    out: dict[str, float] = {}
    for name, p in (("aggregator", "agg"), ("broadcaster", "bcast")):
        rss, rss_mid, rss_0 = last[f"{p}_rss"], mid[f"{p}_rss"], first[f"{p}_rss"]
        grown = rss - rss_0
        out[f"{name}_rss_mb_end"] = rss / _MB
        out[f"{name}_rss_growth_last_half_pct"] = 100 * (rss - rss_mid) / rss_mid
        out[f"{name}_rss_mb_per_hour_last_half"] = (rss - rss_mid) / _MB / hours if hours else float("nan")
        if params.tracemalloc:
            traced, traced_mid = last[f"{p}_traced"], mid[f"{p}_traced"]
            out[f"{name}_traced_mb_end"] = traced / _MB
            out[f"{name}_traced_growth_last_half_pct"] = 100 * (traced - traced_mid) / max(1, traced_mid)
        out[f"{name}_bytes_per_slot_in_memory"] = grown / max(1, last[f"{p}_totals"] + last[f"{p}_windows"])
        out[f"{name}_bytes_per_live_slot"] = grown / max(1, last[f"{p}_totals"] + last["open_windows"])
        out[f"{name}_bytes_per_active_session"] = grown / max(1, last["sessions_active"])
        out[f"{name}_window_keys_end"] = last[f"{p}_windows"]
        out[f"{name}_totals_keys_end"] = last[f"{p}_totals"]
    out["open_windows_end"] = last["open_windows"]
    out["sessions_live_end"] = last["sessions_live"]
    out["sessions_active_end"] = last["sessions_active"]
    out["sessions_seen"] = last["sessions_seen"]
    out["aggregator_sessions_tracked_end"] = last["agg_sessions_tracked"]
    out["aggregator_watermarks_end"] = last["agg_watermarks"]
    out["broadcaster_watermarks_end"] = last["bcast_watermarks"]
    out["sqlite_mb_end"] = last["agg_db_bytes"] / _MB
    both = [a + b for a, b in result["rounds"]]
    half = len(both) // 2
    out["gossip_bytes_per_round_median"] = statistics.median(both)
    out["gossip_bytes_per_round_max"] = max(both)
    out["gossip_agg_to_bcast_bytes_per_round_median"] = statistics.median(a for a, _ in result["rounds"])
    out["gossip_bcast_to_agg_bytes_per_round_median"] = statistics.median(b for _, b in result["rounds"])
    out["gossip_bytes_per_round_max_first_half"] = max(both[:half] or [0])
    out["gossip_bytes_per_round_max_last_half"] = max(both[half:] or [0])
    out["gossip_digest_repairs"] = last["agg_digest_repairs"] + last["bcast_digest_repairs"]
    return out


UNITS = {
    "rss_mb_end": "MB",
    "rss_growth_last_half_pct": "%",
    "rss_mb_per_hour_last_half": "MB/simulated h",
    "traced_mb_end": "MB",
    "traced_growth_last_half_pct": "%",
    "bytes_per_slot_in_memory": "bytes",
    "bytes_per_live_slot": "bytes",
    "bytes_per_active_session": "bytes",
    "window_keys_end": "keys",
    "totals_keys_end": "keys",
    "open_windows_end": "keys",
    "sessions_live_end": "sessions",
    "sessions_active_end": "sessions",
    "sessions_seen": "sessions",
    "sessions_tracked_end": "sessions",
    "watermarks_end": "sessions",
    "sqlite_mb_end": "MB",
}


def _unit(figure: str) -> str:
    if figure.startswith("gossip_"):
        return "repairs" if figure.endswith("_repairs") else "bytes"
    for suffix, unit in UNITS.items():
        if figure.endswith(suffix):
            return unit
    return ""


def run(options: Options) -> Report:
    params = SoakParams.chosen(options.quick)
    agg_config, bcast_config, gossip_config = component_configs(Path("."))
    report = Report(
        NAME,
        f"soak: {params.seconds:,} simulated s at {params.streams:,} active streams, aggregator and broadcaster",
        options,
    )
    report.params = {
        **dataclasses.asdict(params),
        "aggregator_commits_per_simulated_s": 1,
        "broadcaster_ticks_per_simulated_s": max(1, round(1000 / bcast_config.tick_ms)),
        "window_retention_s": agg_config.window_retention_s,
        "watermark_ttl_s": agg_config.watermark_ttl_s,
        "gossip_max_keys_per_delta": gossip_config.max_keys_per_delta,
        "gossip_digest_interval_s": gossip_config.digest_interval_s,
        "broadcaster_buffer_frames": bcast_config.buffer_frames,
    }
    report.targets = [
        Target("aggregator RSS growth over the last half <= 5%", "aggregator_rss_growth_last_half_pct", "<=", 5.0),
        Target("broadcaster RSS growth over the last half <= 5%", "broadcaster_rss_growth_last_half_pct", "<=", 5.0),
    ]
    all_series = []
    checks_failed = 0
    for i in range(options.runs):
        result = run_once(params, agg_config.watermark_ttl_s)
        figures = figures_of(result, params)
        report.add_run(figures)
        all_series.append(result["series"])
        if not (result["applied_ok"] and result["totals_ok"]):
            checks_failed += 1
        print(
            f"  soak run {i + 1}/{options.runs} ({result['wall_s']:.0f} s): "
            f"aggregator {figures['aggregator_rss_mb_end']:,.0f} MB "
            f"(+{figures['aggregator_rss_growth_last_half_pct']:.1f}% over the last half), "
            f"broadcaster {figures['broadcaster_rss_mb_end']:,.0f} MB "
            f"(+{figures['broadcaster_rss_growth_last_half_pct']:.1f}%), "
            f"gossip {figures['gossip_bytes_per_round_median']:,.0f} bytes/round median",
            flush=True,
        )
    report.units = {name: _unit(name) for name in report.summary()}
    report.extra["series"] = all_series
    report.extra["checks_failed_runs"] = checks_failed
    last = all_series[-1]
    points = [s for s in last if s["t_s"] % max(params.seconds // 6, 1) == 0 or s is last[-1]]
    report.notes.append(
        "RSS over simulated time, last run (aggregator / broadcaster MB): "
        + ", ".join(f"{s['t_s']} s {s['agg_rss'] / _MB:,.0f} / {s['bcast_rss'] / _MB:,.0f}" for s in points)
        + ". Every sample of every run is in the JSON (extra.series)."
    )
    report.notes.append(
        "Every run: each batch APPLIED or DUPLICATE exactly as sent, and the broadcaster's totals equal the taps sent."
        if checks_failed == 0
        else f"{checks_failed} run(s) miscounted: outcomes or broadcaster totals differ from the load sent."
    )
    report.notes.append(
        "One aggregator commit per simulated second (with the second's batches) instead of ten; gossip messages "
        "cross a link of one simulated second. Bytes per slot/session: the process's RSS growth over one "
        "denominator, so not additive; live slots = totals + windows of the last 60 s."
    )
    return report


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    raise SystemExit(child_main(sys.argv[2:]))
