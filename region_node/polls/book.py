"""The Polls service of a broadcaster: live polls with one changeable vote per viewer, in every region.

Where polls live. On the broadcaster role, the region's gateway: its ReplicaState holds the merged
global state and gossips every collection with the other regions' broadcasters, so polls are one
more collection there, ``"polls"``, a ``merge.polls.PollSet``. Every change, local or from a peer,
goes through ``ReplicaState.merge``; a listener hands the changed polls to the broadcaster (which
puts them in the stream's next frame) and to the writer of the node's poll file.

What a client can rely on (see ``merge.polls`` for the CRDT underneath):

- One vote per viewer globally: the vote with the greatest hybrid-logical-clock stamp wins in every
  region, whichever region took it. The node's clock (``merge.hlc``) is advanced past every stamp
  the node has merged before it stamps a vote, so a vote cast after seeing an earlier one wins.
- A vote counts iff its stamp is before the poll's close stamp. The close stamp is the earliest of
  the host's ClosePoll (stamped by the HLC of the node that handled it) and, for a poll with a
  closing time, the deadline stamp ``(closes_at_ms, 0, DEADLINE_REPLICA)`` that every node issues
  identically once it notices the time has passed: a vote counts against a deadline iff its stamp's
  wall time is before ``closes_at_ms``.
- A node that knows the poll is closed rejects a vote with FAILED_PRECONDITION and records nothing.
  A node that has not heard of the close yet (another region, partitioned or just behind) accepts it;
  once the regions have exchanged state the vote counts iff it was stamped before the close, the
  same in every region. So an OK answer means "recorded and durable here"; it counts unless a close
  stamped earlier than the vote was already under way elsewhere. (LwwMap keeps a voter's 8 latest
  writes: a voter who changed their vote 8 times after a close their region had not heard of has
  no earlier vote left to count.)
- Vote, CreatePoll and ClosePoll answer only after the change is in the node's poll file (SQLite,
  WAL; ``region_node.polls.store``). The file is written by one writer task in group commits: every
  write takes all changes made since the previous one (local or merged), so a burst of votes costs
  one transaction, not one per vote. It is reloaded on restart, and the HLC restarts after the
  greatest stamp it holds.
- Tallies are maintained incrementally by each poll's vote map; a frame or GetPoll renders a poll in
  O(options).

Validation (status codes): INVALID_ARGUMENT for a malformed stream id, a question blank or longer
than 280 chars, fewer than 2 or more than 10 options, a blank, duplicate or longer than 80 chars
option, a closing time in the past, a malformed poll id, a viewer id not 1..128 chars, an option
out of range. NOT_FOUND for an unknown poll. A poll may be created on a stream before its first
reaction (a host asks before anyone taps); with ``require_known_stream=True`` such a CreatePoll is
NOT_FOUND instead: a stream is then known to a broadcaster once reaction totals for it have reached
it (from any region) or it already has a poll. FAILED_PRECONDITION for a vote on a
closed poll and for a new poll on a drained stream (draining does not close existing polls).
RESOURCE_EXHAUSTED beyond ``max_polls_per_stream`` polls on one stream. UNAVAILABLE when the poll
file cannot be written (the change may still count; retrying is safe, a vote is a register write).

Auth is the servicer's (``edge.auth``'s policy, checked before the book is called): with auth enabled every
call needs a valid token (UNAUTHENTICATED); a Vote's ``viewer_id`` must be the token's subject, and CreatePoll
and ClosePoll need a host token naming the poll's stream or a moderator token (PERMISSION_DENIED otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reactmesh.edge.errors import (
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
    unavailable,
)
from reactmesh.edge.limits import (
    MAX_OPTION_CHARS,
    MAX_OPTIONS,
    MAX_QUESTION_CHARS,
    MIN_OPTIONS,
    POLL_ID_FORM,
    VIEWER_ID_FORM,
    is_poll_id,
    is_viewer_id,
)
from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ClockDriftError
from reactmesh.merge.hlc import HlcTimestamp, HybridLogicalClock
from reactmesh.merge.polls import PollSet, PollSpec, PollValue
from reactmesh.merge.replica import ReplicaState
from reactmesh.region_node.broadcaster.core import PollSource, check_stream_id
from reactmesh.region_node.polls.config import PollsConfig
from reactmesh.region_node.polls.store import PollStore
from reactmesh.region_node.state import POLLS
from reactmesh.v1 import polls_pb2

log = logging.getLogger(__name__)


class StreamDirectory(Protocol):
    """What polls need of the broadcaster: which streams exist, and where poll changes go."""

    def stream_known(self, stream_id: str) -> bool: ...

    def drained_at(self, stream_id: str) -> int | None: ...

    def polls_changed(self, stream_id: str, poll_ids: Iterable[str]) -> None: ...

    def set_poll_source(self, source: PollSource) -> None: ...


@dataclass(frozen=True)
class PollStatistics:
    """A snapshot of one PollBook's counters."""

    polls: int
    votes_accepted: int
    votes_rejected_closed: int
    host_closes: int
    deadline_closes: int
    # Version of the PollSet, and the version the poll file holds.
    version: int
    saved_version: int
    flushes: int
    units_saved: int
    store_errors: int
    # Merged stamps too far ahead of the local clock to advance the HLC.
    clock_drift_rejections: int


