"""The live comments of a broadcaster: ingest checks, stamping, pins, deletes, history, the comment file's writer.

Where comments live. Like polls, on the broadcaster role, the region's gateway: its ReplicaState gossips every
collection with the other regions' broadcasters, so comments are one more collection there, ``"comments"``, a
``merge.comments.CommentSet``. Every change, local or from a peer, goes through ``ReplicaState.merge``; a
listener hands the changes to the delivery hub (``region_node.comments.hub``) and wakes the comment file's
writer.

What a client can rely on:

- Ingest checks, in this order, all in memory (no I/O before the answer but the group-committed write):
  a resend (same viewer, stream and non-empty ``client_key`` as a comment this node holds) answers the first
  comment with ``duplicate`` and stores nothing; the per-viewer token bucket (``edge.ratelimit``) answers
  RESOURCE_EXHAUSTED with ``retry-after-ms``; a muted viewer (the region's MUTES, from every region) or a text
  hitting the blocklist (``edge.blocklist``) is accepted but *shadowed*: stored and answered as usual, shown
  only to its author.
- Priority: a comment whose token is a host's, a moderator's or carries ``verified: true`` takes the priority lane
  (never sampled out).
- Ids are the node's HLC stamps (``merge.comments.comment_id``): unique across regions and time-ordered; the
  HLC is advanced past every stamp merged here first.
- PostComment, PinComment and DeleteComment answer once the change is in the comment file (SQLite, WAL,
  one writer task, group commits). The file keeps every comment this node merged for ``retention_days``;
  memory keeps the last ``hot_window_s`` (the CommentSet's floor, raised here once a second and carried to
  every region by gossip) and at most ``max_hot`` entries (a burst shortens the window), so memory grows with
  live activity, bounded, never with elapsed time. A comment that reaches a region only after that region's floor
  passed its id (a partition longer than the window, or a burst past ``max_hot``) is not stored there.
- A delete of a comment already out of memory (below the floor) is a *late delete*: a record in the region's
  ``LATE_DELETES`` ExpiringMap (comment id -> stamp, stream, actor), held ``late_delete_window_s`` (a day) and
  passed on by gossip like the comments; every node that merges it writes a tombstone into its comment file
  (history leaves the comment out), tells its watchers (``deleted_ids``), and tombstones it in memory where its
  own floor still holds it. Memory holds the late deletes of the last day: it grows with deletes, not with time.
- GetComments reads the comment file (after the writer has caught up), so a page is the same on every node
  that has merged the same comments: newest first, deleted, shadowed (of others) and resent copies left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from reactmesh.edge.auth import Principal, Role
from reactmesh.edge.blocklist import Blocklist
from reactmesh.edge.errors import invalid_argument, not_found, resource_exhausted, unavailable
from reactmesh.edge.limits import VIEWER_ID_FORM, is_viewer_id
from reactmesh.edge.ratelimit import RateLimiter
from reactmesh.merge.clock import Clock
from reactmesh.merge.comments import (
    MAX_CLIENT_KEY_CHARS,
    MAX_TEXT_CHARS,
    Comment,
    CommentSet,
    Pin,
    comment_id,
    floor_for,
    parse_comment_id,
)
from reactmesh.merge.errors import ClockDriftError
from reactmesh.merge.expiring import ExpiringMap
from reactmesh.merge.hlc import HlcTimestamp, HybridLogicalClock
from reactmesh.merge.replica import ReplicaState
from reactmesh.region_node.broadcaster.core import check_stream_id
from reactmesh.region_node.comments.config import CommentsConfig
from reactmesh.region_node.comments.hub import CommentHub
from reactmesh.region_node.comments.store import CommentStore
from reactmesh.region_node.state import COMMENTS, LATE_DELETES, MUTES

log = logging.getLogger(__name__)

MAX_PAGE = 100
MAX_ACTOR = 256
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class CommentStatistics:
    """Counters of one CommentBook since start."""

    posted: int
    duplicates: int
    rate_limited: int
    filtered: int
    shadowed_muted: int
    deletes: int
    pins: int
    likes: int
    held: int
    version: int
    saved_version: int
    store_errors: int
    pruned: int
    late_deletes: int
    late_held: int


def check_comment_id(value: str, field: str) -> None:
    if parse_comment_id(value) is None:
        raise invalid_argument(f"{field} must be a comment id (wall.logical.node), got {value[:80]!r}")


class CommentBook:
    """The comments of one broadcaster. ``start()`` runs the writer, the hub and the expiry; ``stop()`` ends them."""

    def __init__(
        self,
        state: ReplicaState,
        hlc: HybridLogicalClock,
        clock: Clock,
        *,
        store: CommentStore | None = None,
        config: CommentsConfig | None = None,
        saved_version: int = 0,
        saved_late_version: int = 0,
    ) -> None:
        comments = state.collections.get(COMMENTS)
        late = state.collections.get(LATE_DELETES)
        if not isinstance(comments, CommentSet) or not isinstance(late, ExpiringMap):
            raise TypeError("the ReplicaState needs extra=region_node.state.comment_collections()")
        self.config = config or CommentsConfig()
        self._state = state
        self._set = comments
        self._late = late
        self._hlc = hlc
        self._clock = clock
        self._store = store
        self._blocklist = Blocklist(self.config.blocklist)
        self._limiter = RateLimiter(
            clock, self.config.post_rate_per_s, self.config.post_burst, self.config.max_limited_viewers
        )
        self.hub = CommentHub(comments, clock, self.config)
        self.hub.seed()
        self._saved = saved_version
        self._late_saved = saved_late_version
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: list[tuple[tuple[int, int], asyncio.Future[None]]] = []
        self._observed: HlcTimestamp | None = None
        self._posted = self._duplicates = self._limited = self._filtered = self._muted = 0
        self._deletes = self._pins = self._store_errors = self._pruned = self._likes = self._late_deletes = 0
        state.add_listener(self._on_merge)

    @property
    def comments(self) -> CommentSet:
        return self._set

    # -- the API -----------------------------------------------------------------------------

    async def post(
        self,
        stream_id: str,
        viewer_id: str,
        text: str,
        reply_to: str = "",
        client_key: str = "",
        principal: Principal | None = None,
    ) -> tuple[Comment, bool]:
        """Accept a comment; return it and whether it was a resend. Statuses: see the module docstring."""
        check_stream_id(stream_id)
        if not is_viewer_id(viewer_id):
            raise invalid_argument(f"viewer_id must be {VIEWER_ID_FORM}, got {len(viewer_id)}")
        if not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise invalid_argument(f"text must be 1..{MAX_TEXT_CHARS} chars, not blank (got {len(text)})")
        if reply_to:
            check_comment_id(reply_to, "reply_to")
        if len(client_key) > MAX_CLIENT_KEY_CHARS:
            raise invalid_argument(f"client_key must be at most {MAX_CLIENT_KEY_CHARS} chars")
        if client_key:
            first = self._set.canonical(stream_id, viewer_id, client_key)
            if first is not None:
                self._duplicates += 1
                await self._durable()
                return first, True
        if self._limiter.take(viewer_id, 1) == 0:
            self._limited += 1
            retry = max(1, int(1000 / self.config.post_rate_per_s))
            raise resource_exhausted(
                f"viewer {viewer_id!r} posts faster than {self.config.post_rate_per_s}/s", retry_after_ms=retry
            )
        shadow = False
        if self._blocklist.hit(text):
            self._filtered += 1
            shadow = True
        mutes = self._state.collections.get(MUTES)
        if isinstance(mutes, ExpiringMap) and mutes.in_force(viewer_id, self._clock.wall_ms()) is not None:
            self._muted += 1
            shadow = True
        priority = principal is not None and (
            principal.verified or (principal.role is not None and principal.role >= Role.HOST)
        )
        c = Comment(comment_id(self._stamp()), stream_id, viewer_id, text, reply_to, client_key, priority, shadow)
        self._state.merge(COMMENTS, CommentSet().add(c))
        self._posted += 1
        await self._durable()
        return c, False

    async def delete(self, stream_id: str, cid: str, actor: str = "") -> None:
        """Tombstone ``cid`` everywhere (a late delete when it is already out of memory). INVALID_ARGUMENT for a
        malformed id or one of another stream."""
        check_stream_id(stream_id)
        check_comment_id(cid, "comment_id")
        c = self._set.get(cid)
        if c is not None and c.stream_id != stream_id:
            raise invalid_argument(f"comment {cid} is not on stream {stream_id!r}")
        if cid >= self._set.floor_id:
            self._state.merge(COMMENTS, CommentSet().delete(cid))
        else:
            stored = await self._store.stream_of(cid) if self._store is not None else None
            if stored is not None and stored != stream_id:
                raise invalid_argument(f"comment {cid} is not on stream {stream_id!r}")
            stamp = self._stamp()
            until = stamp.wall_ms + self.config.late_delete_window_s * 1000
            self._state.merge(LATE_DELETES, ExpiringMap().set(cid, until, stamp, stream_id, actor[:MAX_ACTOR]))
            self._late_deletes += 1
        self._deletes += 1
        await self._durable()

    async def like(self, stream_id: str, cid: str, viewer_id: str) -> int:
        """Record ``viewer_id``'s like (once per viewer); return the comment's likes. NOT_FOUND for a comment this
        node does not hold, deleted or shadowed; INVALID_ARGUMENT for a malformed id or one of another stream."""
        check_stream_id(stream_id)
        check_comment_id(cid, "comment_id")
        if not is_viewer_id(viewer_id):
            raise invalid_argument(f"viewer_id must be {VIEWER_ID_FORM}, got {len(viewer_id)}")
        c = self._set.get(cid)
        if c is None or not self._set.visible(cid) or c.shadow:
            raise not_found(f"comment {cid} is unknown here (or deleted)")
        if c.stream_id != stream_id:
            raise invalid_argument(f"comment {cid} is not on stream {stream_id!r}")
        if self._limiter.take(viewer_id, 1) == 0:
            self._limited += 1
            retry = max(1, int(1000 / self.config.post_rate_per_s))
            raise resource_exhausted(f"viewer {viewer_id!r} acts faster than the limit", retry_after_ms=retry)
        self._state.merge(COMMENTS, CommentSet().like(cid, viewer_id))
        self._likes += 1
        await self._durable()
        return self._set.likes(cid)

    async def pin(self, stream_id: str, cid: str) -> Pin:
        """Pin ``cid`` ("" unpins). NOT_FOUND for a comment this node does not hold or that is deleted."""
        check_stream_id(stream_id)
        if cid:
            check_comment_id(cid, "comment_id")
            c = self._set.get(cid)
            if c is None or not self._set.visible(cid) or c.shadow:
                raise not_found(f"comment {cid} is unknown here (or deleted)")
            if c.stream_id != stream_id:
                raise invalid_argument(f"comment {cid} is not on stream {stream_id!r}")
        self._state.merge(COMMENTS, CommentSet().set_pin(stream_id, cid, self._stamp()))
        self._pins += 1
        await self._durable()
        pin = self._set.pin(stream_id)
        assert pin is not None
        return pin

    async def page(self, stream_id: str, before: str, limit: int, viewer_id: str) -> list[Comment]:
        """History newest first; see ``CommentStore.page``. INVALID_ARGUMENT for a bad cursor or limit."""
        check_stream_id(stream_id)
        if before:
            check_comment_id(before, "before")
        if not 0 <= limit <= MAX_PAGE:
            raise invalid_argument(f"limit must be 1..{MAX_PAGE} (0: {DEFAULT_PAGE}), got {limit}")
        limit = limit or DEFAULT_PAGE
        if self._store is not None:
            await self._durable()
            return await self._store.page(stream_id, before, limit, viewer_id)
        cs = self._set
        found = [
            c
            for cid, c in cs.value().items()
            if c.stream_id == stream_id and (not before or cid < before) and (not c.shadow or c.viewer_id == viewer_id)
        ]
        found.sort(reverse=True)
        return found[:limit]

    def _stamp(self) -> HlcTimestamp:
        latest = self._set.latest_stamp()
        if latest is not None and latest != self._observed:
            self._observed = latest
            with contextlib.suppress(ClockDriftError):
                self._hlc.update(latest)
        return self._hlc.now()

    # -- changes and durability --------------------------------------------------------------

    def _on_merge(self, collection: str, coll: Any, changed: Any) -> None:
        if collection == LATE_DELETES:
            for cid in changed:
                record = self._late.get(cid)
                if record is None:
                    continue
                if cid >= self._set.floor_id:  # this node still holds it in memory: an ordinary tombstone too
                    self._state.merge(COMMENTS, CommentSet().delete(cid))
                self.hub.deleted(record.note, cid)
        elif collection != COMMENTS:
            return
        else:
            self.hub.changed(changed)
        if self._store is not None:
            self._wake.set()

    async def flush(self) -> int:
        """Write every change not yet in the comment file, in one transaction; return the rows written."""
        store = self._store
        if store is None:
            return 0
        async with self._flush_lock:
            if self._set.version <= self._saved and self._late.version <= self._late_saved:
                return 0
            delta, upto = self._set.delta_since(self._saved)
            late, late_upto = self._late.delta_since(self._late_saved)
            written = await store.save(delta, late)
            self._saved, self._late_saved = upto, late_upto
            return written

    def _versions(self) -> tuple[int, int]:
        return self._set.version, self._late.version

    def _written(self, target: tuple[int, int]) -> bool:
        return target[0] <= self._saved and target[1] <= self._late_saved

    async def _durable(self) -> None:
        """Return once everything merged so far is in the comment file (UNAVAILABLE if it cannot be). With the
        writer running, callers wait for its next group commit, so a burst of posts costs one transaction."""
        if self._store is None or self._written(self._versions()):
            return
        if not self._tasks:
            try:
                await self.flush()
            except Exception as exc:
                self._store_errors += 1
                raise unavailable(f"comment file write failed: {exc}") from exc
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._versions(), fut))
        self._wake.set()
        await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the posts already scheduled join this commit
            try:
                await self.flush()
            except Exception as exc:
                self._store_errors += 1
                log.error("comment file write failed: %s", exc)
                waiters, self._waiters = self._waiters, []
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(unavailable(f"comment file write failed: {exc}"))
                await self._clock.sleep(0.1)
                self._wake.set()
                continue
            waiting = []
            for target, fut in self._waiters:
                if fut.done():
                    continue
                if self._written(target):
                    fut.set_result(None)
                else:
                    waiting.append((target, fut))
            self._waiters = waiting
            if waiting or not self._written(self._versions()):
                self._wake.set()

    def expire(self) -> None:
        """Raise the in-memory floor to the hot window, or higher when more than ``max_hot`` entries are held (the
        change travels to every region)."""
        floor = floor_for(self._clock.wall_ms() - self.config.hot_window_s * 1000)
        cs = self._set
        excess = len(cs) - self.config.max_hot
        if excess > 0:
            oldest = cs.oldest_ids(excess + 1)
            floor = max(floor, oldest[-1])
        if floor > cs.floor_id:
            self._state.merge(COMMENTS, CommentSet().expire(floor))
        late_floor = self._clock.wall_ms() - self.config.late_delete_window_s * 1000
        if len(self._late) and late_floor > self._late.floor_ms:  # nothing to drop: no write, no gossip
            self._state.merge(LATE_DELETES, ExpiringMap().expire(late_floor))

    async def prune(self) -> int:
        """Delete one batch of comments older than the retention from the comment file."""
        if self._store is None:
            return 0
        floor = floor_for(self._clock.wall_ms() - self.config.retention_days * 86_400_000)
        n = await self._store.prune(floor, self.config.prune_batch, self._clock.wall_ms())
        self._pruned += n
        return n

    async def _expiry_loop(self) -> None:
        while True:
            await self._clock.sleep(1.0)
            self.expire()
            try:
                await self.prune()
            except Exception as exc:
                self._store_errors += 1
                log.error("comment retention failed: %s", exc)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self.hub.run(), name="comments-frames"))
        self._tasks.append(asyncio.create_task(self._expiry_loop(), name="comments-expiry"))
        if self._store is not None:
            self._tasks.append(asyncio.create_task(self._write_loop(), name="comments-writer"))

    async def stop(self) -> None:
        """Stop the tasks, write what is left, close the comment file. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        store = self._store
        if store is None:
            return
        try:
            await self.flush()
        finally:
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(unavailable("comments are shutting down"))
            self._waiters = []
            self._store = None
            await store.close()

    def statistics(self) -> CommentStatistics:
        return CommentStatistics(
            posted=self._posted,
            duplicates=self._duplicates,
            rate_limited=self._limited,
            filtered=self._filtered,
            shadowed_muted=self._muted,
            deletes=self._deletes,
            pins=self._pins,
            likes=self._likes,
            held=len(self._set),
            version=self._set.version,
            saved_version=self._saved,
            store_errors=self._store_errors,
            pruned=self._pruned,
            late_deletes=self._late_deletes,
            late_held=len(self._late),
        )
