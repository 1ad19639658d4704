"""Validation of client batches against the wire rules (``edge.limits``, ingest.proto) and the deployment's caps.

``Validator.check`` returns None for a batch the edge may count, else the first failed rule as a
(RejectReason, detail) pair. Rules are checked in a fixed order (session, viewer, seq, stream, entry
count, then each entry), so the same batch always gets the same reason. It runs once per batch: the
cost is a few attribute reads and one set lookup per entry.
"""

from __future__ import annotations

from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.limits import (
    MAX_EMOJI_CHARS,
    MAX_VIEWER_ID_CHARS,
    SESSION_ID_BYTES,
    STREAM_ID_FORM,
    STREAM_ID_RE,
    VIEWER_ID_FORM,
)
from reactmesh.v1 import ingest_pb2

Reason = ingest_pb2.BatchAck.RejectReason
Rejection = tuple[Reason, str]

_stream_ok = STREAM_ID_RE.fullmatch

_Ack = ingest_pb2.BatchAck


class Validator:
    """Checks ClientBatches against one deployment's reaction set and caps."""

    __slots__ = ("_max_count", "_max_entries", "_reactions")

    def __init__(self, reactions: tuple[str, ...], max_count_per_entry: int, max_entries_per_batch: int) -> None:
        self._reactions = frozenset(reactions)
        self._max_count = max_count_per_entry
        self._max_entries = max_entries_per_batch

    @classmethod
    def from_config(cls, config: EdgeConfig) -> Validator:
        return cls(config.reactions, config.max_count_per_entry, config.max_entries_per_batch)

    def check(self, batch: ingest_pb2.ClientBatch) -> Rejection | None:
        """None if ``batch`` is valid, else why it is not."""
        if len(batch.session_id) != SESSION_ID_BYTES:
            return _Ack.BAD_SESSION_ID, f"session_id must be {SESSION_ID_BYTES} bytes, got {len(batch.session_id)}"
        if not 0 < len(batch.viewer_id) <= MAX_VIEWER_ID_CHARS:
            return _Ack.BAD_VIEWER_ID, f"viewer_id must be {VIEWER_ID_FORM}"
        if batch.seq == 0:
            return _Ack.BAD_SEQ, "seq must be > 0"
        if _stream_ok(batch.stream_id) is None:
            return _Ack.BAD_STREAM_ID, f"stream_id must be {STREAM_ID_FORM}"
        counts = batch.counts
        n = len(counts)
        if n == 0:
            return _Ack.EMPTY_BATCH, "a batch needs at least one emoji count"
        if n > self._max_entries:
            return _Ack.TOO_MANY_ENTRIES, f"at most {self._max_entries} emoji counts per batch, got {n}"
        reactions = self._reactions
        cap = self._max_count
        seen: set[str] = set()
        for entry in counts:
            emoji = entry.emoji
            if emoji not in reactions:
                return _Ack.UNKNOWN_EMOJI, f"unknown emoji {emoji[:MAX_EMOJI_CHARS]!r}"
            if emoji in seen:
                return _Ack.DUPLICATE_EMOJI, f"emoji {emoji!r} appears more than once"
            seen.add(emoji)
            if not 0 < entry.count <= cap:
                return _Ack.BAD_COUNT, f"count of {emoji!r} must be in 1..{cap}, got {entry.count}"
        return None


def validate(batch: ingest_pb2.ClientBatch, config: EdgeConfig) -> Rejection | None:
    """One-off check of ``batch`` under ``config``; hot paths keep a Validator instead."""
    return Validator.from_config(config).check(batch)
