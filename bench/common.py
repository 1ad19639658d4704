"""Shared parts of the benchmark scenarios: options, machine facts, run statistics, tables, JSON, CPU time,
child processes, and a process mesh whose gossip links can be rerouted (through ``bench.delay_proxy``).

Every figure a scenario reports is the median of its runs with the min and max beside it. A ratio is computed
inside each run from figures measured in that run, and its median is reported (never a ratio of medians).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from reactmesh.region_node.devmesh import ProcessMesh, plan, to_toml

REPO = Path(__file__).resolve().parent.parent

EDGE_OVERRIDES: dict[str, dict[str, Any]] = {"edge": {"rate_per_s": 1000.0, "burst": 5000}}
"""Mesh overrides of every scenario: a simulated viewer sends 10-tap batches several times a second, far
above a human's 10 taps/s, so the edge's per-viewer rate limit is raised (nothing is rate-limited, which
keeps the ground truth exact per (stream, emoji))."""

KNOB_PREFIX = "REACTMESH_BENCH_"


def knobs() -> dict[str, str]:
    """The experiment knobs set in the environment (recorded with every result):

    - REACTMESH_BENCH_OVERRIDES: JSON {section: {field: value}} merged into every mesh's config, e.g.
      '{"aggregator": {"tick_ms": 50}}';
    - REACTMESH_BENCH_SWITCH_INTERVAL_S: ``sys.setswitchinterval`` for the bench and every process it starts;
    - REACTMESH_BENCH_LINK_DELAY_MS, REACTMESH_BENCH_PARTITION_S: see the latency and converge scenarios.
    """
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(KNOB_PREFIX) and k != "REACTMESH_BENCH_OUT"}


def env_overrides() -> dict[str, dict[str, Any]]:
    raw = os.environ.get("REACTMESH_BENCH_OVERRIDES", "").strip()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"REACTMESH_BENCH_OVERRIDES must be a JSON object of objects, got {raw!r}")
    return data


def merge_overrides(*layers: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, fields in (layer or {}).items():
            out.setdefault(section, {}).update(fields)
    return out


def prepare_environment() -> None:
    """Apply REACTMESH_BENCH_SWITCH_INTERVAL_S here and, through a generated sitecustomize on PYTHONPATH, in
    every child process (mesh processes inherit the environment)."""
    raw = os.environ.get("REACTMESH_BENCH_SWITCH_INTERVAL_S", "").strip()
    if not raw:
        return
    interval = float(raw)
    sys.setswitchinterval(interval)
    import tempfile

    site = Path(tempfile.mkdtemp(prefix="reactmesh-bench-site-"))
    (site / "sitecustomize.py").write_text(f"import sys\nsys.setswitchinterval({interval!r})\n")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    quick: bool
    runs: int
    out: Path


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``figure`` (its median) compared with ``limit`` by ``op`` (">=" or "<=")."""

    name: str
    figure: str
    op: str
    limit: float


@dataclass
class Report:
    """What one scenario measured: per-run figures, their summary, and what they mean."""

    scenario: str
    title: str
    options: Options
    params: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    runs: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0

    def add_run(self, figures: Mapping[str, float]) -> None:
        self.runs.append({k: float(v) for k, v in figures.items()})

    def summary(self) -> dict[str, dict[str, float]]:
        """figure -> {median, min, max, n} over the runs that reported it."""
        names: list[str] = []
        for run in self.runs:
            names.extend(k for k in run if k not in names)
        out: dict[str, dict[str, float]] = {}
        for name in names:
            values = [run[name] for run in self.runs if name in run]
            out[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
        return out

    def verdicts(self) -> list[dict[str, Any]]:
        summary = self.summary()
        out = []
        for t in self.targets:
            value = summary.get(t.figure, {}).get("median")
            met = None if value is None else (value >= t.limit if t.op == ">=" else value <= t.limit)
            out.append({"target": t.name, "figure": t.figure, "op": t.op, "limit": t.limit, "value": value, "met": met})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "quick": self.options.quick,
            "runs_requested": self.options.runs,
            "machine": machine_info(),
            "knobs": knobs(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "seconds": round(self.seconds, 1),
            "params": self.params,
            "units": self.units,
            "figures": self.summary(),
            "runs": self.runs,
            "targets": self.verdicts(),
            "notes": self.notes,
            "extra": self.extra,
        }

    def table(self) -> str:
        """The scenario's figures as a Markdown table (median, min, max over the runs)."""
        lines = [f"{self.title}: median of {len(self.runs)} run(s)", ""]
        if knobs():
            lines += ["experiment knobs: " + ", ".join(f"{k}={v}" for k, v in knobs().items()), ""]
        lines += [
            "| figure | median | min | max | unit |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for name, s in self.summary().items():
            unit = self.units.get(name, "")
            lines.append(f"| {name} | {fmt(s['median'])} | {fmt(s['min'])} | {fmt(s['max'])} | {unit} |")
        verdicts = self.verdicts()
        if verdicts:
            lines += ["", "| target | figure | median | met |", "| --- | --- | ---: | --- |"]
            for v in verdicts:
                met = "n/a" if v["met"] is None else ("met" if v["met"] else "missed")
                value = "n/a" if v["value"] is None else fmt(v["value"])
                lines.append(f"| {v['target']} | {v['figure']} {v['op']} {fmt(v['limit'])} | {value} | {met} |")
        for note in self.notes:
            lines.append(f"\n- {note}")
        return "\n".join(lines)

    def write(self) -> Path:
        self.options.out.mkdir(parents=True, exist_ok=True)
        path = self.options.out / f"{self.scenario}.json"
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
        return path


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); NaN for no samples."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    return float(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))])


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "grpc": grpc.__version__,
        "loadavg": load,
        "psutil": optional_module("psutil") is not None,
    }


