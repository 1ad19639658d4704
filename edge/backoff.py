"""Named reconnect backoff policies, shared by the SDK, the edge's forwarders and the gossip dialers.

A policy answers one question: how long to wait after the ``failures``-th consecutive failure (``failures >=
1``). Both policies grow a cap exponentially, ``min(max_s, initial_s * 2**(failures - 1))``, and draw the delay
from an injectable ``random.Random`` (seed it in tests), so many clients that failed together do not come back
together:

- ``FullJitterBackoff``: uniform in [0, cap]. Spreads reconnects the most; used by the SDK (ingest and
  subscriptions) and by the gossip dialers (through ``backoff_delay``).
- ``EqualJitterBackoff``: uniform in [cap / 2, cap]. Never retries sooner than half the cap; used by the edge's
  forwarders, whose first reconnect after a break is immediate and not a policy decision.

Guarantees: every delay is in [0, max_s]; the exponent stops growing at 40 doublings, so a peer that stays
down for any number of failures never overflows a float. Each ``compute`` draws exactly one random number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Backoff", "EqualJitterBackoff", "FullJitterBackoff", "backoff_delay", "exponential_cap"]

_MAX_DOUBLINGS = 40


class Backoff(Protocol):
    """What a reconnect loop needs of a policy."""

    def compute(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure."""
        ...


def exponential_cap(failures: int, initial_s: float, max_s: float) -> float:
    """``min(max_s, initial_s * 2**(failures - 1))``, with ``failures`` taken as at least 1 and the exponent
    bounded, so it is finite for any ``failures``."""
    return min(max_s, initial_s * 2.0 ** min(max(failures - 1, 0), _MAX_DOUBLINGS))


def backoff_delay(failures: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter backoff: uniform in [0, min(max_s, initial_s * 2**(failures-1))]."""
    return rng.uniform(0.0, exponential_cap(failures, initial_s, max_s))


def _check(initial_s: float, max_s: float) -> None:
    if not 0 <= initial_s <= max_s:
        raise ValueError(f"backoff needs 0 <= initial_s <= max_s, got initial_s={initial_s}, max_s={max_s}")


@dataclass(frozen=True)
class FullJitterBackoff:
    """Uniform in [0, min(max_s, initial_s * 2**(failures-1))]. Raises ValueError unless 0 <= initial_s <=
    max_s."""

    initial_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.initial_s, self.max_s)

    def compute(self, failures: int) -> float:
        return backoff_delay(failures, self.initial_s, self.max_s, self.rng)

    def after_retry_after(self, retry_after_s: float) -> float:
        """The wait when a server asked for ``retry_after_s``: at least that, plus jitter of up to half of it (at
        least up to ``initial_s``), so that clients told the same thing at once return spread over a while."""
        return retry_after_s + self.rng.uniform(0.0, max(self.initial_s, retry_after_s / 2))


@dataclass(frozen=True)
class EqualJitterBackoff:
    """Uniform in [cap / 2, cap] with cap = min(max_s, initial_s * 2**(failures-1)). Raises ValueError unless
    0 <= initial_s <= max_s."""

    initial_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.initial_s, self.max_s)

    def compute(self, failures: int) -> float:
        return exponential_cap(failures, self.initial_s, self.max_s) * (0.5 + 0.5 * self.rng.random())
