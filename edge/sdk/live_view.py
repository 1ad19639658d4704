"""LiveView: what a viewer displays for one stream, built from the frames of ``Broadcast.Subscribe``.

Guarantee: frames replayed after a resume never count twice (see ``LiveView``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from reactmesh.v1 import broadcast_pb2, polls_pb2

__all__ = ["LiveView"]


class LiveView:
    """What a viewer displays for one stream: SNAPSHOT frames replace it, DELTA frames add to it.

    A DELTA whose (epoch, seq) is not after the last applied frame of the same epoch is ignored, so replays
    never count twice.
    """

    def __init__(self) -> None:
        self._totals: dict[str, int] = {}
        self._polls: dict[str, polls_pb2.Poll] = {}
        self.epoch = 0
        self.seq = 0
        self.drained = False
        self.degrade_level = 0
        """The broadcaster's overload level in the last frame: above 0, show static hearts rather than animate."""
        self.frames_applied = 0

    @property
    def totals(self) -> Mapping[str, int]:
        """Emoji -> count shown (read-only view)."""
        return MappingProxyType(self._totals)

    @property
    def polls(self) -> Mapping[str, polls_pb2.Poll]:
        """Poll id -> latest state of the stream's polls (read-only view)."""
        return MappingProxyType(self._polls)

    def apply(self, frame: broadcast_pb2.Frame) -> bool:
        """Apply one frame; returns False if it was ignored (a replayed DELTA or an unknown kind)."""
        if frame.kind == broadcast_pb2.Frame.SNAPSHOT:
            self._totals = {c.emoji: c.count for c in frame.counts}
            self._polls = {p.poll_id: p for p in frame.polls}
        elif frame.kind == broadcast_pb2.Frame.DELTA:
            if self.frames_applied and frame.epoch == self.epoch and frame.seq <= self.seq:
                return False
            totals = self._totals
            for c in frame.counts:
                totals[c.emoji] = totals.get(c.emoji, 0) + c.count
            for p in frame.polls:
                self._polls[p.poll_id] = p
        else:
            return False
        self.epoch = frame.epoch
        self.seq = frame.seq
        self.drained = self.drained or frame.drained
        self.degrade_level = frame.degrade_level
        self.frames_applied += 1
        return True
