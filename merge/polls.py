"""Live polls as one CRDT: poll id -> (immutable spec, votes with a close marker).

A ``PollSet`` is a map of polls (Shapiro et al. 2011, a map of CRDTs) whose entries are:

- ``spec`` (PollSpec: stream, question, options, creation stamp, optional closing time): a
  write-once register. Specs are written once by the node that creates the poll under a fresh
  random id, so two specs never meet in practice; if they do, the smaller ``PollSpec.order_key()``
  (creation stamp first, then content) wins, so merge stays a join and every replica picks the same.
- ``votes``: a ``merge.lww.LwwMap`` voter -> option index with its close marker. One vote per voter
  globally, the greatest HLC stamp wins, and a vote counts only if stamped strictly before the
  poll's close stamp (the LwwMap's documented semantics, including its history bound K).

Closing. The close stamp of a poll is the earliest of:

- a host close: ``close(poll, hlc.now())`` on the node that handled ClosePoll;
- the deadline close: ``close_at_deadline(poll)``, the stamp ``(closes_at_ms, 0, DEADLINE_REPLICA)``,
  identical on every node, issued by any node that notices the closing time has passed. Because
  ``DEADLINE_REPLICA`` sorts before every other replica id, a vote counts against a deadline iff its
  stamp's ``wall_ms < closes_at_ms``. Issuing it early or twice changes nothing.

So a vote in flight somewhere while the poll closes elsewhere counts iff it was stamped before the
close, and the answer is the same in every region once they have exchanged state. Writes a replica
already knows cannot count (stamped at or after its known close, or at or after the deadline) are
not recorded: ``vote`` returns an empty delta.

Merge: specs by the rule above, votes by LwwMap's join; both are joins, so merge is commutative,
associative and idempotent, and deltas (Almeida et al., "Delta State Replicated Data Types", 2018)
merge exactly like full states. ``merge`` returns the ids of the polls whose state changed in any
way (spec, close, or any voter's retained history), which is what a listener needs to re-render or
persist a poll. Tallies are kept incrementally by each poll's LwwMap; ``tally(poll)`` reads them in
O(options), never by scanning voters.

Deltas for peers: the unit of change is a poll's head (spec and close marker, voter "") or one
(poll, voter) history. Every change stamps its unit in a ``merge.deltalog.DeltaLog``;
``delta_since(v, limit)`` returns the join of the units changed after v, at most ``limit`` of them,
oldest first. ``len()`` counts units.

Equality: the same polls with equal specs and equal vote maps (LwwMap equality). Equal sets may
encode to different bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, overload

from reactmesh.merge import tags
from reactmesh.merge.codec import open_as, parse_body, seal_as
from reactmesh.merge.contract import Replicated
from reactmesh.merge.deltalog import DeltaLog
from reactmesh.merge.errors import ConfigError, CRDTMisuse, DecodeError
from reactmesh.merge.hlc import HlcTimestamp
from reactmesh.merge.lww import LwwMap
from reactmesh.merge.tags import Tag
from reactmesh.v1 import crdt_pb2

DEADLINE_REPLICA = "\x00"
"""Replica id of deadline close stamps: sorts before every non-empty id, so a vote stamped in the
closing millisecond never counts."""

Unit = tuple[str, str]
"""(poll_id, voter): one unit of change; voter "" is the poll's head (spec and close marker)."""

_HEAD = ""


def deadline_stamp(closes_at_ms: int) -> HlcTimestamp:
    """The close stamp every node issues for a poll whose closing time is ``closes_at_ms``."""
    return HlcTimestamp(closes_at_ms, 0, DEADLINE_REPLICA)


