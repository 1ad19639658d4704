"""The processes of simulated regions, optionally inside network namespaces (``tests.support.netns``).

``RegionProcesses`` runs ``python -m reactmesh.region_node.cli serve`` per process from config mappings (built
with ``reactmesh.region_node.devmesh.RegionPlan``), and simulated viewers (``reactmesh.region_node.cli.load.drive``)
as a subprocess per region (``python -m tests.support.regions load``) that taps until told to stop and then prints
its summary, the region's ground truth (``reactmesh load`` can neither be stopped on cue nor say when it starts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactmesh.region_node.cli.load import LoadSummary, drive
from reactmesh.region_node.devmesh import RegionPlan, plan, to_toml, wait_serving

_REPO = Path(__file__).resolve().parents[2]


def region_plans(
    regions: Sequence[str], hosts: Mapping[str, str], ports: Mapping[str, int], data_dir: Path
) -> dict[str, RegionPlan]:
    """Plans with each region on its own host and base port: edge +0, aggregators +1/+2, broadcaster +3."""
    return plan(regions, 0, data_dir, hosts=hosts, ports=ports)


TARGETS = {
    "main": "all",
    "edge": "edge",
    "bcast": "broadcaster",
    "bcast1": "broadcaster",
    "agg0": "aggregator",
    "agg1": "aggregator",
}


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
        """Start simulated viewers in the region's namespace (``python -m tests.support.regions load``): they tap
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
                "tests.support.regions",
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


async def _load_main(argv: Sequence[str]) -> int:
    """``python -m tests.support.regions load --edge HOST:PORT [...]``: tap until SIGTERM, flush, print the summary.

    Prints "tapping" once the viewers start, then one line of JSON (reactmesh.region_node.cli.load.LoadSummary).
    """
    parser = argparse.ArgumentParser(prog="tests.support.regions load")
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
        sys.exit("usage: python -m tests.support.regions load --edge HOST:PORT [options]")
    from reactmesh.region_node.cli.main import run_async

    sys.exit(run_async(_load_main(sys.argv[2:])))
