"""Ended streams leave a broadcaster's memory; their totals come back from its store when needed.

A stream idle past ``idle_stream_s`` (no frame, no subscriber, nothing pending, no drained frame owed; a drained
stream only when the node keeps its drains elsewhere, ``Broadcaster.set_drain_lookup``) is *evicted*: its
channel and its totals leave the replica (the node's history store has them: region_node.windows.sealer writes
every total that grows). It comes back *cold*: when gossip grows one of its totals, or when a viewer subscribes.
A cold stream's stored totals are loaded (``TotalsLoader``) and merged into the replica while the stream is
*loading*: growth in that time is taken as already shown (it is in every snapshot from then on) rather than
smoothed, exactly as for state merged before the broadcaster started. A subscriber waits for the load
(``Broadcaster.warm``), so its snapshot holds the full totals. Only streams nobody watches are ever evicted, so no
viewer sees a frame skip.

Loading is one store read per stream that comes back (or is new), off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.state import TOTALS, RegionState

log = logging.getLogger(__name__)

TotalsLoader = Callable[[str], Awaitable[Mapping[str, Mapping[str, int]]]]
"""stream -> its stored totals slots, emoji -> replica -> count ({} for a stream never stored)."""


class ColdStreams:
    """The loads of cold streams: which are loading, and the tasks that load them."""

    def __init__(self, state: RegionState, loader: TotalsLoader) -> None:
        self._state = state
        self._loader = loader
        self._loading: dict[str, asyncio.Future[None]] = {}
        self.loads = 0
        self.load_failures = 0

    def loading(self, stream_id: str) -> bool:
        return stream_id in self._loading

    def start(self, stream_id: str) -> asyncio.Future[None]:
        """Load ``stream_id``'s stored totals into the replica (once, however often it is asked)."""
        task = self._loading.get(stream_id)
        if task is None:
            task = self._loading[stream_id] = asyncio.ensure_future(self._load(stream_id))
        return task

    async def _load(self, stream_id: str) -> None:
        try:
            stored = await self._loader(stream_id)
            delta = KeyedGCounter()
            for emoji, slots in stored.items():
                for replica, count in slots.items():
                    delta.increment((stream_id, emoji), replica, count)
            if len(delta):
                self._state.merge(TOTALS, delta)  # still loading: the broadcaster takes it as shown
            self.loads += 1
        except Exception:
            self.load_failures += 1
            log.exception("broadcaster: loading stored totals of %r failed (kept what gossip brings)", stream_id)
        finally:
            self._loading.pop(stream_id, None)

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        self._loading.clear()
