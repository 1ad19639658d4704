"""webfanout: frames/s delivered per gateway core (WebSocket JSON) next to the gRPC broadcaster's, in one run.

One region as real processes (layout "split") plus a gateway process of its own (``serve --target=gateway``,
pointed at the region's edge and broadcaster). The ``fanout`` scenario's load (``LOAD_RATE`` batches/s over
``STREAMS`` streams, one frame per stream per 100 ms tick) runs throughout. At each step N, first N
``Broadcast.Subscribe`` calls on the broadcaster (``fanout.step``, unchanged), then N WebSockets on the gateway
(this module run as ``python -m reactmesh.bench.scenarios.webfanout child ...``), each recording every delta
frame's delay (arrival wall time - ``server_time_ms``, same clock). The gateway holds one upstream Subscribe per
stream (``STREAMS`` calls, whatever N), so the broadcaster's cost of the WebSocket step stays flat. Each kind steps
up until its p99 delay passes 100 ms; its figure is frames/s per core of the serving process (broadcaster, or
gateway) at the largest N that kept p99 under 100 ms.

The subscriber processes share the machine's cores with the servers; at large N they may be what pushes the delay
up (per-step CPU figures are in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import websockets

from reactmesh.bench.common import EDGE_OVERRIDES, BenchMesh, env_overrides
from reactmesh.bench.procs import CpuMeter, emit_result, read_json, run_loop, spawn, stop_process
from reactmesh.bench.report import Options, Report, Target, percentile
from reactmesh.bench.scenarios import fanout
from reactmesh.region_node.devmesh import free_port_block, to_toml

NAME = "webfanout"
STREAMS = fanout.STREAMS
LOAD_RATE = fanout.LOAD_RATE
CHILDREN = 2


async def child(args: argparse.Namespace) -> dict[str, Any]:
    begin_ms = args.start_at * 1000
    end_ms = begin_ms + args.window * 1000
    frames = 0
    seen = 0
    errors = 0
    delays: list[float] = []
    rng = random.Random(args.seed)

    async def one(i: int) -> None:
        nonlocal frames, seen, errors
        url = f"ws://{args.address}/v1/streams/{args.prefix}-{i % args.streams}"
        try:
            async with websockets.connect(url, max_queue=None) as ws:
                async for text in ws:
                    now_ms = time.time() * 1000
                    m = json.loads(text)
                    if begin_ms <= now_ms < end_ms and m.get("kind") == "delta":
                        frames += 1
                        seen += 1
                        delay = now_ms - m["server_time_ms"]
                        if len(delays) < 20_000:
                            delays.append(delay)
                        else:
                            j = rng.randrange(seen)
                            if j < 20_000:
                                delays[j] = delay
                    elif now_ms >= end_ms:
                        break
        except (OSError, websockets.WebSocketException):
            errors += 1

    tasks = [asyncio.create_task(one(args.offset + i)) for i in range(args.subscribers)]
    await asyncio.sleep(max(0.0, args.start_at + args.window - time.time()) + 0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"frames": frames, "delays_ms": delays, "errors": errors}


async def ws_step(mesh: BenchMesh, n: int, window: float, settle: float) -> dict[str, float]:
    address = mesh.plans["a"].gateway
    assert address is not None
    start_at = time.time() + settle
    per_child = [n // CHILDREN + (1 if i < n % CHILDREN else 0) for i in range(CHILDREN)]
    procs = []
    offset = 0
    for i, k in enumerate(per_child):
        procs.append(
            await spawn(
                "reactmesh.bench.scenarios.webfanout",
                "child",
                "--address",
                address,
                "--subscribers",
                str(k),
                "--offset",
                str(offset),
                "--start-at",
                str(start_at),
                "--window",
                str(window),
                "--seed",
                str(i),
            )
        )
        offset += k
    pids = {
        "gateway": mesh.procs[("a", "gw")].pid,
        "bcast": mesh.procs[("a", "bcast")].pid,
        **{f"subscribers-{i}": p.pid for i, p in enumerate(procs)},
    }
    meter = CpuMeter(pids)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    meter.start()
    await asyncio.sleep(window)
    cores = meter.stop()
    results = [await read_json(p, 60 + window) for p in procs]
    frames = sum(r["frames"] for r in results)
    delays = [d for r in results for d in r["delays_ms"]]
    fps = frames / window
    return {
        "subscribers": n,
        "frames_per_s": fps,
        "delay_p50_ms": percentile(delays, 0.5),
        "delay_p99_ms": percentile(delays, 0.99),
        "gateway_cores": cores["gateway"],
        "bcast_cores": cores["bcast"],
        "frames_per_s_per_core": fps / cores["gateway"] if cores["gateway"] > 0 else float("nan"),
        "subscriber_cores": sum(v for k, v in cores.items() if k.startswith("subscribers")),
        "errors": float(sum(r["errors"] for r in results)),
    }


def _best(table: list[dict[str, float]], prefix: str) -> dict[str, float]:
    ok = [r for r in table if r["delay_p99_ms"] < 100]
    out = {f"{prefix}_max_subscribers_p99_under_100ms": ok[-1]["subscribers"] if ok else 0.0}
    if ok:
        best = ok[-1]
        out[f"{prefix}_frames_per_s_per_core_at_max"] = best["frames_per_s_per_core"]
        out[f"{prefix}_frames_per_s_at_max"] = best["frames_per_s"]
        out[f"{prefix}_delay_p99_ms_at_max"] = best["delay_p99_ms"]
    return out


async def one_run(options: Options, run_no: int) -> tuple[dict[str, float], dict[str, list[dict[str, float]]]]:
    steps = (100, 300) if options.quick else (250, 500, 1000, 1500, 2000, 3000)
    window = 2.0 if options.quick else 3.0
    grpc_table: list[dict[str, float]] = []
    ws_table: list[dict[str, float]] = []
    async with BenchMesh(
        regions=("a",), base_port=free_port_block(10), layout="split", overrides=EDGE_OVERRIDES
    ) as mesh:
        p = mesh.plans["a"]
        assert mesh.data_dir is not None and p.gateway is not None
        gw_fields = {"listen": p.gateway, "edge": p.edge, "broadcaster": p.broadcaster}
        gw = {"region": "a", "gateway": gw_fields | env_overrides().get("gateway", {})}
        (mesh.data_dir / "a-gw.toml").write_text(to_toml(gw))
        await mesh.start("a", "gw")
        await mesh.procs[("a", "gw")].ready(30)
        loader = await spawn(
            "reactmesh.bench.loader",
            *("--edge", p.edge, "--viewers", "200", "--rate", str(LOAD_RATE), "--streams", str(STREAMS)),
            *("--hot-share", str(1 / STREAMS), "--stream-prefix", "fan", "--warmup", "0", "--duration", "3600"),
            *("--seed", str(run_no)),
        )
        try:
            await asyncio.sleep(2.0)
            grpc_done = ws_done = False
            for n in steps:
                if not grpc_done:
                    row = await fanout.step(mesh, n, window, settle=2.0 + n / 2000)
                    grpc_table.append(row)
                    grpc_done = not row["delay_p99_ms"] < 100
                    print(
                        f"    gRPC {n}: {row['frames_per_s']:,.0f} frames/s, p99 {row['delay_p99_ms']:.0f} ms, "
                        f"broadcaster {row['bcast_cores']:.2f} cores",
                        flush=True,
                    )
                if not ws_done:
                    row = await ws_step(mesh, n, window, settle=2.0 + n / 1000)
                    ws_table.append(row)
                    ws_done = not row["delay_p99_ms"] < 100
                    print(
                        f"    WS   {n}: {row['frames_per_s']:,.0f} frames/s, p99 {row['delay_p99_ms']:.0f} ms, "
                        f"gateway {row['gateway_cores']:.2f} cores, broadcaster {row['bcast_cores']:.2f}",
                        flush=True,
                    )
                if grpc_done and ws_done:
                    break
        finally:
            await stop_process(loader)
    return {**_best(grpc_table, "grpc"), **_best(ws_table, "ws")}, {"grpc": grpc_table, "ws": ws_table}


def run(options: Options) -> Report:
    report = Report(NAME, "webfanout: frames/s per gateway core (WebSocket) next to the broadcaster's (gRPC)", options)
    report.params = {"streams": STREAMS, "load_batches_per_s": LOAD_RATE, "subscriber_processes": CHILDREN}
    report.units = {
        "grpc_max_subscribers_p99_under_100ms": "subscribers",
        "grpc_frames_per_s_per_core_at_max": "frames/s/core",
        "grpc_frames_per_s_at_max": "frames/s",
        "grpc_delay_p99_ms_at_max": "ms",
        "ws_max_subscribers_p99_under_100ms": "sockets",
        "ws_frames_per_s_per_core_at_max": "frames/s/core",
        "ws_frames_per_s_at_max": "frames/s",
        "ws_delay_p99_ms_at_max": "ms",
    }
    report.targets = [
        Target(
            "WebSocket frames/s per gateway core at p99 <= 100 ms reported", "ws_frames_per_s_per_core_at_max", ">=", 1
        )
    ]
    steps = []
    for i in range(options.runs):
        print(f"  webfanout run {i + 1}/{options.runs}", flush=True)
        figures, tables = run_loop(partial(one_run, options, i))
        report.add_run(figures)
        steps.append(tables)
    report.extra["steps"] = steps
    report.notes.append(
        "Same mesh, same load, same run: each step measures N gRPC subscribers on the broadcaster, then N WebSockets "
        "on the gateway (one upstream Subscribe per stream). Per core: delivered frames/s / CPU of the serving process."
    )
    return report


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m reactmesh.bench.scenarios.webfanout child")
    p.add_argument("--address", required=True)
    p.add_argument("--subscribers", type=int, required=True)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--streams", type=int, default=STREAMS)
    p.add_argument("--prefix", default="fan")
    p.add_argument("--start-at", type=float, required=True)
    p.add_argument("--window", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    emit_result(run_loop(partial(child, args)))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    raise SystemExit(main(sys.argv[2:]))
