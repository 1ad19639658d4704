"""Harness for multi-region fault tests: regions in network namespaces, their processes, and the checks.

``RegionNetwork`` puts each region in its own network namespace, joined through a hub namespace that routes
between them (one /16 of 10.0.0.0/8 per run, free in the root namespace when it was picked)::

    root ns 10.N.0.2 --veth-- 10.N.0.1 hub ns (ip_forward=1) 10.N.i.1 --veth-- 10.N.i.2 region i (1, 2, ...)

The root namespace routes 10.N.0.0/16 into the hub, so the test process reaches every region's servers.
``cut(region)`` separates the region from the hub: processes inside the region still reach each other (and
clients running in its namespace reach its edge), while nothing crosses between the region and the other regions
or the root namespace. Two ways, both iproute2 only: ``how="drop"`` (default) makes the hub route the region's
packets, both directions, into a blackhole, so they vanish silently as on a broken or firewalled path and TCP
backs off its retransmissions; ``how="link"`` sets the hub's end of the link down, so the hub answers the other
regions with ICMP unreachable, which lets their TCP retransmit sooner (RFC 6069). ``heal(region)`` undoes the
cut; connections that were open resume through TCP retransmission unless a side gave up on them meanwhile.

Cleanup is complete even when a test fails: ``close()`` kills every process still inside the namespaces and
deletes the namespaces, which removes their veths and routes. Namespace names carry the creating pid, and a
new ``RegionNetwork`` first removes namespaces left behind by a dead pid (a test run that was killed).

``RegionProcesses`` runs ``python -m reactmesh.region_node.cli serve`` per process from config mappings (built with
``region_node.mesh.RegionPlan``), each optionally inside a region's namespace, and simulated viewers
(``region_node.loadgen.drive``) as a subprocess per region that taps until told to stop and then prints its
summary, the region's ground truth (``reactmesh load`` can neither be stopped on cue nor say when it starts).
``wait_converged`` and ``probe_replication_lag`` check and measure the broadcasters through the Query service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc

from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.edge.sdk import ReactionClient
from reactmesh.region_node.loadgen import LoadSummary, drive
from reactmesh.region_node.mesh import RegionPlan, plan, to_toml, wait_serving
from reactmesh.v1 import ingest_pb2, query_pb2, query_pb2_grpc

_PREFIX = "rmx"
_LOCK = Path("/tmp/reactmesh-netns.lock")
_NAME = re.compile(rf"^{_PREFIX}(\d+)-")
_BLACKHOLE_TABLE = 77
_REPO = Path(__file__).resolve().parents[2]
CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)
CutHow = Literal["drop", "link"]


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can (probed by creating one)."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); running as uid " + str(
            os.geteuid()
        )
    probe = f"{_PREFIX}{os.getpid()}-probe"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"'ip netns add' failed: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_and_delete(ns: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces (and kill their processes) created by test runs whose pid is gone."""
    removed = []
    for ns in _namespaces():
        m = _NAME.match(ns)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            _kill_and_delete(ns)
            subprocess.run(["ip", "link", "del", f"{_PREFIX}{m.group(1)}"], capture_output=True, check=False)
            removed.append(ns)
        except PermissionError:
            pass
    return removed


