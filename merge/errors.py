"""Errors raised by the CRDT library.

Each error says when it is raised; none of them carries a gRPC status, because merge/ knows
nothing of the network. Callers at a service boundary map them (DecodeError -> INVALID_ARGUMENT).
"""

from __future__ import annotations


class MergeError(Exception):
    """Base class of every error raised by merge/."""


class DecodeError(MergeError):
    """Raised when bytes do not decode to the expected CRDT: garbage, a truncated envelope,
    another type's envelope, or a version this build does not know."""


class CRDTMisuse(MergeError):
    """Raised when a mutator is called with arguments no replica may apply, such as a
    negative increment to a grow-only counter or an empty replica id."""


class ConfigError(ValueError):
    """Raised when a configuration value is invalid; names the field and the expected form."""

    def __init__(self, field: str, expected: str, got: object) -> None:
        super().__init__(f"config field {field!r}: expected {expected}, got {got!r}")
        self.field = field
        self.expected = expected


class ClockDriftError(MergeError):
    """Raised by ``HybridLogicalClock.update`` when a received timestamp's wall time is more than
    ``max_drift_ms`` ahead of the local wall clock; the clock is left unchanged, so one replica
    with a clock far in the future cannot drag every other clock forward."""

    def __init__(self, received_wall_ms: int, local_wall_ms: int, max_drift_ms: int) -> None:
        super().__init__(
            f"received timestamp is {received_wall_ms - local_wall_ms} ms ahead of the local clock "
            f"(wall {received_wall_ms} vs {local_wall_ms}; at most {max_drift_ms} ms allowed)"
        )
        self.received_wall_ms = received_wall_ms
        self.local_wall_ms = local_wall_ms
        self.max_drift_ms = max_drift_ms
