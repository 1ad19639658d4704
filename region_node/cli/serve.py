"""``reactmesh serve``: run one or more roles of a region node in this process."""

from __future__ import annotations

import argparse
import asyncio
import signal


async def run_serve(args: argparse.Namespace) -> int:
    """Run the roles of ``args.target`` in this process until SIGTERM or SIGINT."""
    config_path, targets = args.config, args.target
    from reactmesh.region_node import config as config_module
    from reactmesh.region_node.node import Node

    cfg = config_module.load(config_path)
    node = Node(cfg, targets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    for role, address in sorted(node.addresses.items()):
        print(f"reactmesh {role} region={cfg.region} listening on {address}", flush=True)
    await stop.wait()
    await node.stop()
    return 0