@dataclass
class RegionNetwork:
    """Namespaces and links for ``regions``. Use as ``with RegionNetwork(("a", "b", "c")) as net``.

    One at a time per process: names are derived from the pid.
    """

    regions: Sequence[str]
    hub: str = ""
    octet: int = 0
    namespaces: dict[str, str] = field(default_factory=dict)
    cuts: dict[str, CutHow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.regions:
            if not re.fullmatch(r"[a-z0-9]{1,8}", r):
                raise ValueError(f"region names must be 1..8 chars of [a-z0-9] (interface names), got {r!r}")

    def __enter__(self) -> RegionNetwork:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, region: str) -> str:
        """The region's IP address, on which its servers listen."""
        return f"10.{self.octet}.{self.regions.index(region) + 1}.2"

    def exec_prefix(self, region: str) -> list[str]:
        """Prepend to a command to run it inside the region's namespace."""
        return ["ip", "netns", "exec", self.namespaces[region]]

    def cut(self, region: str, how: CutHow = "drop") -> None:
        """Separate ``region`` from the hub: "drop" discards its packets silently, "link" sets its link down."""
        if region in self.cuts:
            raise ValueError(f"region {region} is already cut ({self.cuts[region]})")
        i = self.regions.index(region) + 1
        if how == "drop":
            _ip("-n", self.hub, "route", "replace", "blackhole", "default", "table", str(_BLACKHOLE_TABLE))
            for direction, pref in (("to", 1000 + i), ("from", 2000 + i)):
                _ip(
                    "-n",
                    self.hub,
                    "rule",
                    "add",
                    direction,
                    f"10.{self.octet}.{i}.0/24",
                    "table",
                    str(_BLACKHOLE_TABLE),
                    "pref",
                    str(pref),
                )
        elif how == "link":
            _ip("-n", self.hub, "link", "set", f"r-{region}", "down")
        else:
            raise ValueError(f"how must be 'drop' or 'link', got {how!r}")
        self.cuts[region] = how

    def heal(self, region: str) -> None:
        how = self.cuts.pop(region)
        i = self.regions.index(region) + 1
        if how == "drop":
            for pref in (1000 + i, 2000 + i):
                _ip("-n", self.hub, "rule", "del", "pref", str(pref))
        else:
            _ip("-n", self.hub, "link", "set", f"r-{region}", "up")

    def create(self) -> None:
        remove_stale_namespaces()
        tag = f"{_PREFIX}{os.getpid()}"
        with open(_LOCK, "a") as lock:
            # Held until our route exists, so two runs never pick the same /16.
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.octet = self._free_octet()
            self.hub = f"{tag}-hub"
            _ip("netns", "add", self.hub)
            _ip("-n", self.hub, "link", "set", "lo", "up")
            subprocess.run(
                ["ip", "netns", "exec", self.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                check=True,
                capture_output=True,
            )
            n = self.octet
            _ip("link", "add", tag, "type", "veth", "peer", "name", "root", "netns", self.hub)
            _ip("addr", "add", f"10.{n}.0.2/24", "dev", tag)
            _ip("link", "set", tag, "up")
            _ip("-n", self.hub, "addr", "add", f"10.{n}.0.1/24", "dev", "root")
            _ip("-n", self.hub, "link", "set", "root", "up")
            _ip("route", "add", f"10.{n}.0.0/16", "via", f"10.{n}.0.1", "dev", tag)
        for i, region in enumerate(self.regions, start=1):
            ns = f"{tag}-{region}"
            _ip("netns", "add", ns)
            self.namespaces[region] = ns
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "add", f"r-{region}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "addr", "add", f"10.{n}.{i}.1/24", "dev", f"r-{region}")
            _ip("-n", self.hub, "link", "set", f"r-{region}", "up")
            _ip("-n", ns, "addr", "add", f"10.{n}.{i}.2/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", f"10.{n}.{i}.1")

    def close(self) -> None:
        """Kill what runs inside, delete every namespace of this network (idempotent)."""
        for ns in [*self.namespaces.values(), self.hub]:
            if ns and ns in _namespaces():
                _kill_and_delete(ns)
        # Namespaces are torn down asynchronously by the kernel; deleting our end of the root link now
        # removes its routes before this returns.
        subprocess.run(["ip", "link", "del", f"{_PREFIX}{os.getpid()}"], capture_output=True, check=False)
        self.namespaces.clear()
        self.hub = ""

    @staticmethod
    def _free_octet() -> int:
        routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=True).stdout
        addrs = subprocess.run(["ip", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
        for n in range(77, 250):
            if f"10.{n}." not in routes and f"10.{n}." not in addrs:
                return n
        raise RuntimeError("no free 10.N.0.0/16 for the test network")


def region_plans(
    regions: Sequence[str], hosts: Mapping[str, str], ports: Mapping[str, int], data_dir: Path
) -> dict[str, RegionPlan]:
    """Plans with each region on its own host and base port: edge +0, aggregators +1/+2, broadcaster +3."""
    return plan(regions, 0, data_dir, hosts=hosts, ports=ports)


TARGETS = {"main": "all", "edge": "edge", "bcast": "broadcaster", "agg0": "aggregator", "agg1": "aggregator"}


def listen_addresses(config: Mapping[str, Any]) -> list[str]:
    return [config[role]["listen"] for role in ("edge", "aggregator", "broadcaster") if role in config]


@dataclass
class RegionProcesses:
    """``serve`` processes keyed (region, name), each run with its region's command prefix (a namespace or none).

    Use as ``async with``: leaving stops every process, also when the test failed: SIGTERM, then SIGKILL after
    ``stop_grace_s`` (a graceful stop waits for open gossip streams, which never end by themselves).
    """

    data_dir: Path
    prefixes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    procs: dict[tuple[str, str], asyncio.subprocess.Process] = field(default_factory=dict)
    configs: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    loads: list[asyncio.subprocess.Process] = field(default_factory=list)
    stop_grace_s: float = 1.0

    async def __aenter__(self) -> RegionProcesses:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all(self.stop_grace_s)

    async def add(self, region: str, configs: Mapping[str, Mapping[str, Any]]) -> None:
        """Write and start a region's processes (names as in RegionPlan.process_configs or split_configs)."""
        for name, cfg in configs.items():
            self.configs[(region, name)] = cfg
            (self.data_dir / f"{region}-{name}.toml").write_text(to_toml(cfg))
            await self.start(region, name)

    async def start(self, region: str, name: str) -> None:
        """Start (or restart) one process from its written config."""
        log = open(self.data_dir / f"{region}-{name}.log", "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            self.procs[(region, name)] = await asyncio.create_subprocess_exec(
                *self.prefixes.get(region, ()),
                sys.executable,
                "-m",
                "reactmesh.region_node.cli",
                "serve",
                f"--target={TARGETS[name]}",
                "--config",
                str(self.data_dir / f"{region}-{name}.toml"),
                stdout=log,
                stderr=log,
                env=child_env(),
            )
        finally:
            log.close()

    async def wait_ready(self, within: float = 30.0) -> None:
        addresses = [a for cfg in self.configs.values() for a in listen_addresses(cfg)]
        await asyncio.gather(*(wait_serving(a, within) for a in addresses))

    async def wait_ready_one(self, region: str, name: str, within: float = 30.0) -> None:
        await asyncio.gather(*(wait_serving(a, within) for a in listen_addresses(self.configs[(region, name)])))

    def kill(self, region: str, name: str) -> None:
        """SIGKILL: no flush, no final commit."""
        self.procs[(region, name)].send_signal(signal.SIGKILL)

    async def wait(self, region: str, name: str) -> int:
        return await self.procs[(region, name)].wait()

    async def start_load(self, region: str, edges: Sequence[str], **params: Any) -> LoadRun:
        """Start simulated viewers in the region's namespace (``python -m tests.faults.netns load``): they tap
        until ``LoadRun.stop()``, then flush, and the summary is that region's ground truth.

        ``params``: viewers, streams, taps_per_second, hot_share, stream_prefix, seed (as ``reactmesh load``).
        """
        args = [f"--edge={e}" for e in edges]
        args += [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]
        errors = open(self.data_dir / f"{region}-load.log", "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.prefixes.get(region, ()),
                sys.executable,
                "-m",
                "tests.faults.netns",
                "load",
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                env=child_env(),
            )
        finally:
            errors.close()
        self.loads.append(proc)
        return LoadRun(region, proc)

    async def stop_all(self, grace: float = 1.0) -> None:
        """SIGTERM every live process, SIGKILL those still running ``grace`` seconds later."""
        live = [p for p in (*self.loads, *self.procs.values()) if p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)

        async def reap(p: asyncio.subprocess.Process) -> None:
            try:
                await asyncio.wait_for(p.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()

        await asyncio.gather(*(reap(p) for p in live))


@dataclass
class LoadRun:
    """One region's load generator process (see ``RegionProcesses.start_load``)."""

    region: str
    proc: asyncio.subprocess.Process

    async def started(self, within: float = 30.0) -> None:
        """Wait until its viewers are connected and tapping."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if line.strip() != b"tapping":
            raise AssertionError(f"load in region {self.region} did not start: {line!r}; see {self.region}-load.log")

    def stop(self) -> None:
        """Stop tapping; the viewers then flush every unacked batch."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)

    async def summary(self) -> LoadSummary:
        """Wait for the flush; what the viewers were acked."""
        out, _ = await self.proc.communicate()
        if self.proc.returncode != 0:
            raise AssertionError(f"load in region {self.region} exited {self.proc.returncode}; see its load.log")
        return LoadSummary(**json.loads(out.decode().strip().splitlines()[-1]))


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "grpc_proxy")}
    env["PYTHONUNBUFFERED"] = "1"
    # The load runner is this module: make the repository importable wherever the child starts.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
    return env


def ground_truth(summaries: Iterable[LoadSummary]) -> Counter[str]:
    """The sum of what every region's clients were acked, per "stream/emoji"."""
    truth: Counter[str] = Counter()
    for s in summaries:
        assert s.taps_rate_limited == 0, "exact per-emoji ground truth needs a load without rate limiting"
        assert s.batches_rejected == 0, f"{s.batches_rejected} batches rejected"
        # Includes batches acked DUPLICATE (counted by an earlier send whose ack was lost to a crash).
        acked = sum(s.accepted.values())
        assert acked == s.taps_sent, f"{s.taps_sent} taps sent, {acked} acked"
        truth.update(s.accepted)
    return +truth


async def merged_totals(address: str, streams: Iterable[str], timeout: float = 2.0) -> Counter[str]:  # noqa: ASYNC109
    """A broadcaster's merged global totals, per "stream/emoji"."""
    out: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        for s in streams:
            reply = await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id=s), timeout=timeout)
            for c in reply.totals:
                out[f"{s}/{c.emoji}"] = c.count
    return +out


