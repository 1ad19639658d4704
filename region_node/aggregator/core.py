"""The aggregator: counts forwarded client batches exactly once and acks the edge only after commit.

Contract (protos/reactmesh/v1/aggregator.proto): an edge keeps one ordered ``Forward`` stream per
aggregator and gets one EdgeAck per EdgeBatch, in batch order, with one outcome per entry.

Guarantees:

- An entry is APPLIED iff its seq is above its session's watermark; the in-memory watermark moves
  at once, so a duplicate inside the same tick is caught. Anything else valid is DUPLICATE; an entry
  with bad fields (session id not 16 bytes, seq 0, stream or emoji malformed, a count of 0 or above
  ``max_count``, no counts, or a batch of more than ``max_entries_per_batch`` entries) is REFUSED
  and nothing of it is counted.
- ``run()`` commits on demand (``commit_interval_ms``): as soon as an EdgeBatch is pending and the previous
  commit is done, at most one commit start per interval, so an ack waits for one commit, not for a timer
  (``commit_interval_ms`` = 0: every ``tick_ms``, as before). An idle aggregator commits nothing.
- ``tick()`` commits everything pending in ONE SQLite transaction (watermarks, this replica's new
  totals and window slots), THEN merges those slots into ``state``, THEN sends the acks of every
  EdgeBatch received before the tick. So an ack always follows the commit that made its entries
  durable (a DUPLICATE too: its original may have been in the same commit), and ``state`` only ever
  holds committed counts: peers replicate from it, and a G-counter slot seen by a peer must never go
  back.
- If a commit fails, nothing is acked; every uncommitted watermark is rolled back and every open
  Forward stream ends with UNAVAILABLE, so edges resend their unacked batches and those are applied
  again. (A stream cannot skip a batch: acks are in order.) Slots are written as absolute values
  computed from committed state, so a commit that did reach the disk before failing is harmless.
- Replica id is ``f"{node_id}~{generation}"``, the generation being a random id created with the
  database file. A G-counter replica's slot must never go back; a node that lost its disk no longer
  knows its slot values, so it takes a new replica id instead of restarting its old slots at zero
  (which peers would ignore under max-merge, silently dropping the new counts).
- On start the watermarks, the totals slots and the open (unsealed) windows are reloaded from SQLite
  into memory and into ``state``; sealed windows stay on disk (region_node.windows.sealer).
- Retention (``retention``): a session silent for longer than ``watermark_ttl_s`` that then resends a
  batch committed but never acked is counted twice; clients resend within seconds to minutes, so the
  default of 7 days is a wide margin.

Windows are per second, from the edge's ``accepted_at_ms``, or from this node's clock when that is
missing or more than 60 s away from it. ``add_commit_listener`` is the seam for replication (told
after each commit that changed ``state``) and for metrics (each call carries a CommitFacts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from reactmesh.edge.errors import unavailable
from reactmesh.edge.limits import EMOJI_RE, MAX_SEQ, SESSION_ID_BYTES, STREAM_ID_RE
from reactmesh.merge.clock import Clock, sleep_unless
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.merge.maxmap import MaxMap
from reactmesh.region_node.aggregator.config import ACCEPTED_AT_TOLERANCE_MS, AggregatorConfig
from reactmesh.region_node.aggregator.pending import CommitFacts, CommitListener, ForwardStream, Pending
from reactmesh.region_node.aggregator.retention import Retention
from reactmesh.region_node.aggregator.store import Slot, Store
from reactmesh.region_node.state import TOTALS, WATERMARKS, WINDOWS, RegionState
from reactmesh.v1 import aggregator_pb2

log = logging.getLogger(__name__)

APPLIED = aggregator_pb2.EdgeAck.APPLIED
DUPLICATE = aggregator_pb2.EdgeAck.DUPLICATE
REFUSED = aggregator_pb2.EdgeAck.REFUSED

_NAME_CACHE_LIMIT = 100_000


class Aggregator:
    """Exactly-once counting of forwarded batches with group commit. ``await start()`` before use."""

    def __init__(self, config: AggregatorConfig, clock: Clock) -> None:
        self.config = config
        self.state = RegionState()
        self._clock = clock
        self._store: Store | None = None
        self._replica = ""
        # Watermarks applied but not yet committed; committed ones live only in state.watermarks (one structure).
        self._wm: dict[bytes, int] = {}
        self._retention = Retention(config, clock)
        self._pending = Pending()
        self._streams: set[ForwardStream] = set()
        self._listeners: list[CommitListener] = []
        self._tick_lock = asyncio.Lock()
        self._work = asyncio.Event()  # set when an EdgeBatch (or a half-close) is pending for the next commit
        self._run_task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._streams_ok: set[str] = set()
        self._emojis_ok: set[str] = set()
        self._stats = {
            "entries_applied": 0,
            "entries_duplicate": 0,
            "entries_refused": 0,
            "taps_applied": 0,
            "commits": 0,
            "commit_failures": 0,
        }
        self._last_commit_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def replica_id(self) -> str:
        """This node's G-counter replica id (set by ``start()``)."""
        return self._replica

    async def start(self) -> None:
        """Open the store and recover watermarks, slots and windows within retention."""
        if self._store is not None:
            raise RuntimeError("Aggregator.start() called twice")
        cfg = self.config
        store = await Store.open(cfg.db_path, synchronous=cfg.synchronous)
        try:
            self._replica = f"{cfg.node_id}~{store.node_generation()}"
            now_ms = self._clock.wall_ms()
            await store.prune_watermarks(now_ms - cfg.watermark_ttl_s * 1000)
            await store.prune_windows(now_ms // 1000 - cfg.window_retention_s)
            recovered = MaxMap()
            for session, seq, updated_ms in await store.load_watermarks():
                recovered.set(session, seq, stamp=updated_ms)
            self.state.merge(WATERMARKS, recovered)
            # Sealed windows stay on disk (region_node.windows): memory holds open ones only, and the totals of
            # streams with a window within idle_stream_s (the others come back with their next commit).
            open_since_s = self._retention.line.value
            live_since_s = now_ms // 1000 - cfg.idle_stream_s
            stored = await store.load_collections(windows_since_s=open_since_s, totals_since_s=live_since_s)
            for stream in {key[0] for key, _ in stored[TOTALS].items()}:
                self._retention.touch_stream(str(stream), now_ms)
            for name, coll in stored.items():
                if isinstance(self.state.collections.get(name), KeyedGCounter):
                    self.state.merge(name, coll)
                else:
                    log.warning("%s: ignoring stored collection %r unknown to this build", cfg.db_path, name)
        except BaseException:
            await store.close()
            raise
        self._store = store
        self._retention.start()
        log.info(
            "aggregator %s: replica %s, %d sessions, %d totals keys recovered from %s",
            cfg.node_id,
            self._replica,
            len(self.state.watermarks.keys()),
            len(self.state.totals),
            cfg.db_path,
        )

    async def run(self) -> None:
        """Commit until ``close()``: on demand, no more often than every ``commit_interval_ms`` (with housekeeping
        at least every ``tick_ms``), or, with ``commit_interval_ms`` = 0, every ``tick_ms`` of the clock."""
        self._run_task = asyncio.current_task()
        period = self.config.tick_ms / 1000
        interval = self.config.commit_interval_ms / 1000
        clock = self._clock
        started = float("-inf")
        try:
            while True:
                if interval:
                    await self._wait_work(period)
                    wait = started + interval - clock.monotonic()
                    if wait > 0:
                        await clock.sleep(wait)  # what arrives meanwhile joins this commit
                else:
                    await clock.sleep(period)
                if self._closing:
                    return
                started = clock.monotonic()
                # Shielded: cancelling run() must not interrupt a commit halfway.
                tick = asyncio.ensure_future(self.tick())
                tick.add_done_callback(_log_tick_failure)
                with contextlib.suppress(Exception):
                    await asyncio.shield(tick)
        except asyncio.CancelledError:
            if not self._closing:
                raise  # close() stops the loop by cancelling it; that is a normal end

    async def _wait_work(self, period_s: float) -> None:
        """Return once something is pending for a commit, or after ``period_s`` of the clock (housekeeping)."""
        if self._pending.acks:
            return
        self._work.clear()
        await sleep_unless(self._clock, period_s, self._work.wait())

    async def close(self) -> None:
        """Stop accepting, commit and ack what is pending, end every Forward call, close the store."""
        if self._closed:
            return
        self._closing = True
        if self._run_task is not None and self._run_task is not asyncio.current_task():
            self._run_task.cancel()
        for fwd in self._streams:
            if fwd.reader is not None:
                fwd.reader.cancel()
        try:
            if self._store is not None:
                await self.tick()
        finally:
            self._closed = True
            bye = unavailable("aggregator is shutting down; resend unacked batches")
            for fwd in self._streams:
                fwd.dead = True
                fwd.out.put_nowait(bye)
            if self._store is not None:
                await self._store.close()

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(facts)`` after every commit (each one grows ``state``), before acks go out."""
        self._listeners.append(listener)

    def statistics(self) -> dict[str, int | float]:
        """Counters since start: entries applied (committed) / duplicate / refused, taps applied,
        commits, commit failures, windows and watermarks expired; gauges: last commit seconds,
        pending entries, sessions tracked, open Forward streams."""
        out: dict[str, int | float] = dict(self._stats)
        out["windows_expired"] = self._retention.windows_expired
        out["windows_sealed"] = self._retention.windows_sealed
        out["streams_evicted"] = self._retention.streams_evicted
        out["watermarks_expired"] = self._retention.watermarks_expired
        out["last_commit_seconds"] = self._last_commit_seconds
        out["pending_entries"] = self._pending.entries
        out["sessions_tracked"] = len(self.state.watermarks.keys())
        out["streams_open"] = len(self._streams)
        return out

    # -- applying ----------------------------------------------------------------------------

    def _apply(self, fwd: ForwardStream, batch: aggregator_pb2.EdgeBatch) -> None:
        """Apply one EdgeBatch to the pending tick and queue its ack (sent after the next commit)."""
        p = self._pending
        entries = batch.entries
        n = len(entries)
        fwd.unacked += 1
        self._work.set()
        if n > self.config.max_entries_per_batch:
            self._stats["entries_refused"] += n
            p.acks.append((fwd, aggregator_pb2.EdgeAck(batch_id=batch.batch_id, outcomes=[REFUSED] * n)))
            return
        now_ms = self._clock.wall_ms()
        # Never before the seal line: a sealed window has left memory and must not be written again.
        acc_lo = max(now_ms - ACCEPTED_AT_TOLERANCE_MS, self._retention.line.value * 1000)
        acc_hi = now_ms + ACCEPTED_AT_TOLERANCE_MS
        max_count = self.config.max_count
        wm = self._wm
        wm_get = wm.get
        # Watermarks committed anywhere (other regions' arrive by gossip): a batch counted in another
        # region before its client failed over here is a duplicate here too.
        known_get = self.state.watermarks.get
        prev = p.prev_wm
        windows = p.windows
        streams_ok = self._streams_ok
        emojis_ok = self._emojis_ok
        outcomes: list[aggregator_pb2.EdgeAck.EntryOutcome] = []
        append = outcomes.append
        applied = duplicate = refused = taps = acc_sum = 0
        acc_min = p.acc_min
        for e in entries:
            stream = e.stream_id
            session = e.session_id
            seq = e.seq
            counts = e.counts
            valid = (
                (stream in streams_ok or self._admit(stream, STREAM_ID_RE, streams_ok))
                and len(session) == SESSION_ID_BYTES
                and 0 < seq <= MAX_SEQ
                and len(counts) > 0
            )
            if valid:
                for c in counts:
                    emoji = c.emoji
                    if not 0 < c.count <= max_count or (
                        emoji not in emojis_ok and not self._admit(emoji, EMOJI_RE, emojis_ok)
                    ):
                        valid = False
                        break
            if not valid:
                append(REFUSED)
                refused += 1
                continue
            seen = wm_get(session, 0)
            if seq <= seen or seq <= known_get(session, 0):
                append(DUPLICATE)
                duplicate += 1
                continue
            wm[session] = seq
            if session not in prev:
                prev[session] = seen
            acc = e.accepted_at_ms
            if not acc_lo <= acc <= acc_hi:
                acc = now_ms
            acc_sum += acc
            if acc < acc_min:
                acc_min = acc
            wkey = (stream, acc // 1000)
            bucket = windows.get(wkey)
            if bucket is None:
                bucket = windows[wkey] = {}
            for c in counts:
                k = c.count
                emoji = c.emoji
                bucket[emoji] = bucket.get(emoji, 0) + k
                taps += k
            append(APPLIED)
            applied += 1
        p.entries += applied
        p.taps += taps
        p.acc_sum += acc_sum
        p.acc_min = acc_min
        stats = self._stats
        stats["entries_duplicate"] += duplicate
        stats["entries_refused"] += refused
        p.acks.append((fwd, aggregator_pb2.EdgeAck(batch_id=batch.batch_id, outcomes=outcomes)))

    @staticmethod
    def _admit(name: str, pattern: re.Pattern[str], cache: set[str]) -> bool:
        if not pattern.fullmatch(name):
            return False
        if len(cache) >= _NAME_CACHE_LIMIT:
            cache.clear()
        cache.add(name)
        return True

    # -- committing --------------------------------------------------------------------------

    async def tick(self) -> int:
        """Commit what is pending, publish it to ``state``, send the acks; return entries committed.

        Raises what the store raised when the commit fails (after rolling back and ending the
        Forward calls, see the module docstring).
        """
        if self._store is None:
            raise RuntimeError("Aggregator.tick() before start()")
        async with self._tick_lock:
            if self._closed:
                return 0
            committed = await self._commit_pending()
            await self._retention.expire(self.state, self._store)
            return committed

    async def _commit_pending(self) -> int:
        assert self._store is not None
        p = self._pending
        if not p.prev_wm and not p.acks:
            return 0
        self._pending = Pending()
        facts: CommitFacts | None = None
        if p.prev_wm:
            wm = self._wm
            now_ms = self._clock.wall_ms()
            watermarks = {s: wm[s] for s in p.prev_wm}
            started = time.perf_counter()
            try:
                await self._reload_totals(p)
                slots = self._new_slots(p)
                await self._store.commit(watermarks, slots, now_ms)
            except BaseException as exc:
                self._fail(p, exc)
                raise
            seconds = time.perf_counter() - started
            self._publish(slots, watermarks, now_ms)
            # Committed: state.watermarks holds them now. Kept: those moved on by a batch applied during the commit.
            # Rebuilt, not deleted from, so the dict does not keep the size of its largest tick.
            self._wm = {s: seq for s, seq in wm.items() if watermarks.get(s) != seq}
            touch_stream = self._retention.touch_stream
            for stream in {stream for stream, _ in p.windows}:
                touch_stream(stream, now_ms)
            stats = self._stats
            stats["commits"] += 1
            stats["entries_applied"] += p.entries
            stats["taps_applied"] += p.taps
            self._last_commit_seconds = seconds
            facts = CommitFacts(
                committed_at_ms=now_ms,
                commit_seconds=seconds,
                entries=p.entries,
                taps=p.taps,
                sessions=len(watermarks),
                oldest_accepted_at_ms=p.acc_min,
                mean_accepted_at_ms=p.acc_sum / p.entries,
            )
            for listener in self._listeners:
                try:
                    listener(facts)
                except Exception:
                    log.exception("commit listener %r failed", listener)
        for fwd, ack in p.acks:
            if not fwd.dead:
                if ack is not None:
                    fwd.unacked -= 1
                fwd.out.put_nowait(ack)
        return p.entries

    async def _reload_totals(self, p: Pending) -> None:
        """Bring back from the store the totals slots of streams that left memory (idle) and now have entries."""
        totals = self.state.totals
        assert self._store is not None
        missing = {
            key
            for (stream, _), bucket in p.windows.items()
            for emoji in bucket
            if (key := (stream, emoji)) not in totals
        }
        if missing:
            stored = await self._store.load_totals(missing)
            if len(stored):
                self.state.merge(TOTALS, stored)

    def _new_slots(self, p: Pending) -> list[Slot]:
        """This replica's slot values after adding ``p``: committed value + pending increments."""
        replica = self._replica
        win_state = self.state.windows
        tot_state = self.state.totals
        slots: list[Slot] = []
        totals: dict[tuple[str, str], int] = {}
        # Windows sealed since their entries were applied count in the current second: a sealed window left memory,
        # so its committed value is no longer known here (its stored slot must never go back).
        sealed_before = self._retention.line.value
        now_s = self._clock.wall_ms() // 1000
        moved: dict[tuple[str, int], dict[str, int]] = {}
        for (stream, start_s), bucket in list(p.windows.items()):
            if start_s < sealed_before:
                del p.windows[(stream, start_s)]
                into = moved.setdefault((stream, now_s), p.windows.get((stream, now_s), {}))
                for emoji, inc in bucket.items():
                    into[emoji] = into.get(emoji, 0) + inc
        p.windows.update(moved)
        for (stream, start_s), bucket in p.windows.items():
            for emoji, inc in bucket.items():
                wkey = (stream, emoji, start_s)
                slots.append((WINDOWS, wkey, replica, win_state.slot(wkey, replica) + inc))
                tkey = (stream, emoji)
                totals[tkey] = totals.get(tkey, 0) + inc
        for tkey, inc in totals.items():
            slots.append((TOTALS, tkey, replica, tot_state.slot(tkey, replica) + inc))
        return slots

    def _publish(self, slots: list[Slot], watermarks: Mapping[bytes, int], stamp_ms: int) -> None:
        """Merge committed slot values and session watermarks into ``state`` (listeners hear the grown keys)."""
        deltas = {TOTALS: KeyedGCounter(), WINDOWS: KeyedGCounter()}
        for collection, key, replica, count in slots:
            deltas[collection].increment(key, replica, count)
        self.state.merge(TOTALS, deltas[TOTALS])
        self.state.merge(WINDOWS, deltas[WINDOWS])
        if watermarks:
            known = self.state.watermarks
            delta = MaxMap()
            for session, seq in watermarks.items():
                # Stamped no earlier than the entry held (a faster clock elsewhere may have stamped it later), so
                # this commit's seq is what the map holds afterwards: dedupe reads it there.
                delta.set(session, seq, stamp=max(stamp_ms, known.stamp(session)))
            self.state.merge(WATERMARKS, delta)

    def _fail(self, failed: Pending, exc: BaseException) -> None:
        """Undo every uncommitted watermark and end every Forward call; nothing pending is acked."""
        self._stats["commit_failures"] += 1
        log.error("aggregator %s: commit failed, ending every Forward call: %r", self.config.node_id, exc)
        newer, self._pending = self._pending, Pending()
        wm = self._wm
        # Newest first: ``failed`` holds the uncommitted value each session it touched had before it (0: none, so
        # the committed value in state.watermarks holds again).
        for p in (newer, failed):
            for session, seen in p.prev_wm.items():
                if seen:
                    wm[session] = seen
                else:
                    wm.pop(session, None)
        err = unavailable("aggregator commit failed; resend unacked batches", retry_after_ms=1000)
        for fwd in self._streams:
            fwd.dead = True
            fwd.out.put_nowait(err)

    # -- Forward streams (the gRPC side is region_node.aggregator.service) ----------------------

    @property
    def serving(self) -> bool:
        """True between ``start()`` and ``close()``: new Forward streams are taken."""
        return not self._closing and self._store is not None

    def attach(self, fwd: ForwardStream) -> None:
        """Take a new Forward stream: its acks go to ``fwd.out``."""
        self._streams.add(fwd)

    def detach(self, fwd: ForwardStream) -> None:
        """Forget a Forward stream that ended; nothing more is sent to it."""
        fwd.dead = True
        self._streams.discard(fwd)

    def receive(self, fwd: ForwardStream, batch: aggregator_pb2.EdgeBatch) -> None:
        """Apply one EdgeBatch of ``fwd``; its ack follows the next commit. Ignored once closing."""
        if not fwd.dead and not self._closing:
            self._apply(fwd, batch)

    def end_of_input(self, fwd: ForwardStream) -> None:
        """The edge half-closed ``fwd``: end the call with OK once every ack of it is out."""
        if fwd.dead:
            return
        if fwd.unacked:
            self._pending.acks.append((fwd, None))
            self._work.set()
        else:
            fwd.out.put_nowait(None)


def _log_tick_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("aggregator tick failed", exc_info=task.exception())
