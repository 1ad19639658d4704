"""Live comments as one CRDT: a grow-only set of comments keyed by id, remove-wins tombstones, a pin per stream.

A ``CommentSet`` composes three CvRDTs (Shapiro, Preguiça, Baquero and Zawirski, INRIA RR-7506, 2011):

- ``comments``: a grow-only set (G-Set, section 3.3.1) of immutable ``Comment`` records keyed by ``comment_id``.
  Ids are HLC-derived (``comment_id``): unique because the issuing node id is part of them, and their string
  order is timestamp order. Two records never share an id in practice; if they do, the greater record wins
  everywhere, so merge stays a join.
- ``tombstones``: a grow-only set of deleted ids (the remove half of a 2P-Set, section 3.3.2). Remove wins: a
  tombstoned id is never visible again, whether its comment arrives before or after the tombstone.
- ``pins``: stream id -> LWW register (section 3.2.1) of ``Pin(stamp, comment_id)``, stamps from a hybrid
  logical clock; an empty comment id is an unpin.
- ``likes``: a grow-only set of (comment id, viewer id) pairs, so a viewer likes a comment once globally and
  ``likes(id)`` is the number of distinct viewers.

Resend safety: a comment may carry a ``client_key``. Among visible-by-id comments with the same
(stream, viewer, client_key), only the smallest id is visible (``canonical``), so a client retry accepted by two
regions before they heard of each other still shows once everywhere once they have exchanged state.

Bounded memory: a floor id (a max-register) drops every comment and tombstone with a smaller id, and merge
never brings them back; the state is (floor, entries at or above it) and the join filters by the max floor,
so it is still a join (likes of ids below it go too). A node raises the floor to keep a recent window hot
(``expire``); older comments live on only in the node's SQLite file. Pins are not floored (one register per
stream).

Merge is commutative, associative and idempotent, and deltas (Almeida, Shoker and Baquero, "Delta State
Replicated Data Types", 2018) merge exactly like full states. ``merge`` returns the changed units as
("comment" | "delete" | "pin" | "like", key) pairs (key: the comment id, or the stream id of a pin). ``value()``
is the visible comments by id.

Equality: the same floor, comments, tombstones and pins. Equal sets may encode to different bytes.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import CRDTMisuse, DecodeError
from reactmesh.merge.hlc import MAX_LOGICAL, HlcTimestamp
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2

MAX_TEXT_CHARS = 500
MAX_CLIENT_KEY_CHARS = 64
_WALL_DIGITS = 13
_LOGICAL_DIGITS = 10

Change = tuple[str, str]
"""What ``merge`` reports: ("comment", id), ("delete", id), ("pin", stream id) or ("like", id)."""


def comment_id(stamp: HlcTimestamp) -> str:
    """The id of a comment stamped ``stamp``: zero-padded wall ms and logical, then the replica, dot-separated,
    so string order is (wall_ms, logical, replica) order for wall times below 10**13 ms (year 2286)."""
    return f"{stamp.wall_ms:0{_WALL_DIGITS}d}.{stamp.logical:0{_LOGICAL_DIGITS}d}.{stamp.replica}"


def parse_comment_id(value: str) -> HlcTimestamp | None:
    """The stamp a comment id encodes, or None when ``value`` is not one."""
    wall, sep, rest = value.partition(".")
    logical, sep2, replica = rest.partition(".")
    if not (sep and sep2 and replica and len(wall) == _WALL_DIGITS and len(logical) == _LOGICAL_DIGITS):
        return None
    if not (wall.isascii() and wall.isdigit() and logical.isascii() and logical.isdigit()):
        return None
    if int(logical) > MAX_LOGICAL or len(value) > 200:
        return None
    return HlcTimestamp(int(wall), int(logical), replica)


def floor_for(wall_ms: int) -> str:
    """The floor id that drops every comment stamped before ``wall_ms``."""
    return f"{max(0, wall_ms):0{_WALL_DIGITS}d}."


@dataclass(frozen=True, order=True, slots=True)
class Comment:
    """One comment, immutable once written."""

    comment_id: str
    stream_id: str
    viewer_id: str
    text: str
    reply_to: str = ""
    client_key: str = ""
    priority: bool = False
    shadow: bool = False

    @property
    def created_at_ms(self) -> int:
        return int(self.comment_id[:_WALL_DIGITS])

    @property
    def resend_key(self) -> tuple[str, str, str] | None:
        return (self.stream_id, self.viewer_id, self.client_key) if self.client_key else None


@dataclass(frozen=True, order=True, slots=True)
class Pin:
    """The pin register of a stream: ``comment_id`` ("" = unpinned), written at ``stamp``."""

    stamp: HlcTimestamp
    comment_id: str


def _why_bad(c: Comment) -> str | None:
    if parse_comment_id(c.comment_id) is None:
        return f"malformed comment id {c.comment_id[:80]!r}"
    if not c.stream_id or not c.viewer_id:
        return "a comment needs a stream id and a viewer id"
    if not 0 < len(c.text) <= MAX_TEXT_CHARS:
        return f"text must be 1..{MAX_TEXT_CHARS} chars"
    if len(c.client_key) > MAX_CLIENT_KEY_CHARS:
        return f"client_key must be at most {MAX_CLIENT_KEY_CHARS} chars"
    return None


class CommentSet:
    """comment id -> Comment (grow-only), tombstones (remove wins), stream -> Pin (LWW), above a floor id."""

    TAG: ClassVar[Tag] = tags.COMMENT_SET
    TYPE: ClassVar[str] = TAG.type

    __slots__ = (
        "_by_id",
        "_canon",
        "_comments",
        "_floor",
        "_floor_version",
        "_latest",
        "_like_count",
        "_likes",
        "_log",
        "_pins",
        "_tombs",
    )

    def __init__(self) -> None:
        self._comments: dict[str, Comment] = {}
        self._tombs: set[str] = set()
        self._pins: dict[str, Pin] = {}
        self._floor = ""
        self._floor_version = 0
        self._log: DeltaLog[tuple[str, str]] = DeltaLog()
        self._by_id: list[str] = []  # heap of comment and tombstone ids, for ``expire``
        self._canon: dict[tuple[str, str, str], set[str]] = {}  # resend key -> the ids carrying it
        self._latest = ""  # greatest comment id ever added (dropped ones included)
        self._likes: dict[str, set[str]] = {}  # comment id -> viewers who liked it
        self._like_count = 0

    @classmethod
    def new(cls) -> CommentSet:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._log.version

    @property
    def floor_id(self) -> str:
        return self._floor

    def get(self, cid: str) -> Comment | None:
        """The comment stored under ``cid`` (visible or not)."""
        return self._comments.get(cid)

    def deleted(self, cid: str) -> bool:
        return cid in self._tombs

    def visible(self, cid: str) -> bool:
        """Stored, not deleted, and the canonical copy of its resend key."""
        c = self._comments.get(cid)
        if c is None or cid in self._tombs:
            return False
        key = c.resend_key
        return key is None or min(self._canon[key]) == cid

    def canonical(self, stream_id: str, viewer_id: str, client_key: str) -> Comment | None:
        """The comment a resend with this key resolves to, if this replica holds it."""
        ids = self._canon.get((stream_id, viewer_id, client_key))
        return self._comments[min(ids)] if ids else None

    def copies(self, key: tuple[str, str, str]) -> list[str]:
        """Every id held under the resend key (stream, viewer, client_key), smallest (the shown one) first."""
        return sorted(self._canon.get(key, ()))

    def pin(self, stream_id: str) -> Pin | None:
        return self._pins.get(stream_id)

    def oldest_ids(self, n: int) -> list[str]:
        """The ``n`` smallest comment and tombstone ids held, smallest first; O(size log n)."""
        return heapq.nsmallest(n, self._by_id)

    def liked(self) -> dict[str, frozenset[str]]:
        """comment id -> the viewers who liked it."""
        return {cid: frozenset(v) for cid, v in self._likes.items()}

    def likes(self, cid: str) -> int:
        """Distinct viewers who liked ``cid``."""
        return len(self._likes.get(cid, ()))

    def pins(self) -> dict[str, Pin]:
        """stream id -> its pin register."""
        return dict(self._pins)

    def value(self) -> dict[str, Comment]:
        """Every visible comment by id."""
        return {cid: c for cid, c in self._comments.items() if self.visible(cid)}

    def tombstones(self) -> frozenset[str]:
        return frozenset(self._tombs)

    def latest_stamp(self) -> HlcTimestamp | None:
        """The greatest stamp this replica has held (comment ids and pins), to feed ``HybridLogicalClock.update``;
        O(streams pinned)."""
        best = parse_comment_id(self._latest) if self._latest else None
        for pin in self._pins.values():
            if best is None or pin.stamp > best:
                best = pin.stamp
        return best

    def __iter__(self) -> Iterator[str]:
        return iter(self._comments)

    def __len__(self) -> int:
        return len(self._comments) + len(self._tombs) + len(self._pins) + self._like_count

    # -- mutating ----------------------------------------------------------------------------

    def add(self, comment: Comment) -> CommentSet:
        """Store ``comment``; return the delta (empty if already held or below the floor). CRDTMisuse if bad."""
        why = _why_bad(comment)
        if why is not None:
            raise CRDTMisuse(f"comment_set: {why}")
        delta = CommentSet()
        if self._add(comment):
            delta._comments[comment.comment_id] = comment
        return delta

    def delete(self, cid: str) -> CommentSet:
        """Tombstone ``cid`` (held or not); return the delta."""
        if parse_comment_id(cid) is None:
            raise CRDTMisuse(f"comment_set: malformed comment id {cid[:80]!r}")
        delta = CommentSet()
        if self._delete(cid):
            delta._tombs.add(cid)
        return delta

    def set_pin(self, stream_id: str, cid: str, stamp: HlcTimestamp) -> CommentSet:
        """Pin ``cid`` on ``stream_id`` ("" unpins) at ``stamp``; return the delta (empty if a later pin wins)."""
        if not stream_id:
            raise CRDTMisuse("comment_set: a pin needs a stream id")
        delta = CommentSet()
        pin = Pin(stamp, cid)
        if self._set_pin(stream_id, pin):
            delta._pins[stream_id] = pin
        return delta

    def like(self, cid: str, viewer_id: str) -> CommentSet:
        """Record ``viewer_id``'s like of ``cid``; return the delta (empty if already recorded or below the floor)."""
        if parse_comment_id(cid) is None or not viewer_id or "\x1f" in viewer_id:
            raise CRDTMisuse(f"comment_set: a like needs a comment id and a viewer id, got {cid[:80]!r}")
        delta = CommentSet()
        if self._like(cid, viewer_id):
            delta._likes[cid] = {viewer_id}
        return delta

    def expire(self, floor_id: str) -> CommentSet:
        """Raise the floor (only upwards): drop every comment and tombstone with a smaller id; return the delta."""
        delta = CommentSet()
        if floor_id > self._floor:
            self._raise_floor(floor_id)
            delta._floor = floor_id
        return delta

    def merge(self, other: CommentSet) -> list[Change]:
        """Join ``other`` (a state or a delta) in place; return the units that changed."""
        changed: list[Change] = []
        if other._floor > self._floor:
            self._raise_floor(other._floor)
        for c in other._comments.values():
            if self._add(c):
                changed.append(("comment", c.comment_id))
        for cid in other._tombs:
            if self._delete(cid):
                changed.append(("delete", cid))
        for stream_id, pin in other._pins.items():
            if self._set_pin(stream_id, pin):
                changed.append(("pin", stream_id))
        for cid, viewers in other._likes.items():
            grew = False
            for viewer in viewers:
                grew = self._like(cid, viewer) or grew
            if grew:
                changed.append(("like", cid))
        return changed

    def _add(self, c: Comment) -> bool:
        cid = c.comment_id
        if cid < self._floor:
            return False
        old = self._comments.get(cid)
        if old is not None and old >= c:
            return False
        self._comments[cid] = c
        if old is None:
            heapq.heappush(self._by_id, cid)
        if cid > self._latest:
            self._latest = cid
        key = c.resend_key
        if key is not None:
            self._canon.setdefault(key, set()).add(cid)
        self._log.touch(("c", cid))
        return True

    def _delete(self, cid: str) -> bool:
        if cid < self._floor or cid in self._tombs:
            return False
        self._tombs.add(cid)
        if cid not in self._comments:
            heapq.heappush(self._by_id, cid)
        self._log.touch(("t", cid))
        return True

    def _like(self, cid: str, viewer: str) -> bool:
        if cid < self._floor:
            return False
        viewers = self._likes.get(cid)
        if viewers is None:
            viewers = self._likes[cid] = set()
            if cid not in self._comments and cid not in self._tombs:
                heapq.heappush(self._by_id, cid)
        elif viewer in viewers:
            return False
        viewers.add(viewer)
        self._like_count += 1
        self._log.touch(("l", f"{cid}\x1f{viewer}"))
        return True

    def _set_pin(self, stream_id: str, pin: Pin) -> bool:
        old = self._pins.get(stream_id)
        if old is not None and old >= pin:
            return False
        self._pins[stream_id] = pin
        self._log.touch(("p", stream_id))
        return True

    def _raise_floor(self, floor_id: str) -> None:
        self._floor = floor_id
        self._floor_version = self._log.tick()
        heap = self._by_id
        while heap and heap[0] < floor_id:
            cid = heapq.heappop(heap)
            c = self._comments.pop(cid, None)
            if c is not None:
                self._log.forget(("c", cid))
                key = c.resend_key
                if key is not None:
                    ids = self._canon[key]
                    ids.discard(cid)
                    if not ids:
                        del self._canon[key]
            if cid in self._tombs:
                self._tombs.discard(cid)
                self._log.forget(("t", cid))
            for viewer in self._likes.pop(cid, ()):
                self._like_count -= 1
                self._log.forget(("l", f"{cid}\x1f{viewer}"))

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[CommentSet, int]:
        """The join of every change after ``version`` (at most ``limit`` units) and the version it covers."""
        units, upto = self._log.since(version, limit)
        delta = CommentSet()
        for kind, key in units:
            if kind == "c":
                delta._comments[key] = self._comments[key]
            elif kind == "t":
                delta._tombs.add(key)
            elif kind == "l":
                cid, _, viewer = key.partition("\x1f")
                delta._likes.setdefault(cid, set()).add(viewer)
            else:
                delta._pins[key] = self._pins[key]
        if self._floor and version < self._floor_version <= upto:
            delta._floor = self._floor
        return delta, upto

    def copy(self) -> CommentSet:
        out = CommentSet()
        out.merge(self)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CommentSet)
            and self._floor == other._floor
            and self._comments == other._comments
            and self._tombs == other._tombs
            and self._pins == other._pins
            and self._likes == other._likes
        )

    def __hash__(self) -> int:
        raise TypeError("CommentSet is mutable and unhashable")

    def __repr__(self) -> str:
        return (
            f"CommentSet(floor={self._floor!r}, comments={len(self._comments)}, "
            f"tombstones={len(self._tombs)}, pins={self._pins!r})"
        )

    def encode(self) -> bytes:
        body = crdt_pb2.CommentSetState(floor_id=self._floor, tombstones=sorted(self._tombs))
        add = body.comments.add
        for c in self._comments.values():
            add(
                comment_id=c.comment_id,
                stream_id=c.stream_id,
                viewer_id=c.viewer_id,
                text=c.text,
                reply_to=c.reply_to,
                client_key=c.client_key,
                priority=c.priority,
                shadow=c.shadow,
            )
        for stream_id, pin in self._pins.items():
            body.pins.add(stream_id=stream_id, stamp=pin.stamp.to_proto(), comment_id=pin.comment_id)
        for cid, viewers in self._likes.items():
            body.likes.add(comment_id=cid, viewers=sorted(viewers))
        return seal_as(self.TAG, body)

    @classmethod
    def decode(cls, data: bytes) -> CommentSet:
        """The set ``data`` encodes; DecodeError for anything else (a malformed comment included)."""
        raw = open_as(data, cls.TAG)
        body = crdt_pb2.CommentSetState()
        parse_body(raw, body, cls.TYPE)
        out = cls()
        if body.floor_id:
            out._raise_floor(body.floor_id)
        for e in body.comments:
            c = Comment(e.comment_id, e.stream_id, e.viewer_id, e.text, e.reply_to, e.client_key, e.priority, e.shadow)
            why = _why_bad(c)
            if why is not None:
                raise DecodeError(f"comment_set body: {why}")
            out._add(c)
        for cid in body.tombstones:
            if parse_comment_id(cid) is None:
                raise DecodeError(f"comment_set body: malformed tombstone {cid[:80]!r}")
            out._delete(cid)
        for p in body.pins:
            if not p.stream_id or not p.HasField("stamp"):
                raise DecodeError("comment_set body: a pin needs a stream id and a stamp")
            out._set_pin(p.stream_id, Pin(HlcTimestamp.from_proto(p.stamp), p.comment_id))
        for like in body.likes:
            if parse_comment_id(like.comment_id) is None or not all(v and "\x1f" not in v for v in like.viewers):
                raise DecodeError(f"comment_set body: malformed like of {like.comment_id[:80]!r}")
            for viewer in like.viewers:
                out._like(like.comment_id, viewer)
        return out


_: type[Replicated] = CommentSet