async def wait_converged(broadcasters: Mapping[str, str], truth: Counter[str], within: float = 60.0) -> float:
    """Poll every broadcaster until each one's totals equal ``truth`` exactly; return the seconds it took.

    Fails naming, per region, the keys that differ (merged, truth) when ``within`` passes first.
    """
    streams = sorted({k.split("/")[0] for k in truth})
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = dict(broadcasters)
    last: dict[str, Counter[str] | str] = {}
    while pending:
        for region, address in list(pending.items()):
            try:
                got = await merged_totals(address, streams)
            except grpc.aio.AioRpcError as exc:
                last[region] = f"query failed: {exc.code()}"
                continue
            last[region] = got
            if got == truth:
                del pending[region]
        if not pending:
            break
        if loop.time() - started > within:
            raise AssertionError(f"not converged within {within} s: {_differences(pending, last, truth)}")
        await asyncio.sleep(0.05)
    return loop.time() - started


def _differences(pending: Mapping[str, str], last: Mapping[str, Counter[str] | str], truth: Counter[str]) -> str:
    parts = []
    for region in pending:
        got = last.get(region, "no answer")
        if isinstance(got, str):
            parts.append(f"{region}: {got}")
            continue
        diff = {k: (got.get(k, 0), truth.get(k, 0)) for k in set(got) | set(truth) if got.get(k) != truth.get(k)}
        missing = sum(truth.values()) - sum(got.values())
        parts.append(f"{region}: {missing} taps short; (merged, truth) {dict(sorted(diff.items())[:8])}")
    return "; ".join(parts)


