"""``reactmesh serve``: run one or more roles of a region node in this process.

Stops gracefully on SIGTERM or SIGINT, or when its supervisor dies (``--supervisor-fd``, see
``region_node.supervise``), within ``STOP_BOUND_S``: the node's stop takes about ``STOP_GRACE_S``, and a
watchdog ends the process with status 1 if the stop, or the interpreter's exit after it, takes longer.
A role that cannot listen on its address ends the process at once with one line on stderr and status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading

STOP_GRACE_S = 5.0
STOP_BOUND_S = STOP_GRACE_S + 5.0


async def run_serve(args: argparse.Namespace) -> int:
    """Run the roles of ``args.target`` in this process until SIGTERM or SIGINT."""
    config_path, targets = args.config, args.target
    from reactmesh.region_node import config as config_module
    from reactmesh.region_node.logs import set_context
    from reactmesh.region_node.node import Node
    from reactmesh.region_node.supervise import ParentLink

    cfg = config_module.load(config_path)
    set_context(region=cfg.region, role=",".join(sorted(targets)), node=_node_name(cfg))
    node = Node(cfg, targets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link = ParentLink(args.supervisor_fd, stop.set) if args.supervisor_fd is not None else None
    try:
        await node.start()
    except OSError as exc:  # BindError and the metrics listener's OSError: the address is taken or not ours
        print(f"reactmesh serve: {exc}", file=sys.stderr, flush=True)
        _arm_watchdog(STOP_BOUND_S)
        await node.stop(grace=1.0)  # close what did start (stores), so the exit does not wait on their threads
        return 1
    for role, address in sorted(node.addresses.items()):
        print(f"reactmesh {role} region={cfg.region} listening on {address}", flush=True)
    if link is not None:
        link.ready()
    await stop.wait()
    _arm_watchdog(STOP_BOUND_S)
    await node.stop(grace=STOP_GRACE_S)
    if link is not None:
        link.close()
    return 0


def _arm_watchdog(seconds: float) -> None:
    """End the process with status 1 in ``seconds`` whatever the event loop or interpreter exit is waiting on."""

    def expire() -> None:
        sys.stderr.write(f"reactmesh serve: did not stop within {seconds:.0f} s; exiting\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _node_name(cfg: object) -> str:
    """The node id of the process's first role that has one (aggregator, then broadcaster), else ''."""
    aggregator = getattr(cfg, "aggregator", None)
    if aggregator is not None:
        return str(aggregator.config.node_id)
    broadcaster = getattr(cfg, "broadcaster", None)
    return str(broadcaster.node_id) if broadcaster is not None else ""
