"""Child processes of the benchmarks: spawning ``python -m`` modules, their JSON results, CPU time and RSS."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from reactmesh.region_node.supervise import Child, start_child

REPO = Path(__file__).resolve().parent.parent


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


def pin(pids: Iterable[int], cpus: set[int]) -> bool:
    """Run every thread of each process in ``pids`` on ``cpus`` only (threads they start later inherit it);
    False where this machine cannot (not Linux, fewer CPUs, or not permitted)."""
    if not hasattr(os, "sched_setaffinity") or not cpus <= os.sched_getaffinity(0):
        return False
    try:
        for pid in pids:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(tid), cpus)
    except (OSError, ValueError):
        return False
    return True


class CpuQuota:
    """A CPU quota shared by a set of processes: a cgroup (v1 ``cpu`` or v2 with the cpu controller) allowing
    ``cores`` CPU per wall second, enforced every ``period_us`` (short, so a throttled process waits
    milliseconds, not a whole 100 ms period). ``add(pids)`` moves processes in (their threads follow); ``close()``
    removes the group. ``CpuQuota.create`` returns None where the machine offers no writable cgroup."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str, cores: float, period_us: int = 10_000) -> CpuQuota | None:
        quota = max(1000, int(cores * period_us))
        for root, v2 in ((Path("/sys/fs/cgroup/cpu"), False), (Path("/sys/fs/cgroup/unified"), True)):
            path = root / name
            try:
                path.mkdir(exist_ok=True)
                if v2:
                    (path / "cpu.max").write_text(f"{quota} {period_us}\n")
                else:
                    (path / "cpu.cfs_period_us").write_text(f"{period_us}\n")
                    (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            return cls(path)
        return None

    def add(self, pids: Iterable[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, OSError):
                (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def close(self) -> None:
        parent = self.path.parent / "cgroup.procs"
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    parent.write_text(f"{pid}\n")
        with contextlib.suppress(OSError):
            self.path.rmdir()


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


async def spawn(module: str, *args: str, log: Path | None = None) -> Child:
    """Start ``python -m module args`` with stdout piped (JSON results) and stderr to ``log``.

    Started by ``supervise.start_child`` (no Python runs between fork and exec), so it is safe while the
    benchmark's own gRPC threads are alive."""
    return await start_child(
        [sys.executable, "-m", module, *args], name=module, log=log, stdout=subprocess.PIPE, env=child_env()
    )


def emit_result(result: Mapping[str, Any]) -> None:
    """A child's result: one JSON line on stdout, written whole. (gRPC and uvloop can leave the inherited pipe
    non-blocking, where a large ``print`` may be cut short.)"""
    sys.stdout.flush()
    data = memoryview((json.dumps(result) + "\n").encode())
    fd = sys.stdout.fileno()
    os.set_blocking(fd, True)
    while data:
        data = data[os.write(fd, data) :]


async def read_json(proc: Child, within: float) -> dict[str, Any]:
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


async def stop_process(proc: Child, grace: float = 5.0) -> None:
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
