"""One ``reactmesh serve`` process for a test: its config written to a file, started linked (it says when it is
serving), SIGTERMed and waited for on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from reactmesh.region_node.devmesh import free_port_block, to_toml
from reactmesh.region_node.supervise import Child, start_child


def broadcaster_config(tmp_path: Path, port: int | None = None) -> dict[str, Any]:
    """A region with a broadcaster alone (no sources, no peers), its polls in ``tmp_path``."""
    port = port or free_port_block(1)
    return {
        "region": "a",
        "broadcaster": {
            "listen": f"127.0.0.1:{port}",
            "node_id": "a/bcast-0",
            "sources": [],
            "peers": [],
            "polls_db_path": str(tmp_path / "polls.db"),
        },
    }


async def start_serve(tmp_path: Path, config: Mapping[str, Any], target: str, name: str = "serve") -> Child:
    path = tmp_path / f"{name}.toml"
    path.write_text(to_toml(config))
    return await start_child(
        [sys.executable, "-m", "reactmesh.region_node.cli", "serve", f"--target={target}", "--config", str(path)],
        name=name,
        linked=True,
        log=tmp_path / f"{name}.log",
    )


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, config: Mapping[str, Any], target: str, name: str = "serve") -> AsyncIterator[Child]:
    """A ready ``serve`` process; SIGTERMed (then killed after 10 s) when the block ends."""
    child = await start_serve(tmp_path, config, target, name)
    try:
        await child.ready(30)
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), 10)
        child.kill()
        await child.wait()