@dataclass(frozen=True, slots=True)
class PollSpec:
    """What the host asked; immutable once created."""

    stream_id: str
    question: str
    options: tuple[str, ...]
    created: HlcTimestamp
    # Unix milliseconds; 0 means "until closed by the host".
    closes_at_ms: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.options, tuple) or not all(isinstance(o, str) for o in self.options):
            raise CRDTMisuse(f"PollSpec options must be a tuple of strings, got {self.options!r}")
        if not 0 <= self.closes_at_ms < 2**63:
            raise CRDTMisuse(f"PollSpec closes_at_ms must be in [0, 2**63), got {self.closes_at_ms}")

    @property
    def created_at_ms(self) -> int:
        return self.created.wall_ms

    @property
    def deadline(self) -> HlcTimestamp | None:
        """The deadline close stamp, or None for a poll without a closing time."""
        return deadline_stamp(self.closes_at_ms) if self.closes_at_ms else None

    def order_key(self) -> tuple[HlcTimestamp, str, str, tuple[str, ...], int]:
        """Of two specs for one poll id, the smaller key wins."""
        return (self.created, self.stream_id, self.question, self.options, self.closes_at_ms)

    def to_proto(self) -> crdt_pb2.PollSpec:
        return crdt_pb2.PollSpec(
            stream_id=self.stream_id,
            question=self.question,
            options=self.options,
            created=self.created.to_proto(),
            closes_at_ms=self.closes_at_ms,
        )

    @classmethod
    def from_proto(cls, msg: crdt_pb2.PollSpec) -> PollSpec:
        """The spec ``msg`` carries; DecodeError when it has no creation stamp or bad fields."""
        if not msg.HasField("created"):
            raise DecodeError("poll spec without a created stamp")
        try:
            created = HlcTimestamp.from_proto(msg.created)
            return cls(msg.stream_id, msg.question, tuple(msg.options), created, msg.closes_at_ms)
        except CRDTMisuse as exc:
            raise DecodeError(f"bad poll spec: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PollValue:
    """A poll as readers see it: its spec, the number of counted voters per option, its close stamp."""

    poll_id: str
    spec: PollSpec
    # Parallel to spec.options.
    tallies: tuple[int, ...]
    closed_at: HlcTimestamp | None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class _Entry:
    __slots__ = ("spec", "votes")

    def __init__(self, spec: PollSpec | None, votes: LwwMap) -> None:
        self.spec = spec
        self.votes = votes


class PollSet:
    """poll id -> (spec, votes); see the module docstring for what merge and deltas guarantee."""

    TAG: ClassVar[Tag] = tags.POLL_SET
    TYPE: ClassVar[str] = TAG.type

    __slots__ = ("_by_stream", "_k", "_latest", "_log", "_polls")

    def __init__(self, history: int = LwwMap.DEFAULT_HISTORY) -> None:
        if history < 1:
            raise ConfigError("poll_set.history", "an integer >= 1", history)
        self._k = history
        self._polls: dict[str, _Entry] = {}
        # stream id -> ids of the polls whose spec names it (insertion-ordered set).
        self._by_stream: dict[str, dict[str, None]] = {}
        # Its keys are exactly the units present.
        self._log: DeltaLog[Unit] = DeltaLog()
        self._latest: HlcTimestamp | None = None

    @classmethod
    def new(cls) -> PollSet:
        return cls()

    # -- reading -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Local change counter; pass it back to ``delta_since`` later."""
        return self._log.version

    @property
    def history_limit(self) -> int:
        """K of every poll's LwwMap: how many writes each voter keeps."""
        return self._k

    @property
    def latest_stamp(self) -> HlcTimestamp | None:
        """The greatest stamp ever recorded here (creations, votes, closes), for ``HybridLogicalClock.update``."""
        return self._latest

    def spec(self, poll_id: str) -> PollSpec | None:
        entry = self._polls.get(poll_id)
        return entry.spec if entry is not None else None

    def closed_at(self, poll_id: str) -> HlcTimestamp | None:
        """The earliest close stamp known for the poll (host or deadline), None while none is known."""
        entry = self._polls.get(poll_id)
        return entry.votes.closed_at if entry is not None else None

    def votes(self, poll_id: str) -> LwwMap | None:
        """The poll's vote map, for reading only (mutate through this PollSet)."""
        entry = self._polls.get(poll_id)
        return entry.votes if entry is not None else None

    def counts(self, poll_id: str, stamp: HlcTimestamp) -> bool:
        """Whether a vote stamped ``stamp`` would count as far as this replica knows: before the
        known close and, for a poll with a closing time, before its deadline stamp."""
        entry = self._polls.get(poll_id)
        return entry is None or _counts(entry, stamp)

    def tally(self, poll_id: str) -> tuple[int, ...]:
        """Counted voters per option of the poll (empty for a poll whose spec is unknown)."""
        entry = self._polls.get(poll_id)
        if entry is None or entry.spec is None:
            return ()
        counts = entry.votes.tally()
        return tuple(counts.get(i, 0) for i in range(len(entry.spec.options)))

    @overload
    def value(self) -> dict[str, PollValue]: ...

    @overload
    def value(self, poll_id: str) -> PollValue | None: ...

    def value(self, poll_id: str | None = None) -> dict[str, PollValue] | PollValue | None:
        """The poll as readers see it (None while its spec is unknown); without an id, every such poll."""
        if poll_id is not None:
            return self._value(poll_id)
        out: dict[str, PollValue] = {}
        for pid in self._polls:
            v = self._value(pid)
            if v is not None:
                out[pid] = v
        return out

    def _value(self, poll_id: str) -> PollValue | None:
        entry = self._polls.get(poll_id)
        if entry is None or entry.spec is None:
            return None
        return PollValue(poll_id, entry.spec, self.tally(poll_id), entry.votes.closed_at)

    def polls_of(self, stream_id: str) -> list[str]:
        """Ids of the stream's polls (those whose spec is known), oldest first."""
        ids = self._by_stream.get(stream_id)
        if not ids:
            return []
        polls = self._polls
        return sorted(ids, key=lambda pid: polls[pid].spec.order_key())  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[str]:
        """Every poll id with any state (spec, votes or close)."""
        return iter(self._polls)

    def __contains__(self, poll_id: object) -> bool:
        return poll_id in self._polls

    def __len__(self) -> int:
        """Number of units (poll heads and voters) held."""
        return len(self._log)

    # -- mutating ----------------------------------------------------------------------------

    def create(self, poll_id: str, spec: PollSpec) -> PollSet:
        """Record ``spec`` for ``poll_id``; return the delta (empty if an earlier spec is already known)."""
        if not poll_id:
            raise CRDTMisuse("poll id must be a non-empty string")
        delta = PollSet(self._k)
        if self._join(poll_id, spec, None, adopt=False):
            delta._join(poll_id, spec, None, adopt=False)
        return delta

    def vote(self, poll_id: str, voter: str, option: int, stamp: HlcTimestamp) -> PollSet:
        """Record ``voter``'s vote for ``option`` at ``stamp``; return the delta.

        Empty when nothing changes: the write is known, older than the voter's K retained writes,
        or known not to count (see ``counts``).
        """
        if not poll_id or not voter:
            raise CRDTMisuse("poll id and voter must be non-empty strings")
        delta = PollSet(self._k)
        entry = self._polls.get(poll_id)
        if entry is not None and not _counts(entry, stamp):
            return delta
        votes = entry.votes if entry is not None else LwwMap(self._k)
        written = votes.set(voter, option, stamp)
        if len(written):
            if entry is None:
                self._polls[poll_id] = _Entry(None, votes)
            self._log.touch((poll_id, voter))
            self._saw(stamp)
            delta._polls[poll_id] = _Entry(None, written)
            delta._log.touch((poll_id, voter))
            delta._saw(stamp)
        return delta

    def close(self, poll_id: str, stamp: HlcTimestamp) -> PollSet:
        """Close the poll at ``stamp`` (the earliest close wins); return the delta, empty if already closed earlier."""
        if not poll_id:
            raise CRDTMisuse("poll id must be a non-empty string")
        delta = PollSet(self._k)
        entry = self._polls.get(poll_id)
        if entry is None:
            entry = self._polls[poll_id] = _Entry(None, LwwMap(self._k))
        written = entry.votes.close(stamp)
        if written.closed_at is not None:
            self._log.touch((poll_id, _HEAD))
            self._saw(stamp)
            delta._polls[poll_id] = _Entry(None, written)
            delta._log.touch((poll_id, _HEAD))
            delta._saw(stamp)
        return delta

    def close_at_deadline(self, poll_id: str) -> PollSet:
        """Close the poll at its deadline stamp; empty delta if it has none (or closed earlier)."""
        spec = self.spec(poll_id)
        if spec is None or spec.deadline is None:
            return PollSet(self._k)
        return self.close(poll_id, spec.deadline)

    def merge(self, other: PollSet) -> list[str]:
        """Join ``other`` (a state or a delta) in place; return the ids of the polls whose state changed."""
        changed: list[str] = []
        for poll_id, theirs in other._polls.items():
            if self._join(poll_id, theirs.spec, theirs.votes, adopt=False):
                changed.append(poll_id)
        return changed

    def _join(self, poll_id: str, spec: PollSpec | None, votes: LwwMap | None, *, adopt: bool) -> bool:
        """Join one poll's parts; touch the units that changed; True if any did. With ``adopt``,
        ``votes`` may become this set's own map (the caller gives it up)."""
        empty_votes = votes is None or (not len(votes) and votes.closed_at is None)
        mine = self._polls.get(poll_id)
        head = False
        voters: Iterable[str] = ()
        if mine is None:
            if spec is None and empty_votes:
                return False
            if votes is None or empty_votes:
                own = LwwMap(self._k)
            elif adopt:
                own = votes
            else:
                own = LwwMap(self._k)
                own.merge(votes)
            mine = self._polls[poll_id] = _Entry(None, own)
            head = own.closed_at is not None
            voters = list(own.keys())
        elif votes is not None and not empty_votes:
            own = mine.votes
            before_version, before_close = own.version, own.closed_at
            own.merge(votes)
            head = own.closed_at != before_close
            if len(votes) and own.version != before_version:
                voters = list(own.delta_since(before_version)[0].keys())
        if spec is not None and (mine.spec is None or spec.order_key() < mine.spec.order_key()):
            if mine.spec is not None:
                self._unindex(poll_id, mine.spec)
            mine.spec = spec
            self._by_stream.setdefault(spec.stream_id, {})[poll_id] = None
            self._saw(spec.created)
            head = True
        if head:
            self._log.touch((poll_id, _HEAD))
            if mine.votes.closed_at is not None:
                self._saw(mine.votes.closed_at)
        touched = False
        for voter in voters:
            self._log.touch((poll_id, voter))
            touched = True
        if touched and votes is not None:
            self._saw(votes.latest_stamp())
        return head or touched

    def _unindex(self, poll_id: str, spec: PollSpec) -> None:
        ids = self._by_stream.get(spec.stream_id)
        if ids is not None:
            ids.pop(poll_id, None)
            if not ids:
                del self._by_stream[spec.stream_id]

    def _saw(self, stamp: HlcTimestamp | None) -> None:
        if stamp is not None and (self._latest is None or stamp > self._latest):
            self._latest = stamp

    # -- deltas ------------------------------------------------------------------------------

    def delta_since(self, version: int, limit: int | None = None) -> tuple[PollSet, int]:
        """The join of every unit changed after ``version``, and the version it brings a peer up to.

        With ``limit``, at most that many units (the oldest changes first); the returned version
        then covers only what was included, so the caller sends the rest in later rounds.
        """
        changed, upto = self._log.since(version, limit)
        delta = PollSet(self._k)
        heads: list[str] = []
        for poll_id, voter in changed:
            if voter == _HEAD:
                heads.append(poll_id)
                continue
            entry = delta._polls.get(poll_id)
            if entry is None:
                entry = delta._polls[poll_id] = _Entry(None, LwwMap(self._k))
            for stamp, option in self._polls[poll_id].votes.history(voter):
                entry.votes.set(voter, option, stamp)
            delta._log.touch((poll_id, voter))
        for poll_id in heads:
            mine = self._polls[poll_id]
            entry = delta._polls.get(poll_id)
            if entry is None:
                entry = delta._polls[poll_id] = _Entry(None, LwwMap(self._k))
            entry.spec = mine.spec
            if mine.votes.closed_at is not None:
                entry.votes.close(mine.votes.closed_at)  # after the pairs: set() refuses writes after a close
            delta._log.touch((poll_id, _HEAD))
        return delta, upto

    def copy(self) -> PollSet:
        out = PollSet(self._k)
        for poll_id, entry in self._polls.items():
            out._join(poll_id, entry.spec, entry.votes.copy(), adopt=True)
        return out

    # -- equality and codec ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PollSet) or self._polls.keys() != other._polls.keys():
            return False
        for poll_id, mine in self._polls.items():
            theirs = other._polls[poll_id]
            if mine.spec != theirs.spec or mine.votes != theirs.votes:
                return False
        return True

    def __hash__(self) -> int:
        raise TypeError("PollSet is mutable and unhashable")

    def __repr__(self) -> str:
        return f"PollSet({len(self._polls)} polls, {len(self)} units)"

    def encode(self) -> bytes:
        body = crdt_pb2.PollSetState()
        add = body.polls.add
        for poll_id, entry in self._polls.items():
            msg = add(poll_id=poll_id)
            if entry.spec is not None:
                msg.spec.CopyFrom(entry.spec.to_proto())
            votes = entry.votes
            if len(votes) or votes.closed_at is not None:
                msg.votes = votes.encode()
        return seal_as(self.TAG, body)

    @classmethod
    def decode(cls, data: bytes, history: int = LwwMap.DEFAULT_HISTORY) -> PollSet:
        """The set ``data`` encodes, keeping ``history`` writes per voter; DecodeError for anything else."""
        raw = open_as(data, cls.TAG)
        body = crdt_pb2.PollSetState()
        parse_body(raw, body, cls.TYPE)
        out = cls(history)
        for msg in body.polls:
            if not msg.poll_id:
                raise DecodeError("poll_set body: entry with an empty poll id")
            spec = PollSpec.from_proto(msg.spec) if msg.HasField("spec") else None
            votes = LwwMap.decode(msg.votes, history=history) if msg.votes else None
            out._join(msg.poll_id, spec, votes, adopt=True)
        return out


def _counts(entry: _Entry, stamp: HlcTimestamp) -> bool:
    if not entry.votes.counts(stamp):
        return False
    spec = entry.spec
    return spec is None or not spec.closes_at_ms or stamp < deadline_stamp(spec.closes_at_ms)


_: type[Replicated] = PollSet
