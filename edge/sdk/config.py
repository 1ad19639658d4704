"""ClientConfig: the settings of one ReactionClient, validated at construction.

A constructed ClientConfig is always usable; a bad value raises ConfigError naming the field and the expected
form. Wire caps (viewer id length, entries per batch) are ``edge.limits``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from reactmesh.edge.errors import ConfigError
from reactmesh.edge.limits import DEFAULT_MAX_COUNT_PER_ENTRY, MAX_ENTRIES_PER_BATCH, VIEWER_ID_FORM, is_viewer_id

__all__ = ["ClientConfig"]


@dataclass(frozen=True)
class ClientConfig:
    """Settings of one ReactionClient; validated at construction."""

    edges: tuple[str, ...]
    viewer_id: str
    batch_interval_s: float = 0.25
    max_unacked_batches: int = 256
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    connect_timeout_s: float = 5.0
    ack_timeout_s: float = 10.0
    max_entries_per_batch: int = MAX_ENTRIES_PER_BATCH
    max_count_per_entry: int = DEFAULT_MAX_COUNT_PER_ENTRY
    latency_samples: int = 10_000
    ack_latency_target_s: float = 0.25

    def __post_init__(self) -> None:
        if not self.edges or not all(isinstance(e, str) and e for e in self.edges):
            raise ConfigError("edges", "one or more non-empty 'host:port' addresses", self.edges)
        if not is_viewer_id(self.viewer_id):
            raise ConfigError("viewer_id", f"a string of {VIEWER_ID_FORM}", self.viewer_id)
        for name in (
            "batch_interval_s",
            "backoff_initial_s",
            "connect_timeout_s",
            "ack_timeout_s",
            "ack_latency_target_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(name, "seconds > 0", value)
        if not isinstance(self.backoff_max_s, int | float) or self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(
                "backoff_max_s", f"seconds >= backoff_initial_s ({self.backoff_initial_s})", self.backoff_max_s
            )
        for name, low in (("max_unacked_batches", 1), ("max_count_per_entry", 1), ("latency_samples", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(name, f"an integer >= {low}", value)
        if (
            not isinstance(self.max_entries_per_batch, int)
            or not 1 <= self.max_entries_per_batch <= MAX_ENTRIES_PER_BATCH
        ):
            raise ConfigError(
                "max_entries_per_batch",
                f"an integer in 1..{MAX_ENTRIES_PER_BATCH} (ingest.proto)",
                self.max_entries_per_batch,
            )
