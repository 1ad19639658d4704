"""The moderation of one broadcaster: mutes, drains and abuse flags that hold in every region.

Where it lives. Three ExpiringMaps (``merge.expiring``) of the node's RegionState: MUTES (viewer id -> mute),
DRAINS (stream id -> drain), FLAGS (viewer id -> abuse flag, written by edges). Gossip carries them everywhere
(``region_node.state.region_route``): a broadcaster sends them to the other regions' broadcasters and to its
aggregators, aggregators to their edges, so a mute taken here rejects the viewer's taps at every edge of every
region within a few gossip rounds (milliseconds per hop); edges send their flags the other way.

What a moderator can rely on:

- Last writer wins per viewer or stream, by hybrid-logical-clock stamp: an unmute issued after a mute (anywhere,
  once this node has heard of the mute) lifts it in every region; the node's clock is advanced past every stamp
  it merges before it stamps an action.
- Mute, unmute and drain are answered only after the record is in the node's moderation file (SQLite, WAL,
  ``region_node.moderation.store``); changes merged from peers are written too, so a restarted broadcaster
  serves and re-gossips what it knew even if every other node restarted with it.
- A drain makes this broadcaster flush the stream's pending counts in its next frame, marked ``drained``, and
  every broadcaster that merges the drain does the same; edges reject the stream's taps (STREAM_DRAINED) until
  the drain's end (default one day).
- Memory and disk hold only records whose stamp is within 30 days (the longest duration): every action raises
  the map's floor to now - 30 days, which drops older records in every replica and in the file.

Validation (status codes): INVALID_ARGUMENT for a viewer id not 1..128 chars, a malformed stream id, a duration
outside 1..2,592,000 s, a reason over 280 chars, a limit over 1000; UNAVAILABLE when the file cannot be written
(the action may still take effect through gossip; retrying is safe, an action is a register write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reactmesh.edge.errors import invalid_argument, unavailable
from reactmesh.edge.limits import VIEWER_ID_FORM, is_viewer_id
from reactmesh.edge.moderation import FlagNote
from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ClockDriftError
from reactmesh.merge.expiring import MAX_DURATION_MS, Expiring, ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp, HybridLogicalClock
from reactmesh.merge.replica import ReplicaState
from reactmesh.region_node.broadcaster.core import check_stream_id
from reactmesh.region_node.moderation.store import ModerationStore
from reactmesh.region_node.state import DRAINS, FLAGS, MODERATION, MUTES

log = logging.getLogger(__name__)

MAX_DURATION_S = MAX_DURATION_MS // 1000
DEFAULT_DRAIN_S = 86_400
MAX_REASON_CHARS = 280
DEFAULT_LIST = 100
MAX_LIST = 1000


class DrainTarget(Protocol):
    """What moderation needs of the broadcaster: drain a stream as of a time."""

    def drain(self, stream_id: str, at_ms: int | None = None) -> int: ...


@dataclass(frozen=True)
class Flagged:
    """A flag in force, as the Admin API lists it."""

    viewer_id: str
    kind: str
    detail: str
    raised_at_ms: int
    until_ms: int
    raised_by: str


@dataclass(frozen=True)
class ModerationStatistics:
    mutes_in_force: int
    drains_in_force: int
    flags_in_force: int
    records: int
    actions: int
    saves: int
    store_errors: int
    clock_drift_rejections: int


def _check_duration(duration_s: int) -> None:
    if not 1 <= duration_s <= MAX_DURATION_S:
        raise invalid_argument(f"duration_s must be 1..{MAX_DURATION_S} seconds, got {duration_s}")


def _check_viewer(viewer_id: str) -> None:
    if not is_viewer_id(viewer_id):
        raise invalid_argument(f"viewer_id must be {VIEWER_ID_FORM}, got {viewer_id[:140]!r}")


def _limit(limit: int) -> int:
    if limit > MAX_LIST:
        raise invalid_argument(f"limit must be at most {MAX_LIST}, got {limit}")
    return limit or DEFAULT_LIST


class ModerationBook:
    """Validates, stamps, applies and stores moderator actions; drains the broadcaster on every drain merged.

    ``state`` must hold the MUTES, DRAINS and FLAGS ExpiringMaps (every RegionState does). ``start()`` runs the
    writer of peer changes; ``stop()`` writes what is left and closes the file.
    """

    def __init__(
        self,
        state: ReplicaState,
        hlc: HybridLogicalClock,
        clock: Clock,
        *,
        store: ModerationStore | None = None,
        drains_to: DrainTarget | None = None,
    ) -> None:
        self._state = state
        self._maps = {name: state.collection(name, ExpiringMap) for name in sorted(MODERATION)}
        self._hlc = hlc
        self._clock = clock
        self._store = store
        self._drains_to = drains_to
        self._saved = {name: 0 for name in self._maps}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._actions = 0
        self._saves = 0
        self._store_errors = 0
        self._drift = 0
        state.add_listener(self._on_merge)
        self._on_merge(DRAINS, self._maps[DRAINS], list(self._maps[DRAINS]))

    # -- actions -----------------------------------------------------------------------------

    async def mute(self, viewer_id: str, duration_s: int, reason: str = "", actor: str = "") -> int:
        """Mute ``viewer_id`` everywhere for ``duration_s``; return when it ends (Unix ms), once durable."""
        _check_viewer(viewer_id)
        _check_duration(duration_s)
        if len(reason) > MAX_REASON_CHARS:
            raise invalid_argument(f"reason must be at most {MAX_REASON_CHARS} chars, got {len(reason)}")
        stamp = self._stamp()
        until = stamp.wall_ms + duration_s * 1000
        await self._write(MUTES, viewer_id, until, stamp, reason, actor)
        return until

    async def unmute(self, viewer_id: str, actor: str = "") -> None:
        """Lift ``viewer_id``'s mute everywhere, once durable (a no-op record if none is in force)."""
        _check_viewer(viewer_id)
        await self._write(MUTES, viewer_id, 0, self._stamp(), "", actor)

    async def drain(self, stream_id: str, duration_s: int = 0, actor: str = "") -> int:
        """Drain ``stream_id`` everywhere for ``duration_s`` (0: a day); return when it took effect (Unix ms).

        Draining a stream already drained keeps the first drain's time and extends nothing.
        """
        check_stream_id(stream_id)
        duration_s = duration_s or DEFAULT_DRAIN_S
        _check_duration(duration_s)
        now = self._clock.wall_ms()
        current = self._maps[DRAINS].in_force(stream_id, now)
        if current is not None:
            return current.stamp.wall_ms
        stamp = self._stamp()
        await self._write(DRAINS, stream_id, stamp.wall_ms + duration_s * 1000, stamp, "", actor)
        return stamp.wall_ms

    def drained_at(self, stream_id: str) -> int | None:
        """When the drain of ``stream_id`` in force took effect (Unix ms), or None."""
        record = self._maps[DRAINS].in_force(stream_id, self._clock.wall_ms())
        return record.stamp.wall_ms if record is not None else None

    def muted(self, limit: int = 0) -> list[tuple[str, Expiring]]:
        """Mutes in force, latest first, at most ``limit`` (0: 100)."""
        return self._in_force(MUTES, _limit(limit))

    def flagged(self, limit: int = 0) -> list[Flagged]:
        """Flags in force, latest first, at most ``limit`` (0: 100)."""
        out = []
        for viewer_id, r in self._in_force(FLAGS, _limit(limit)):
            note = FlagNote.parse(r.note)
            out.append(Flagged(viewer_id, note.kind, note.detail, r.stamp.wall_ms, r.until_ms, r.actor))
        return out

    def _in_force(self, name: str, limit: int) -> list[tuple[str, Expiring]]:
        items = list(self._maps[name].items_in_force(self._clock.wall_ms()))
        items.sort(key=lambda kv: kv[1].stamp, reverse=True)
        return items[:limit]

    def _stamp(self) -> HlcTimestamp:
        """A fresh stamp, after every stamp this node has merged (within the drift bound)."""
        for m in self._maps.values():
            latest = m.latest_stamp()
            if latest is not None:
                try:
                    self._hlc.update(latest)
                except ClockDriftError as exc:
                    self._drift += 1
                    log.warning("moderation stamp from a peer not used to advance the clock: %s", exc)
        return self._hlc.now()

    async def _write(self, name: str, key: str, until: int, stamp: HlcTimestamp, note: str, actor: str) -> None:
        delta = ExpiringMap()
        delta.set(key, until, stamp, note=note, actor=actor)
        delta.expire(self._clock.wall_ms() - MAX_DURATION_MS)
        self._state.merge(name, delta)  # through the state, so gossip, the drain and the writer hear of it
        self._actions += 1
        await self._durable()

    # -- changes -----------------------------------------------------------------------------

    def _on_merge(self, collection: str, coll: Any, changed: Sequence[Any]) -> None:
        if collection not in self._maps:
            return
        if collection == DRAINS and self._drains_to is not None:
            now = self._clock.wall_ms()
            for stream_id in changed:
                record = coll.in_force(stream_id, now)
                if record is None:
                    continue
                try:
                    self._drains_to.drain(stream_id, record.stamp.wall_ms)
                except Exception as exc:  # a malformed id from a peer must not stop the merge
                    log.warning("drain of %r from gossip not applied: %s", stream_id, exc)
        if self._store is not None:
            self._wake.set()

    # -- durability --------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write every change not yet in the file, in one transaction; return the records written."""
        store = self._store
        if store is None:
            return 0
        async with self._lock:
            deltas: dict[str, ExpiringMap] = {}
            upto: dict[str, int] = {}
            for name, m in self._maps.items():
                if m.version > self._saved[name]:
                    deltas[name], upto[name] = m.delta_since(self._saved[name])
            if not deltas:
                return 0
            written = await store.save(deltas)
            self._saved.update(upto)
            self._saves += 1
            return written

    async def _durable(self) -> None:
        if self._store is None:
            return
        try:
            await self.flush()
        except Exception as exc:
            self._store_errors += 1
            raise unavailable(f"moderation file write failed: {exc}") from exc

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                self._store_errors += 1
                log.error("moderation file write failed: %s", exc)
                await self._clock.sleep(1.0)
                self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self._store is not None:
            self._task = asyncio.create_task(self._write_loop(), name="moderation-writer")

    async def stop(self) -> None:
        """Stop the writer, write what is left, close the file. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store, self._store = self._store, None
        if store is None:
            return
        try:
            self._store = store
            await self.flush()
        finally:
            self._store = None
            await store.close()

    def statistics(self) -> ModerationStatistics:
        now = self._clock.wall_ms()
        counts = {name: sum(1 for _ in m.items_in_force(now)) for name, m in self._maps.items()}
        return ModerationStatistics(
            mutes_in_force=counts[MUTES],
            drains_in_force=counts[DRAINS],
            flags_in_force=counts[FLAGS],
            records=sum(len(m) for m in self._maps.values()),
            actions=self._actions,
            saves=self._saves,
            store_errors=self._store_errors,
            clock_drift_rejections=self._drift,
        )


async def open_moderation(
    state: ReplicaState,
    clock: Clock,
    node_id: str,
    db_path: str | None,
    drains_to: DrainTarget | None = None,
    max_drift_ms: int = HybridLogicalClock.DEFAULT_MAX_DRIFT_MS,
) -> ModerationBook:
    """Load the node's moderation from ``db_path`` (None: memory only) into ``state`` and start its writer.

    The HLC (replica ``node_id + "/admin"``) starts after the greatest stamp loaded.
    """
    store = await ModerationStore.open(db_path) if db_path is not None else None
    try:
        if store is not None:
            for name, m in (await store.load(tuple(sorted(MODERATION)))).items():
                state.merge(name, m)
        latest = max(
            (s for name in MODERATION if (s := state.collection(name, ExpiringMap).latest_stamp()) is not None),
            default=None,
        )
        after = latest if latest is not None and latest.wall_ms - clock.wall_ms() <= max_drift_ms else None
        hlc = HybridLogicalClock(f"{node_id}/admin", clock, max_drift_ms, after=after)
        book = ModerationBook(state, hlc, clock, store=store, drains_to=drains_to)
    except BaseException:
        if store is not None:
            await store.close()
        raise
    book.start()
    return book