def optional_module(name: str) -> Any:
    """The module, or None if it is not installed (psutil, redis: the benchmarks work without them)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (its threads included); NaN if gone."""
    psutil = optional_module("psutil")
    try:
        if psutil is not None:
            t = psutil.Process(pid).cpu_times()
            return float(t.user + t.system)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except Exception:
        return float("nan")


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class CpuMeter:
    """CPU used by named processes between ``start()`` and ``stop()``, in cores (CPU s per wall s)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self.cores: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        self.cores = {
            name: round((cpu_seconds(pid) - self._c0[name]) / wall, 3) if wall > 0 else 0.0
            for name, pid in self.pids.items()
        }
        return self.cores


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


async def spawn(module: str, *args: str, log: Path | None = None) -> asyncio.subprocess.Process:
    """Start ``python -m module args`` with stdout piped (JSON results) and stderr to ``log``."""
    stderr: Any = asyncio.subprocess.DEVNULL
    handle = None
    if log is not None:
        handle = open(log, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
        stderr = handle
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=child_env(),
        )
    finally:
        if handle is not None:
            handle.close()


def emit_result(result: Mapping[str, Any]) -> None:
    """A child's result: one JSON line on stdout, written whole. (gRPC and uvloop can leave the inherited pipe
    non-blocking, where a large ``print`` may be cut short.)"""
    sys.stdout.flush()
    data = memoryview((json.dumps(result) + "\n").encode())
    fd = sys.stdout.fileno()
    os.set_blocking(fd, True)
    while data:
        data = data[os.write(fd, data) :]


async def read_json(proc: asyncio.subprocess.Process, within: float) -> dict[str, Any]:
    """Wait for a child to exit and return the JSON object on the last line of its stdout."""
    assert proc.stdout is not None
    try:
        data = await asyncio.wait_for(proc.stdout.read(), within)
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise TimeoutError(f"child {proc.pid} produced no result within {within} s") from None
    lines = [ln for ln in data.decode().splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {proc.pid} exited {proc.returncode} without a JSON result")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_loop(main: Callable[[], Any]) -> Any:
    """Run ``main()`` (a coroutine function) on uvloop when installed, as the servers do."""
    uvloop = optional_module("uvloop")
    if uvloop is not None:
        return uvloop.run(main())
    return asyncio.run(main())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BenchMesh(ProcessMesh):
    """A ProcessMesh whose broadcasters dial the peer addresses given per region (``peers``), so that the
    gossip links between regions can run through delay proxies."""

    peers: Mapping[str, Sequence[str]] | None = None
    metrics: bool = False
    """Serve Prometheus /metrics from each region's broadcaster process (``metrics_addresses``)."""
    metrics_addresses: dict[str, str] = field(default_factory=dict)

    async def __aenter__(self) -> BenchMesh:
        if self.data_dir is None:
            import tempfile

            self._tmp = tempfile.TemporaryDirectory(prefix="reactmesh-bench-")
            self.data_dir = Path(self._tmp.name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.plans = plan(self.regions, self.base_port, self.data_dir)
        overrides = merge_overrides(self.overrides, env_overrides())
        for r, p in self.plans.items():
            configs = p.split_configs(overrides) if self.layout == "split" else p.process_configs(overrides)
            name = "bcast" if self.layout == "split" else "main"
            if self.peers is not None:
                configs[name]["broadcaster"]["peers"] = list(self.peers.get(r, ()))
            if self.metrics:
                address = f"127.0.0.1:{free_port()}"
                configs[name]["metrics_listen"] = address
                self.metrics_addresses[r] = address
            for name, cfg in configs.items():
                (self.data_dir / f"{r}-{name}.toml").write_text(to_toml(cfg))
            for name in configs:
                await self.start(r, name)
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop_all()
            raise
        return self

    def pids(self) -> dict[str, int]:
        return {f"{r}-{name}": p.pid for (r, name), p in self.procs.items() if p.returncode is None}


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), grace)
    except ProcessLookupError:
        return
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def query_totals(address: str, streams: Sequence[str]) -> dict[str, int]:
    """ "stream/emoji" -> total, as the Query service at ``address`` has merged them so far."""
    from reactmesh.v1 import query_pb2, query_pb2_grpc

    out: dict[str, int] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        replies = await asyncio.gather(
            *(stub.GetTotals(query_pb2.GetTotalsRequest(stream_id=s), timeout=10) for s in streams)
        )
        for s, reply in zip(streams, replies, strict=True):
            for c in reply.totals:
                out[f"{s}/{c.emoji}"] = int(c.count)
    return out


async def wait_totals(address: str, expected: Mapping[str, int], within: float) -> tuple[bool, float]:
    """Poll until the totals at ``address`` equal ``expected`` exactly; (matched, seconds waited)."""
    streams = sorted({k.rsplit("/", 1)[0] for k in expected})
    want = {k: v for k, v in expected.items() if v}
    started = time.monotonic()
    while True:
        got = await query_totals(address, streams)
        if got == want:
            return True, time.monotonic() - started
        if time.monotonic() - started > within:
            return False, time.monotonic() - started
        await asyncio.sleep(0.1)


def merge_accepted(results: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.get("accepted", {}).items():
            total[k] = total.get(k, 0) + int(v)
    return total
