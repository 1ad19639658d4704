"""``reactmesh up``: three (or more) simulated regions on loopback, optionally with a demo load."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from reactmesh.region_node.cli.tlsopts import credentials
from reactmesh.region_node.devmesh import ProcessMesh
from reactmesh.region_node.supervise import ChildFailed

DEMO_STREAM = "demo-0"
"""The stream the overlay URLs open: the demo's hot stream (``cli.demo.HOT``)."""


def overlay_url(gateway: str, stream: str, minter: Any, region: str) -> str:
    """The overlay page of ``stream`` on ``gateway``; with auth, a viewer token for a browser of ``region`` in it."""
    url = f"http://{gateway}/overlay?stream={stream}"
    if minter is not None:
        url += f"&viewer=browser-{region}&token={minter.mint(f'browser-{region}')}"
    return url


async def run_up(args: argparse.Namespace) -> int:
    """``reactmesh up``: start the regions, print endpoints, optionally demo, stop on Ctrl-C."""
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    data_dir = Path(args.data_dir) if args.data_dir else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    auth = getattr(args, "auth", False)
    mesh = ProcessMesh(regions=regions, base_port=args.base_port, data_dir=data_dir, auth=auth, tls=args.tls)
    try:
        await mesh.__aenter__()
    except (ChildFailed, TimeoutError) as exc:
        print(f"reactmesh up: {exc}; every process is stopped.", file=sys.stderr)
        if isinstance(exc, ChildFailed) and exc.log is not None:
            print(f"last lines of {exc.log}:", file=sys.stderr)
            for line in exc.log_tail():
                print(f"  {line}", file=sys.stderr)
        print(f"data and logs kept in {mesh.data_dir}", file=sys.stderr)
        return 1
    try:
        print(f"reactmesh up: {len(regions)} regions, data in {mesh.data_dir}")
        minter = None
        if mesh.auth_key is not None:
            from reactmesh.edge.tokens import Minter

            minter = Minter(mesh.auth_key, ttl_s=int(args.duration or 86_400) + 3600)
            print(f"  auth: ON, HS256 dev key {mesh.auth_key}; mint tokens with")
            print(f"    export REACTMESH_AUTH_KEY={mesh.auth_key}")
            print("    reactmesh token --sub viewer-42            (or --role host --stream demo-0, --role moderator)")
        else:
            print("  auth: OFF, every client call is anonymous (reactmesh up --auth requires tokens)")
        creds = None
        if mesh.client_tls is not None:
            creds = credentials(str(mesh.client_tls.ca_file))
            print(f"  mTLS between nodes, TLS for viewers: pass --tls-ca {mesh.client_tls.ca_file} to load/watch/poll")
        for r, p in mesh.plans.items():
            metrics = int(p.edge.rsplit(":", 1)[1]) + 5
            print(
                f"  region {r}: edge {p.edge}  aggregators {', '.join(p.aggregators)}  "
                f"broadcaster+query {p.broadcaster}  metrics :{metrics} :{metrics + 1}"
                + (f"  gossip peers {p.peer_listen}" if p.peer_listen else "")
            )
        for r, p in mesh.plans.items():
            if p.gateway is not None:
                print(f"  region {r}: browsers  {overlay_url(p.gateway, DEMO_STREAM, minter, r)}")
        print("Ctrl-C stops every process.", flush=True)
        tasks: list[asyncio.Task[Any]] = []
        if args.duration:
            loop.call_later(args.duration, stop.set)
        if args.demo:
            from reactmesh.region_node.cli.demo import run_demo

            tasks.append(asyncio.create_task(run_demo(mesh.plans, stop, minter, creds)))
        await stop.wait()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=30)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    print(f"demo failed: {t.exception()!r}", file=sys.stderr)
            for t in pending:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        print("stopping...", flush=True)
    finally:
        await mesh.__aexit__(None, None, None)
    print("stopped.")
    return 0
