"""Lifecycle of real processes (issue 12): bounded graceful stops, no orphans, fast and honest start-up failures,
children started safely while gRPC threads are alive.

Every process here is a real ``reactmesh serve`` or ``reactmesh up`` on loopback; outcomes are polled for, and
the only timings asserted are the promised bounds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from reactmesh.region_node.cli.serve import STOP_GRACE_S
from reactmesh.region_node.devmesh import ProcessMesh, free_port_block
from reactmesh.region_node.supervise import Child, start_child
from tests.support.polling import eventually

STOP_BOUND_S = STOP_GRACE_S + 1.0
"""What a SIGTERMed process may take to exit: its node's stop bound, plus the interpreter's exit."""

ORDERS = ("together", "forward", "backward")


async def sigterm_and_time(children: Sequence[Child], order: str) -> dict[str, tuple[int, float]]:
    """SIGTERM ``children`` (all at once, in order, or in reverse order, 0.2 s apart); name -> (status, seconds)."""
    ordered = list(children) if order != "backward" else list(reversed(children))
    started = {c.name: time.monotonic() for c in ordered}
    out: dict[str, tuple[int, float]] = {}

    async def stop(child: Child) -> None:
        code = await asyncio.wait_for(child.wait(), STOP_BOUND_S + 10)
        out[child.name] = (code, time.monotonic() - started[child.name])

    waits = []
    for child in ordered:
        started[child.name] = time.monotonic()
        child.send_signal(signal.SIGTERM)
        waits.append(asyncio.create_task(stop(child)))
        if order != "together":
            await asyncio.sleep(0.2)
    await asyncio.gather(*waits)
    return out


async def stop_rounds(tmp_path: Path, rounds: int, layout: str) -> list[float]:
    """Start one region ``rounds`` times and SIGTERM its processes in every order; every stop must be clean."""
    worst: list[float] = []
    for i in range(rounds):
        order = ORDERS[i % len(ORDERS)]
        data = tmp_path / f"round-{i}"
        async with ProcessMesh(regions=("a",), base_port=free_port_block(10), data_dir=data, layout=layout) as mesh:
            times = await sigterm_and_time(list(mesh.procs.values()), order)
        for name, (code, seconds) in times.items():
            log = (data / f"a-{name.split()[3]}.log").read_text()
            assert code == 0, f"round {i} ({order}): {name} exited {code}\n{log}"
            assert seconds < STOP_BOUND_S, f"round {i} ({order}): {name} took {seconds:.1f} s\n{log}"
            assert "abandoned" not in log, f"round {i} ({order}): {name} had a stuck stop step\n{log}"
        worst.append(max(s for _, s in times.values()))
    return worst


async def test_every_process_of_a_region_stops_cleanly_on_sigterm_in_every_order(tmp_path: Path) -> None:
    await stop_rounds(tmp_path, rounds=3, layout="combined")


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["combined", "split"])
async def test_twenty_sigterm_stops_of_every_role_never_hang(tmp_path: Path, layout: str) -> None:
    worst = await stop_rounds(tmp_path, rounds=21, layout=layout)
    print(f"{layout}: slowest process per stop, s: {sorted(round(w, 2) for w in worst)}")


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's zombie waits for init, which may not reap)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


UP = [sys.executable, "-m", "reactmesh.region_node.cli", "up"]


def assert_free(ports: Sequence[int]) -> None:
    """Nothing listens on ``ports`` (SO_REUSEADDR: connections of the stopped servers may be in TIME_WAIT)."""
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))


async def start_up(tmp_path: Path, base: int) -> subprocess.Popen[bytes]:
    out = open(tmp_path / "up.out", "wb")  # noqa: SIM115, ASYNC230 - handed to the child
    up = subprocess.Popen(  # noqa: ASYNC220
        [*UP, "--regions", "a", "--base-port", str(base), "--data-dir", str(tmp_path / "data")],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    return up


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_no_child_survives_a_sigkill_of_up(tmp_path: Path) -> None:
    base = free_port_block(10)
    up = await start_up(tmp_path, base)
    try:
        await eventually(lambda: "Ctrl-C stops" in (tmp_path / "up.out").read_text(), within=60)
        kids = children_of(up.pid)
        assert len(kids) == 2, kids  # region a: main and agg1
        up.kill()
        up.wait()
        await eventually(lambda: not any(running(k) for k in kids), within=STOP_BOUND_S + 5)
        assert_free([base, base + 1, base + 2, base + 3])
    finally:
        up.kill()
        up.wait()


async def test_up_on_a_busy_port_fails_fast_naming_the_process_and_keeping_its_logs(tmp_path: Path) -> None:
    base = free_port_block(10)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))  # region a's first aggregator, in the "main" process
        taken.listen()
        up = await start_up(tmp_path, base)
        try:
            started = time.monotonic()
            await eventually(lambda: up.poll() is not None, within=30)
            elapsed = time.monotonic() - started
        finally:
            up.kill()
            up.wait()
    out = (tmp_path / "up.out").read_text()
    assert up.returncode == 1, out
    assert "region a process main (serve --target=all) exited with status 1 before it was ready" in out, out
    assert f"aggregator cannot listen on 127.0.0.1:{base + 1}: Address already in use" in out, out
    assert f"data and logs kept in {tmp_path / 'data'}" in out, out
    assert "Ctrl-C stops" not in out and "Traceback" not in out, out
    assert (tmp_path / "data" / "a-main.log").exists()
    assert elapsed < 20, f"took {elapsed:.1f} s to fail"
    assert_free([base, base + 2, base + 3])  # agg1 was stopped too


async def test_serve_on_a_busy_port_exits_1_at_once_with_one_line(tmp_path: Path) -> None:
    port = free_port_block(1)
    config = tmp_path / "edge.toml"
    config.write_text(f'region = "a"\n[edge]\nlisten = "127.0.0.1:{port}"\naggregators = ["127.0.0.1:1"]\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        child = await start_child(
            [sys.executable, "-m", "reactmesh.region_node.cli", "serve", "--target=edge", "--config", str(config)],
            name="edge",
            log=tmp_path / "edge.log",
        )
        code = await asyncio.wait_for(child.wait(), 30)
    log = (tmp_path / "edge.log").read_text()
    assert code == 1, log
    ours = [line for line in log.splitlines() if line.startswith("reactmesh serve:")]
    assert ours == [
        f"reactmesh serve: edge cannot listen on 127.0.0.1:{port}: Address already in use"
        " (is another reactmesh running?)"
    ], log
    assert "Traceback" not in log, log


async def test_children_start_safely_while_grpc_threads_are_busy_on_uvloop(tmp_path: Path) -> None:
    """bench's spawn (and ProcessMesh) under uvloop, with a gRPC server and client busy in this process: every
    child starts and answers (uvloop's own subprocess path ran Python's after-fork hooks in the child, which could
    spin in threading._after_fork)."""
    script = tmp_path / "spawner.py"
    script.write_text(SPAWNER)
    done = subprocess.run(  # noqa: ASYNC221 - one child that runs the whole check
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GRPC_VERBOSITY": "INFO"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "12 children answered", done.stdout + done.stderr
    # gRPC logs this from its fork handlers, which a fork() (uvloop's way: one per child) runs and a
    # vfork/exec (subprocess without preexec_fn) does not.
    assert "skipping fork() handlers" not in done.stderr, done.stderr


SPAWNER = """
import asyncio, sys
import grpc, uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from reactmesh.bench.procs import spawn

async def main():
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    async def chatter():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not stop.is_set():
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    talkers = [asyncio.create_task(chatter()) for _ in range(4)]
    answered = 0
    for _ in range(12):
        child = await spawn("json.tool", "--help")  # any module; stdout is piped
        await asyncio.wait_for(child.wait(), 20)
        answered += 1
    stop.set()
    await asyncio.gather(*talkers)
    await server.stop(None)
    print(f"{answered} children answered")

uvloop.run(main())
"""