async def probe_replication_lag(
    edge: str, broadcasters: Mapping[str, str], samples: int = 10, spacing_s: float = 0.1, within: float = 10.0
) -> dict[str, list[float]]:
    """Seconds from a tap's ack at ``edge`` until each broadcaster's totals show it, per region.

    The ack comes after the aggregator's commit, so this is commit -> gossip to the local broadcaster ->
    gossip between regions -> visible in Query, plus up to 10 ms of polling. Probes use fresh streams
    ("lagprobe-<n>-<i>"), so they change no totals a test compares.
    """
    tag = time.monotonic_ns() % 10**9
    loop = asyncio.get_running_loop()
    acked: dict[str, asyncio.Future[float]] = {}

    def on_ack(batch: ingest_pb2.ClientBatch, ack: ingest_pb2.BatchAck) -> None:
        waiter = acked.get(batch.stream_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(loop.time())

    client = ReactionClient([edge], viewer_id=f"lagprobe-{tag}", batch_interval_s=0.005, on_ack=on_ack)
    out: dict[str, list[float]] = {r: [] for r in broadcasters}

    async def seen(address: str, stream: str, acked_at: float) -> float:
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            while loop.time() - acked_at < within:
                reply = await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id=stream), timeout=2)
                if any(c.count for c in reply.totals):
                    return loop.time() - acked_at
                await asyncio.sleep(0.01)
        raise AssertionError(f"probe {stream} not visible at {address} within {within} s")

    async def probe(i: int) -> None:
        await asyncio.sleep(i * spacing_s)
        stream = f"lagprobe-{tag}-{i}"
        acked[stream] = loop.create_future()
        client.tap(stream, DEFAULT_REACTIONS[0])
        acked_at = await asyncio.wait_for(acked[stream], within)
        lags = await asyncio.gather(*(seen(a, stream, acked_at) for a in broadcasters.values()))
        for region, lag in zip(broadcasters, lags, strict=True):
            out[region].append(lag)

    try:
        await client.start()
        await asyncio.gather(*(probe(i) for i in range(samples)))
    finally:
        await client.close()
    return out


