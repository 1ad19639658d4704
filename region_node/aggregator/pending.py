"""What an aggregator holds between commits: each Forward stream's ack queue, and everything applied since the
last commit (restorable watermarks, window increments, acks in arrival order), plus what a commit reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from reactmesh.edge.errors import ServiceError
from reactmesh.v1 import aggregator_pb2

_NEVER_MS = 2**63


@dataclass(frozen=True, slots=True)
class CommitFacts:
    """What one commit did; given to every commit listener."""

    committed_at_ms: int
    commit_seconds: float
    entries: int
    taps: int
    sessions: int
    oldest_accepted_at_ms: int
    """Smallest accepted_at_ms (edge clock, or ours when it was unusable) among the entries."""
    mean_accepted_at_ms: float


CommitListener = Callable[[CommitFacts], None]


class ForwardStream:
    """One open Forward call: its outgoing queue and its reader task."""

    __slots__ = ("dead", "out", "reader", "unacked")

    def __init__(self) -> None:
        # An EdgeAck to send, None to end the call with OK, a ServiceError to end it with that status.
        self.out: asyncio.Queue[aggregator_pb2.EdgeAck | ServiceError | None] = asyncio.Queue()
        self.dead = False
        self.unacked = 0
        self.reader: asyncio.Task[None] | None = None


class Pending:
    """Everything applied since the last commit."""

    __slots__ = ("acc_min", "acc_sum", "acks", "entries", "prev_wm", "taps", "windows")

    def __init__(self) -> None:
        # session -> its uncommitted watermark before this tick's first entry, 0 if none (restored if the commit
        # fails; the committed one is in state.watermarks).
        self.prev_wm: dict[bytes, int] = {}
        # (stream, window_start_s) -> emoji -> taps.
        self.windows: dict[tuple[str, int], dict[str, int]] = {}
        # Acks to send after the commit, in arrival order; None ends the call (the edge half-closed).
        self.acks: list[tuple[ForwardStream, aggregator_pb2.EdgeAck | None]] = []
        self.entries = 0
        self.taps = 0
        self.acc_sum = 0
        self.acc_min = _NEVER_MS
