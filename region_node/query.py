"""The Query service: exact totals and per-second history of a stream, read from a ReplicaState.

``GetTotals`` answers the totals merged by this node so far (exact, unsmoothed). ``GetHistory``
sums the per-second ``windows`` (keys (stream, emoji, window_start_s)) of [start_s, end_s) into
buckets of ``step_s`` seconds aligned to ``start_s`` (bucket b covers [b, b + step_s)), and returns
only non-zero buckets, ascending.

With a ``history`` reader (a broadcaster's store, region_node.windows), windows come from two places and
the answer is exact over both: sealed windows (before the seal line, ``sealed_before()``) from disk, summed
by SQLite; open windows from memory, each slot the maximum of memory and disk (a restarted node may hold on
disk a slot that gossip has not brought back yet). Without one, memory only (open windows).

A query never scans other streams' keys: a state listener keeps, per stream, the set of emojis
with totals and, per (stream, emoji), the sorted starts of open windows, so the memory side costs
O(log n + windows in the range); ``forget_windows_before`` trims the index when windows are sealed.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from reactmesh.edge.errors import ServiceError, abort_with, invalid_argument
from reactmesh.edge.limits import EMOJI_FORM, is_emoji
from reactmesh.merge.clock import Clock, SystemClock
from reactmesh.merge.keyed import Key, KeyedGCounter
from reactmesh.region_node.broadcaster.core import check_stream_id
from reactmesh.region_node.state import TOTALS, WINDOWS, RegionState
from reactmesh.region_node.windows.digests import HistoryReader
from reactmesh.v1 import common_pb2, query_pb2, query_pb2_grpc

MAX_POINTS = 86_400


class QueryServicer(query_pb2_grpc.QueryServicer):
    """Serves ``reactmesh.v1.Query`` from one node's ReplicaState."""

    SERVICE_NAME = "reactmesh.v1.Query"

    def __init__(
        self,
        state: RegionState,
        clock: Clock | None = None,
        history: HistoryReader | None = None,
        sealed_before: Callable[[], int] | None = None,
    ) -> None:
        if (history is None) != (sealed_before is None):
            raise ValueError("history and sealed_before go together")
        self._state = state
        self._clock = clock or SystemClock()
        self._history = history
        self._sealed_before = sealed_before
        self._emojis: dict[str, set[str]] = {}
        self._windows: dict[str, dict[str, list[int]]] = {}
        total_keys, window_keys = state.totals.keys(), state.windows.keys()
        for key in total_keys:
            self._index_total(key)
        for key in window_keys:
            if len(key) == 3 and isinstance(key[0], str) and isinstance(key[1], str) and isinstance(key[2], int):
                self._windows.setdefault(key[0], {}).setdefault(key[1], []).append(key[2])
        for by_emoji in self._windows.values():
            for starts in by_emoji.values():
                starts.sort()
        state.add_listener(self._on_merge)

    # -- index -------------------------------------------------------------------------------

    def _on_merge(self, collection: str, _: KeyedGCounter, grown: list[Key]) -> None:
        if collection == TOTALS:
            for key in grown:
                self._index_total(key)
        elif collection == WINDOWS:
            for key in grown:
                self._index_window(key)

    def _index_total(self, key: Key) -> None:
        if len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], str):
            emojis = self._emojis.get(key[0])
            if emojis is None:
                emojis = self._emojis[key[0]] = set()
            emojis.add(key[1])

    def _index_window(self, key: Key) -> None:
        if len(key) != 3:
            return
        stream_id, emoji, start = key
        if not isinstance(stream_id, str) or not isinstance(emoji, str) or not isinstance(start, int):
            return
        by_emoji = self._windows.get(stream_id)
        if by_emoji is None:
            by_emoji = self._windows[stream_id] = {}
        starts = by_emoji.get(emoji)
        if starts is None:
            by_emoji[emoji] = [start]
        elif start > starts[-1]:
            starts.append(start)
        elif start != starts[-1]:
            i = bisect_left(starts, start)
            if i == len(starts) or starts[i] != start:
                insort(starts, start, lo=i)

    def forget_windows_before(self, start_s: int) -> int:
        """Drop index entries of windows starting before ``start_s`` (after retention pruned them)."""
        dropped = 0
        for by_emoji in self._windows.values():
            for emoji, starts in list(by_emoji.items()):
                i = bisect_left(starts, start_s)
                if i:
                    del starts[:i]
                    dropped += i
                if not starts:
                    del by_emoji[emoji]
        for stream_id in [s for s, by_emoji in self._windows.items() if not by_emoji]:
            del self._windows[stream_id]
        return dropped

    # -- reading -----------------------------------------------------------------------------

    def forget_streams(self, streams: set[str]) -> None:
        """Drop the index entries of streams that left memory (their totals are read from disk from now on)."""
        for stream_id in streams:
            self._emojis.pop(stream_id, None)
            self._windows.pop(stream_id, None)

    async def totals(self, stream_id: str) -> dict[str, int]:
        """Exact merged totals of the stream, by emoji: from memory, or for a stream that left memory from the
        history store. Raises ServiceError for a bad stream id."""
        check_stream_id(stream_id)
        emojis = self._emojis.get(stream_id)
        if emojis is None and self._history is not None:
            stored = await self._history.stored_totals(stream_id)
            return {emoji: sum(slots.values()) for emoji, slots in sorted(stored.items())}
        values = self._state.totals
        return {emoji: values.value((stream_id, emoji)) for emoji in sorted(emojis or ())}

    async def history(
        self, stream_id: str, start_s: int, end_s: int, step_s: int = 1, emojis: Iterable[str] = ()
    ) -> tuple[int, dict[str, list[tuple[int, int]]]]:
        """(step, emoji -> [(bucket_start_s, count)...]) as GetHistory answers it.

        Every requested emoji gets a series (possibly empty); with none requested, every emoji
        with a non-zero bucket in range. Raises ServiceError INVALID_ARGUMENT for bad input.
        """
        check_stream_id(stream_id)
        step = step_s or 1
        if step < 1:
            raise invalid_argument(f"step_s must be a positive number of seconds, got {step_s}")
        if start_s < 0:
            raise invalid_argument(f"start_s must be Unix seconds >= 0, got {start_s}")
        if end_s <= start_s:
            raise invalid_argument(f"range [start_s, end_s) must be non-empty, got [{start_s}, {end_s})")
        points = -(-(end_s - start_s) // step)
        if points > MAX_POINTS:
            raise invalid_argument(
                f"range of {end_s - start_s} s in steps of {step} s has {points} points per emoji; "
                f"at most {MAX_POINTS}: narrow the range or widen step_s"
            )
        wanted = sorted(set(emojis))
        for emoji in wanted:
            if not is_emoji(emoji):
                raise invalid_argument(f"emoji must be {EMOJI_FORM}, got {emoji[:40]!r}")
        buckets: dict[str, dict[int, int]] = {e: {} for e in wanted}

        def add(emoji: str, s: int, count: int) -> None:
            if count:
                per = buckets.get(emoji)
                if per is None:
                    per = buckets[emoji] = {}
                b = start_s + (s - start_s) // step * step
                per[b] = per.get(b, 0) + count

        open_from = start_s
        stored: dict[tuple[str, int], dict[str, int]] = {}
        if self._history is not None and self._sealed_before is not None:
            cut = min(end_s, max(start_s, self._sealed_before()))
            if cut > start_s:
                for emoji, b, count in await self._history.window_counts(
                    stream_id, start_s, cut, step, start_s, wanted
                ):
                    if count:
                        per = buckets.setdefault(emoji, {})
                        per[b] = per.get(b, 0) + count
            open_from = cut
            if open_from < end_s:
                for s, emoji, replica, count in await self._history.window_slots(stream_id, open_from, end_s):
                    if not wanted or emoji in wanted:
                        stored.setdefault((emoji, s), {})[replica] = count
        by_emoji = self._windows.get(stream_id, {})
        windows = self._state.windows
        for emoji in wanted or sorted(by_emoji):
            starts = by_emoji.get(emoji)
            if starts:
                lo, hi = bisect_left(starts, open_from), bisect_left(starts, end_s)
                for s in starts[lo:hi]:
                    slots = windows.slots((stream_id, emoji, s))
                    disk = stored.pop((emoji, s), None)
                    if disk is None:
                        add(emoji, s, sum(slots.values()))
                    else:
                        merged = dict(disk)
                        for replica, count in slots.items():
                            if count > merged.get(replica, 0):
                                merged[replica] = count
                        add(emoji, s, sum(merged.values()))
        for (emoji, s), disk in stored.items():
            add(emoji, s, sum(disk.values()))
        out: dict[str, list[tuple[int, int]]] = {}
        for emoji in sorted(buckets):
            series = buckets[emoji]
            if series or emoji in wanted:
                out[emoji] = sorted(series.items())
        return step, out

    # -- gRPC --------------------------------------------------------------------------------

    async def GetTotals(
        self, request: query_pb2.GetTotalsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.GetTotalsResponse:
        try:
            totals = await self.totals(request.stream_id)
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return query_pb2.GetTotalsResponse(
            stream_id=request.stream_id,
            totals=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in totals.items()],
            as_of_ms=self._clock.wall_ms(),
        )

    async def GetHistory(
        self, request: query_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.GetHistoryResponse:
        try:
            step, series = await self.history(
                request.stream_id, request.start_s, request.end_s, request.step_s, request.emojis
            )
        except ServiceError as err:
            await abort_with(context, err)
            raise
        return query_pb2.GetHistoryResponse(
            stream_id=request.stream_id,
            step_s=step,
            series=[
                query_pb2.HistorySeries(
                    emoji=emoji, points=[query_pb2.HistoryPoint(start_s=s, count=n) for s, n in points]
                )
                for emoji, points in series.items()
            ],
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        query_pb2_grpc.add_QueryServicer_to_server(self, server)
