"""EdgeConfig: everything an edge needs to know, validated once at construction.

A constructed EdgeConfig is always usable: every field has been checked in ``__post_init__`` and a bad
value raises ConfigError naming the field and the expected form. ``from_mapping`` builds one from a
parsed config file (lists become tuples; unknown keys are errors, so a typo never goes unnoticed).
Name forms and protocol caps are ``edge.limits``'s; ``region`` follows its region rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from reactmesh.edge.abuse import AbuseConfig
from reactmesh.edge.admission import ShedConfig
from reactmesh.edge.errors import ConfigError
from reactmesh.edge.limits import (
    DEFAULT_MAX_COUNT_PER_ENTRY,
    EMOJI_FORM,
    MAX_COUNT_PER_ENTRY,
    MAX_ENTRIES_PER_BATCH,
    MAX_ENTRIES_PER_EDGE_BATCH,
    REGION_FORM,
    is_emoji,
    is_region,
)
from reactmesh.merge.checks import int_in

DEFAULT_REACTIONS: tuple[str, ...] = ("like", "heart", "laugh", "wow", "sad", "fire")


@dataclass(frozen=True)
class EdgeConfig:
    """Configuration of one edge.

    ``aggregators`` are the "host:port" addresses of the region's aggregators; sessions are spread over
    them by consistent hash. Rate limits are per viewer: ``rate_per_s`` taps per second refilling a
    bucket of ``burst`` taps. ``max_inflight_entries`` bounds client batches forwarded but not yet acked,
    edge-wide (a memory bound: beyond it a stream ends with RESOURCE_EXHAUSTED); below it ``shedding``
    (``edge.admission.ShedConfig``, the ``[edge.shedding]`` table) keeps an adaptive limit and answers RETRY
    past it. Clients are told to come back after at least ``retry_after_ms``. Tokens are the node's
    ``[auth]`` section (``edge.auth.AuthConfig``), shared by every role of the process. ``abuse`` is the
    anomaly detector's (``edge.abuse.AbuseConfig``, the ``[edge.abuse]`` table).
    """

    region: str
    aggregators: tuple[str, ...]
    reactions: tuple[str, ...] = DEFAULT_REACTIONS
    max_count_per_entry: int = DEFAULT_MAX_COUNT_PER_ENTRY
    max_entries_per_batch: int = MAX_ENTRIES_PER_BATCH
    rate_per_s: float = 10.0
    burst: int = 50
    max_viewers_tracked: int = 100_000
    flush_interval_ms: int = 5
    max_entries_per_edge_batch: int = 1024
    max_inflight_entries: int = 50_000
    retry_after_ms: int = 500
    reconnect_backoff_ms: int = 100
    reconnect_backoff_max_ms: int = 5_000
    ring_vnodes: int = 512
    abuse: AbuseConfig = field(default_factory=AbuseConfig)
    shedding: ShedConfig = field(default_factory=ShedConfig)

    def __post_init__(self) -> None:
        if not is_region(self.region):
            raise ConfigError("region", REGION_FORM, self.region)
        _check_aggregators(self.aggregators)
        _check_reactions(self.reactions)
        int_in("max_count_per_entry", self.max_count_per_entry, 1, MAX_COUNT_PER_ENTRY)
        int_in("max_entries_per_batch", self.max_entries_per_batch, 1, MAX_ENTRIES_PER_BATCH)
        if (
            isinstance(self.rate_per_s, bool)
            or not isinstance(self.rate_per_s, int | float)
            or not 0 < self.rate_per_s < float("inf")
        ):
            raise ConfigError("rate_per_s", "a finite number > 0", self.rate_per_s)
        int_in("burst", self.burst, 1, 2**32)
        int_in("max_viewers_tracked", self.max_viewers_tracked, 1, 2**31)
        int_in("flush_interval_ms", self.flush_interval_ms, 0, 10_000)
        int_in("max_entries_per_edge_batch", self.max_entries_per_edge_batch, 1, MAX_ENTRIES_PER_EDGE_BATCH)
        int_in("max_inflight_entries", self.max_inflight_entries, 1, 2**31)
        int_in("retry_after_ms", self.retry_after_ms, 1, 2**32 - 1)
        int_in("reconnect_backoff_ms", self.reconnect_backoff_ms, 1, 600_000)
        int_in("reconnect_backoff_max_ms", self.reconnect_backoff_max_ms, self.reconnect_backoff_ms, 600_000)
        int_in("ring_vnodes", self.ring_vnodes, 1, 65_536)
        if not isinstance(self.abuse, AbuseConfig):
            raise ConfigError("abuse", "an AbuseConfig", self.abuse)
        if not isinstance(self.shedding, ShedConfig):
            raise ConfigError("shedding", "a ShedConfig", self.shedding)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EdgeConfig:
        """Build a config from a parsed file (e.g. the ``edge`` section of a YAML/JSON/TOML document)."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(str(key), f"one of {sorted(known)}", data[key])
        for required in ("region", "aggregators"):
            if required not in data:
                raise ConfigError(required, "a value (required)", None)
        values = dict(data)
        for key in ("aggregators", "reactions"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        if isinstance(values.get("abuse"), Mapping):
            values["abuse"] = AbuseConfig.from_mapping(values["abuse"])
        if isinstance(values.get("shedding"), Mapping):
            values["shedding"] = ShedConfig.from_mapping(values["shedding"])
        return cls(**values)


def _check_aggregators(value: object) -> None:
    expected = 'a non-empty tuple of distinct "host:port" addresses'
    if not isinstance(value, tuple) or not value or len(set(value)) != len(value):
        raise ConfigError("aggregators", expected, value)
    for address in value:
        if not isinstance(address, str):
            raise ConfigError("aggregators", expected, value)
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError("aggregators", expected, address)


def _check_reactions(value: object) -> None:
    expected = f"a non-empty tuple of distinct emoji names, {EMOJI_FORM}"
    if not isinstance(value, tuple) or not value or len(set(value)) != len(value):
        raise ConfigError("reactions", expected, value)
    for emoji in value:
        if not is_emoji(emoji):
            raise ConfigError("reactions", expected, emoji)