def describe_lags(lags: Mapping[str, Sequence[float]]) -> str:
    def pct(xs: Sequence[float], q: float) -> float:
        s = sorted(xs)
        return s[min(len(s) - 1, round(q * (len(s) - 1)))] * 1000

    return ", ".join(f"{r} p50 {pct(xs, 0.5):.0f} ms p99 {pct(xs, 0.99):.0f} ms" for r, xs in lags.items() if xs)


async def _load_main(argv: Sequence[str]) -> int:
    """``python -m tests.faults.netns load --edge HOST:PORT [...]``: tap until SIGTERM, flush, print the summary.

    Prints "tapping" once the viewers start, then one line of JSON (region_node.loadgen.LoadSummary).
    """
    parser = argparse.ArgumentParser(prog="tests.faults.netns load")
    parser.add_argument("--edge", action="append", required=True)
    parser.add_argument("--viewers", type=int, default=30)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--taps-per-second", type=float, default=5.0)
    parser.add_argument("--hot-share", type=float, default=0.5)
    parser.add_argument("--stream-prefix", default="match")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flush-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("tapping", flush=True)
    summary = await drive(
        args.edge,
        viewers=args.viewers,
        streams=args.streams,
        duration_s=24 * 3600.0,
        taps_per_second=args.taps_per_second,
        hot_share=args.hot_share,
        stream_prefix=args.stream_prefix,
        seed=args.seed,
        stop=stop,
        flush_timeout_s=args.flush_timeout,
    )
    print(json.dumps(dataclasses.asdict(summary)), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["load"]:
        sys.exit("usage: python -m tests.faults.netns load --edge HOST:PORT [options]")
    from reactmesh.region_node.cli import run_async

    sys.exit(run_async(_load_main(sys.argv[2:])))
