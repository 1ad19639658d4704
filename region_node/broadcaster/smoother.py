"""EMA-smoothed, capped release of true deltas: what viewers are shown, tick by tick.

One ``Smoother`` per stream, keyed by emoji. Between ticks ``add(emoji, n)`` records the true
delta; every tick ``step()`` releases, per emoji:

    pending += inflow                       (inflow: what add() brought since the last step)
    ema      = alpha * inflow + (1 - alpha) * ema
    floor    = max(floor, ceil(pending / drain_ticks))   (reset to 0 whenever pending reaches 0)
    cap      = max(min_step, ceil(k * ema), floor)
    out      = min(pending, cap);  pending -= out

Guarantees (for steps taken without ``limit``; ``tests/property/test_smoother_laws.py`` checks each):

- Outputs are non-negative integers and the running sum of outputs never exceeds the running sum
  of inputs: viewers are never shown more than the true total.
- Latency bound: every count present at step t is released by the end of step t + drain_ticks - 1.
  ``floor`` only grows while pending stays positive, so drain_ticks steps release at least
  drain_ticks * ceil(P / drain_ticks) >= P. In particular, after input stops pending is zero
  within drain_ticks steps.
- Smoothness: with k * alpha < 1 and drain_ticks >= 2 (enforced by ``SmootherConfig``), a burst
  B arriving at rest is released as min(B, max(min_step, ceil(k*alpha*B), ceil(B/drain_ticks)))
  on its first tick, which is less than B for every B > min_step with B >= max(2, 1/(1-k*alpha)):
  the rest follows over later ticks. At a steady rate d, ema -> d and cap >= ceil(k*d) >= d, so a
  steady flow is shown without falling behind.
- ``step(limit=K)`` (overload) releases only the K emojis with the largest outputs; the rest stay
  pending, so the sum law still holds and the latency bound resumes on the next unlimited steps.
- ``drain()`` releases everything pending at once.

The floats of the EMA only shape the cap; the counts themselves are exact integers.
An emoji is forgotten once nothing is pending and ceil(k * ema) <= min_step, so the work per step
is proportional to the emojis that moved recently, not to every emoji ever seen.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass

from reactmesh.merge.checks import int_at_least, int_in, is_number
from reactmesh.merge.errors import ConfigError


@dataclass(frozen=True)
class SmootherConfig:
    """Shape of the release curve; the latency bound is ``drain_ticks`` ticks."""

    alpha: float = 0.2
    k: float = 2.0
    min_step: int = 1
    drain_ticks: int = 20

    def __post_init__(self) -> None:
        if not is_number(self.alpha) or not 0 < self.alpha <= 1:
            raise ConfigError("smoothing.alpha", "a number in (0, 1]", self.alpha)
        if not is_number(self.k) or not 1 <= self.k < 1e6:
            raise ConfigError("smoothing.k", "a number >= 1 (the cap must keep up with a steady rate)", self.k)
        if self.k * self.alpha >= 1:
            raise ConfigError(
                "smoothing.k",
                f"k * alpha < 1 so that a burst is spread over several ticks (alpha={self.alpha})",
                self.k,
            )
        int_at_least("smoothing.min_step", self.min_step, 1)
        int_in("smoothing.drain_ticks", self.drain_ticks, 2, 100_000)


class _Slot:
    __slots__ = ("ema", "floor", "inflow", "pending")

    def __init__(self) -> None:
        self.inflow = 0
        self.pending = 0
        self.ema = 0.0
        self.floor = 0


class Smoother:
    """Per-emoji smoothing state of one stream."""

    __slots__ = ("_alpha", "_config", "_drain_ticks", "_k", "_min_step", "_slots")

    def __init__(self, config: SmootherConfig | None = None) -> None:
        self._config = config or SmootherConfig()
        self._alpha = self._config.alpha
        self._k = self._config.k
        self._min_step = self._config.min_step
        self._drain_ticks = self._config.drain_ticks
        self._slots: dict[str, _Slot] = {}

    @property
    def config(self) -> SmootherConfig:
        return self._config

    @property
    def active(self) -> bool:
        """True while some emoji has something pending or a recent rate that shapes its cap."""
        return bool(self._slots)

    def add(self, key: str, n: int) -> None:
        """Record a true delta of ``n`` (>= 0) for ``key``; it is released by later steps."""
        if n <= 0:
            if n < 0:
                raise ValueError(f"a true delta is never negative: {n}")
            return
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.inflow += n
        slot.pending += n

    def pending(self, key: str) -> int:
        """Counts of ``key`` received but not yet released."""
        slot = self._slots.get(key)
        return slot.pending if slot is not None else 0

    def pending_items(self) -> Iterator[tuple[str, int]]:
        """(emoji, pending) for every emoji with something pending."""
        for key, slot in self._slots.items():
            if slot.pending:
                yield key, slot.pending

    def step(self, limit: int | None = None) -> dict[str, int]:
        """Advance one tick; return the non-zero releases, at most ``limit`` emojis of them."""
        alpha, keep, k, min_step, ticks = self._alpha, 1.0 - self._alpha, self._k, self._min_step, self._drain_ticks
        out: dict[str, int] = {}
        idle: list[str] = []
        for key, slot in self._slots.items():
            inflow = slot.inflow
            slot.inflow = 0
            ema = slot.ema = alpha * inflow + keep * slot.ema
            pending = slot.pending
            rate_cap = math.ceil(k * ema)
            if pending:
                floor = -(-pending // ticks)
                if floor > slot.floor:
                    slot.floor = floor
                cap = max(min_step, rate_cap, slot.floor)
                n = pending if pending < cap else cap
                out[key] = n
                pending = slot.pending = pending - n
            if not pending:
                slot.floor = 0
                if rate_cap <= min_step:
                    idle.append(key)
        if limit is not None and len(out) > limit:
            kept = dict(heapq.nlargest(limit, out.items(), key=lambda kv: kv[1]))
            for key, n in out.items():
                if key not in kept:
                    slot = self._slots[key]
                    slot.pending += n
                    if not slot.floor:
                        slot.floor = -(-slot.pending // ticks)
            out = kept
        for key in idle:
            slot = self._slots[key]
            if not slot.pending:
                del self._slots[key]
        return out

    def drain(self) -> dict[str, int]:
        """Release everything pending now; return the non-zero releases."""
        out = {key: slot.pending for key, slot in self._slots.items() if slot.pending}
        self._slots.clear()
        return out