def to_proto(value: PollValue) -> polls_pb2.Poll:
    """The API view of a poll."""
    spec = value.spec
    closed = value.closed_at
    return polls_pb2.Poll(
        poll_id=value.poll_id,
        stream_id=spec.stream_id,
        question=spec.question,
        options=spec.options,
        tallies=value.tallies,
        state=polls_pb2.Poll.CLOSED if closed is not None else polls_pb2.Poll.OPEN,
        created_at_ms=spec.created_at_ms,
        closes_at_ms=spec.closes_at_ms,
        closed_at_ms=closed.wall_ms if closed is not None else 0,
    )


class PollBook:
    """The polls of one broadcaster: validation, stamping, closing, and the poll file's writer.

    ``state`` must hold a PollSet under ``"polls"``. Every change is merged into ``state`` (so its
    listeners, gossip included, see it). Call ``start()`` to run the writer and the closing-time
    ticker, ``stop()`` to flush and end them.
    """

    def __init__(
        self,
        state: ReplicaState,
        hlc: HybridLogicalClock,
        clock: Clock,
        *,
        streams: StreamDirectory | None = None,
        store: PollStore | None = None,
        config: PollsConfig | None = None,
        saved_version: int = 0,
        new_id: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        polls = state.collections.get(POLLS)
        if not isinstance(polls, PollSet):
            raise TypeError(f'the ReplicaState needs extra={{"{POLLS}": PollSet()}}, has {type(polls).__name__}')
        self._state = state
        self._polls = polls
        self._hlc = hlc
        self._clock = clock
        self._streams = streams
        self._store = store
        self.config = config or PollsConfig()
        self._new_id = new_id
        # (closes_at_ms, poll_id) of polls whose deadline close is not yet issued here.
        self._deadlines: list[tuple[int, str]] = []
        self._scheduled: set[str] = set()
        self._saved = saved_version
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._observed: HlcTimestamp | None = None
        self._votes_accepted = 0
        self._votes_rejected_closed = 0
        self._host_closes = 0
        self._deadline_closes = 0
        self._flushes = 0
        self._units_saved = 0
        self._store_errors = 0
        self._drift = 0
        state.add_listener(self._on_merge)
        if streams is not None:
            streams.set_poll_source(self)
        self._on_merge(POLLS, polls, list(polls))

    @property
    def polls(self) -> PollSet:
        return self._polls

    @property
    def hlc(self) -> HybridLogicalClock:
        return self._hlc

    # -- the API -----------------------------------------------------------------------------

    async def create(self, stream_id: str, question: str, options: Sequence[str], closes_at_ms: int = 0) -> PollValue:
        """Create a poll; see the module docstring for every status it raises (as ServiceError)."""
        check_stream_id(stream_id)
        if not question.strip() or len(question) > MAX_QUESTION_CHARS:
            raise invalid_argument(f"question must be 1..{MAX_QUESTION_CHARS} chars, not blank (got {len(question)})")
        if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
            raise invalid_argument(f"a poll needs {MIN_OPTIONS}..{MAX_OPTIONS} options, got {len(options)}")
        for i, option in enumerate(options):
            if not option.strip() or len(option) > MAX_OPTION_CHARS:
                raise invalid_argument(f"option {i} must be 1..{MAX_OPTION_CHARS} chars, not blank (got {len(option)})")
        if len(set(options)) != len(options):
            raise invalid_argument("options must be distinct")
        now = self._clock.wall_ms()
        if closes_at_ms < 0 or (closes_at_ms and closes_at_ms <= now):
            raise invalid_argument(
                f"closes_at_ms must be 0 (until closed) or in the future (now {now}), got {closes_at_ms}"
            )
        existing = self._polls.polls_of(stream_id)
        streams = self._streams
        if streams is not None:
            drained = streams.drained_at(stream_id)
            if drained is not None:
                raise failed_precondition(f"stream {stream_id!r} was drained at {drained}; it takes no new polls")
            if self.config.require_known_stream and not existing and not streams.stream_known(stream_id):
                raise not_found(f"stream {stream_id!r} is unknown here: no reactions have been counted for it yet")
        if len(existing) >= self.config.max_polls_per_stream:
            raise resource_exhausted(f"stream {stream_id!r} already has {len(existing)} polls (max_polls_per_stream)")
        stamp = self._stamp()
        poll_id = self._new_id()
        spec = PollSpec(stream_id, question, tuple(options), stamp, closes_at_ms)
        self._state.merge(POLLS, PollSet(self._polls.history_limit).create(poll_id, spec))
        await self._durable()
        return self._value(poll_id)

    async def vote(self, poll_id: str, viewer_id: str, option: int) -> tuple[PollValue, HlcTimestamp]:
        """Record ``viewer_id``'s vote; return the poll and the vote's stamp.

        Raises ServiceError: INVALID_ARGUMENT (poll id, viewer id, option), NOT_FOUND (unknown
        poll), FAILED_PRECONDITION (the poll is closed here), UNAVAILABLE (poll file).
        """
        _check_poll_id(poll_id)
        if not is_viewer_id(viewer_id):
            raise invalid_argument(f"viewer_id must be {VIEWER_ID_FORM}, got {len(viewer_id)}")
        spec = self._spec(poll_id)
        if not 0 <= option < len(spec.options):
            raise invalid_argument(f"option must be an index in 0..{len(spec.options) - 1}, got {option}")
        stamp = self._stamp()
        self._settle(poll_id, spec, stamp)
        polls = self._polls
        if not polls.counts(poll_id, stamp):
            self._votes_rejected_closed += 1
            closed = polls.closed_at(poll_id)
            when = f" at {closed.wall_ms}" if closed is not None else ""
            raise failed_precondition(f"poll {poll_id} is closed{when}; the vote was not counted")
        self._state.merge(POLLS, PollSet(polls.history_limit).vote(poll_id, viewer_id, option, stamp))
        self._votes_accepted += 1
        await self._durable()
        return self._value(poll_id), stamp

    async def close(self, poll_id: str) -> PollValue:
        """Close the poll now (the host's ClosePoll); closing a closed poll returns it unchanged."""
        _check_poll_id(poll_id)
        spec = self._spec(poll_id)
        self._settle(poll_id, spec)
        if self._polls.closed_at(poll_id) is None:
            stamp = self._stamp()
            deadline = spec.deadline
            if deadline is not None and stamp >= deadline:
                self._close_at_deadline(poll_id)
            else:
                self._state.merge(POLLS, PollSet(self._polls.history_limit).close(poll_id, stamp))
                self._host_closes += 1
            await self._durable()
        return self._value(poll_id)

    def stream_of(self, poll_id: str) -> str:
        """The stream a poll is on (to authorize ClosePoll); INVALID_ARGUMENT / NOT_FOUND as ``close``."""
        _check_poll_id(poll_id)
        return self._spec(poll_id).stream_id

    def get(self, poll_id: str) -> PollValue:
        """The poll as this node knows it (closed first if its closing time has passed)."""
        _check_poll_id(poll_id)
        self._settle(poll_id, self._spec(poll_id))
        return self._value(poll_id)

    def render(self, poll_id: str) -> polls_pb2.Poll | None:
        """The API view of a poll, or None while its spec is unknown (the broadcaster's PollSource)."""
        value = self._polls.value(poll_id)
        return to_proto(value) if value is not None else None

    def _spec(self, poll_id: str) -> PollSpec:
        spec = self._polls.spec(poll_id)
        if spec is None:
            raise not_found(f"poll {poll_id!r} is unknown here")
        return spec

    def _value(self, poll_id: str) -> PollValue:
        value = self._polls.value(poll_id)
        assert value is not None  # specs are never removed
        return value

    # -- clock and closing times -------------------------------------------------------------

    def _stamp(self) -> HlcTimestamp:
        """A fresh stamp, after every stamp this node has merged (within the drift bound)."""
        latest = self._polls.latest_stamp
        if latest is not None and latest != self._observed:
            self._observed = latest
            try:
                self._hlc.update(latest)
            except ClockDriftError as exc:
                self._drift += 1
                log.warning("poll stamp from a peer not used to advance the clock: %s", exc)
        return self._hlc.now()

    def _settle(self, poll_id: str, spec: PollSpec, stamp: HlcTimestamp | None = None) -> None:
        """Issue the deadline close if the closing time has passed (by the wall clock, or by ``stamp``)."""
        deadline = spec.deadline
        if deadline is None:
            return
        if self._clock.wall_ms() >= spec.closes_at_ms or (stamp is not None and stamp >= deadline):
            self._close_at_deadline(poll_id)

    def _close_at_deadline(self, poll_id: str) -> bool:
        polls = self._polls
        spec = polls.spec(poll_id)
        if spec is None or spec.deadline is None:
            return False
        closed = polls.closed_at(poll_id)
        if closed is not None and closed <= spec.deadline:
            return False
        self._state.merge(POLLS, PollSet(polls.history_limit).close(poll_id, spec.deadline))
        self._deadline_closes += 1
        return True

    def tick(self) -> int:
        """Close every poll whose closing time has passed; return how many closed. ``start()`` calls it."""
        now = self._clock.wall_ms()
        heap = self._deadlines
        closed = 0
        while heap and heap[0][0] <= now:
            _, poll_id = heapq.heappop(heap)
            self._scheduled.discard(poll_id)
            closed += self._close_at_deadline(poll_id)
        return closed

    async def _tick_loop(self) -> None:
        period = self.config.tick_ms / 1000
        while True:
            await self._clock.sleep(period)
            if self._deadlines:
                self.tick()

    # -- changes -----------------------------------------------------------------------------

    def _on_merge(self, collection: str, polls: Any, changed: Sequence[Any]) -> None:
        if collection != POLLS:
            return
        by_stream: dict[str, list[str]] = {}
        for poll_id in changed:
            spec = self._polls.spec(poll_id)
            if spec is None:
                continue
            by_stream.setdefault(spec.stream_id, []).append(poll_id)
            if spec.closes_at_ms and poll_id not in self._scheduled and self._polls.closed_at(poll_id) is None:
                heapq.heappush(self._deadlines, (spec.closes_at_ms, poll_id))
                self._scheduled.add(poll_id)
        if self._streams is not None:
            for stream_id, ids in by_stream.items():
                self._streams.polls_changed(stream_id, ids)
        if self._store is not None:
            self._wake.set()

    # -- durability --------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write every change not yet in the poll file, in one transaction; return the units written."""
        store = self._store
        if store is None:
            return 0
        async with self._flush_lock:
            if self._polls.version <= self._saved:
                return 0
            delta, upto = self._polls.delta_since(self._saved)
            written = await store.save(delta)
            self._saved = upto
            self._flushes += 1
            self._units_saved += written
            return written

    async def _durable(self) -> None:
        """Return once everything merged so far is in the poll file; UNAVAILABLE ServiceError if it cannot be."""
        if self._store is None:
            return
        target = self._polls.version
        if self._saved >= target:
            return
        if not self._tasks:
            try:
                await self.flush()
            except Exception as exc:
                self._store_errors += 1
                raise unavailable(f"poll file write failed: {exc}") from exc
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._wake.set()
        await fut

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                self._store_errors += 1
                log.error("poll file write failed: %s", exc)
                waiters, self._waiters = self._waiters, []
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(unavailable(f"poll file write failed: {exc}"))
                continue
            waiting: list[tuple[int, asyncio.Future[None]]] = []
            for target, fut in self._waiters:
                if fut.done():
                    continue
                if target <= self._saved:
                    fut.set_result(None)
                else:
                    waiting.append((target, fut))
            self._waiters = waiting
            if waiting or self._polls.version > self._saved:
                self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the poll file's writer and the closing-time ticker."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="polls-ticks"))
        if self._store is not None:
            self._tasks.append(asyncio.create_task(self._write_loop(), name="polls-writer"))

    async def stop(self) -> None:
        """Stop the tasks, write what is left, close the poll file. Idempotent."""
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
                    fut.set_exception(unavailable("polls are shutting down"))
            self._waiters = []
            self._store = None
            await store.close()

    def statistics(self) -> PollStatistics:
        return PollStatistics(
            polls=sum(1 for _ in self._polls),
            votes_accepted=self._votes_accepted,
            votes_rejected_closed=self._votes_rejected_closed,
            host_closes=self._host_closes,
            deadline_closes=self._deadline_closes,
            version=self._polls.version,
            saved_version=self._saved,
            flushes=self._flushes,
            units_saved=self._units_saved,
            store_errors=self._store_errors,
            clock_drift_rejections=self._drift,
        )


def _check_poll_id(poll_id: str) -> None:
    if not is_poll_id(poll_id):
        raise invalid_argument(f"poll_id must be {POLL_ID_FORM}, got {poll_id[:80]!r}")
