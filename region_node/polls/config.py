"""Settings of a broadcaster's polls, validated at construction (ConfigError names the field)."""

from __future__ import annotations

from dataclasses import dataclass

from reactmesh.merge.checks import boolean, int_in
from reactmesh.merge.errors import ConfigError
from reactmesh.merge.hlc import HybridLogicalClock
from reactmesh.region_node.sqlite import Synchronous


@dataclass(frozen=True)
class PollsConfig:
    """Polls of one broadcaster (tokens are the node's ``[auth]`` section)."""

    # How often closing times are checked.
    tick_ms: int = 100
    # True: CreatePoll on a stream no reactions have reached yet is NOT_FOUND (a guard against typos in ids).
    require_known_stream: bool = False
    max_polls_per_stream: int = 100
    synchronous: Synchronous = "FULL"
    # A merged stamp further ahead of the local wall clock does not advance the node's HLC.
    max_drift_ms: int = HybridLogicalClock.DEFAULT_MAX_DRIFT_MS

    def __post_init__(self) -> None:
        int_in("tick_ms", self.tick_ms, 1, 60_000)
        boolean("require_known_stream", self.require_known_stream)
        int_in("max_polls_per_stream", self.max_polls_per_stream, 1, 100_000)
        if self.synchronous not in ("FULL", "NORMAL"):
            raise ConfigError("synchronous", '"FULL" or "NORMAL"', self.synchronous)
        int_in("max_drift_ms", self.max_drift_ms, 0, 86_400_000)
