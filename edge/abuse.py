"""Anti-abuse at the edge: an anomaly detector over admitted batches that raises per-viewer flags.

``AbuseDetector.observe`` is fed every batch the edge admitted (after validation and the rate limiter), with the
taps it offered per emoji and how many the rate limit granted, and returns the flags it newly raised:

- ``RATE``: the viewer's *offered* tap rate (taps the rate limiter dropped included: a bot offers more than the
  cap) is at least ``rate_fraction`` of the edge's per-viewer cap in every ``rate_window_s`` window for at least
  ``sustain_s`` (windows are the viewer's own, back to back from its first batch; a window below the line, or an
  empty one, ends the run). Raised at the first batch after the window that completes the run.
- ``LOW_ENTROPY``: over the viewer's recent taps (at least ``min_taps``; counts are halved whenever they reach
  ``2 * min_taps``, so the mix is the last few hundred taps) the Shannon entropy of its emoji mix is below the
  stream's own entropy minus ``entropy_gap_bits``. The stream's mix is every viewer's *granted* taps at this edge,
  halved whenever it reaches ``stream_memory_taps``, and is compared only once it holds ``min_taps``. Checked every
  ``min_taps // 4`` taps of the viewer.
- ``SESSIONS``: more than ``max_sessions`` distinct session ids seen for the viewer within ``sessions_window_s``.

A flag is active for ``flag_ttl_s`` after it was raised and is not raised again (same viewer and kind) until then.
Flags are signals: with ``shadow_mute`` the Edge acks a flagged viewer's batches as it would have (ACCEPTED, the
taps the rate limit grants) but forwards and counts none of them (``edge.service``).

Memory is bounded and every cost is paid by the batch that causes it, never by elapsed time: at most
``max_viewers_tracked`` viewers (least recently seen evicted when a new one arrives), each with two times and
a count for the rate, at most ``MAX_EMOJIS`` emoji counts and ``max_sessions + 1`` sessions; at most
``max_streams_tracked`` stream mixes (LRU). A viewer with a few emojis and one session costs about 0.8 KB
(tracemalloc), so a full default table is some 80 MB. Active flags are kept apart from the viewer state, in raise
order (so in expiry order, the TTL being one constant), at most ``max_viewers_tracked`` of them, dropped from the
front when they expire as later calls pass by. Evicting a viewer forgets its rate run, mix and sessions (it starts
afresh when it comes back) but not its active flags; when the flag table is full the oldest active flag is dropped
early (``flags_dropped``), and could then be raised again.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from reactmesh.merge.checks import boolean, int_in, number_in
from reactmesh.merge.clock import Clock
from reactmesh.merge.errors import ConfigError

MAX_EMOJIS = 64
"""Distinct emojis counted per viewer and per stream; taps of further ones share one bucket."""
_OTHER = "\x00other"


class FlagKind(StrEnum):
    """Why a viewer was flagged; the value is the metric label."""

    RATE = "rate"
    LOW_ENTROPY = "low_entropy"
    SESSIONS = "sessions"


@dataclass(frozen=True, slots=True)
class Flag:
    """One raised flag: ``viewer_id`` looked like ``kind`` on ``stream_id`` at wall time ``raised_at_ms``."""

    viewer_id: str
    kind: FlagKind
    stream_id: str
    detail: str
    raised_at_ms: int


@dataclass(frozen=True)
class AbuseConfig:
    """The edge's anti-abuse settings (the ``[edge.abuse]`` table); see the module docstring for each signal.

    ``enabled`` runs the detector (flags are only signals); ``shadow_mute`` makes the Edge ack a flagged
    viewer's batches without forwarding or counting them.
    """

    enabled: bool = True
    shadow_mute: bool = False
    rate_fraction: float = 0.9
    sustain_s: float = 20.0
    rate_window_s: float = 2.0
    min_taps: int = 200
    entropy_gap_bits: float = 1.5
    stream_memory_taps: int = 10_000
    max_sessions: int = 4
    sessions_window_s: float = 60.0
    flag_ttl_s: float = 600.0
    max_viewers_tracked: int = 100_000
    max_streams_tracked: int = 10_000

    def __post_init__(self) -> None:
        boolean("enabled", self.enabled)
        boolean("shadow_mute", self.shadow_mute)
        number_in("rate_fraction", self.rate_fraction, 0.0, 1.0, low_open=True)
        number_in("sustain_s", self.sustain_s, 0.0, 86_400.0, low_open=True, unit="seconds")
        number_in("rate_window_s", self.rate_window_s, 0.0, self.sustain_s, low_open=True, unit="seconds")
        int_in("min_taps", self.min_taps, 1, 1_000_000)
        number_in("entropy_gap_bits", self.entropy_gap_bits, 0.0, 64.0, low_open=True, unit="bits")
        int_in("stream_memory_taps", self.stream_memory_taps, 2 * self.min_taps, 2**40)
        int_in("max_sessions", self.max_sessions, 1, 1_000)
        number_in("sessions_window_s", self.sessions_window_s, 0.0, 86_400.0, low_open=True, unit="seconds")
        number_in("flag_ttl_s", self.flag_ttl_s, 0.0, 30 * 86_400.0, low_open=True, unit="seconds")
        int_in("max_viewers_tracked", self.max_viewers_tracked, 1, 2**31)
        int_in("max_streams_tracked", self.max_streams_tracked, 1, 2**31)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AbuseConfig:
        """Build from a parsed table; unknown keys are errors naming ``abuse.<key>``."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"abuse.{key}", f"one of {sorted(known)}", data[key])
        return cls(**data)


class _Mix:
    """Emoji counts, halved whenever their total reaches ``limit``; at most MAX_EMOJIS keys."""

    __slots__ = ("counts", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.counts: dict[str, float] = {}
        self.total = 0.0
        self.limit = limit

    def add(self, emoji: str, n: float) -> None:
        counts = self.counts
        if emoji not in counts and len(counts) >= MAX_EMOJIS:
            emoji = _OTHER
        counts[emoji] = counts.get(emoji, 0.0) + n
        self.total += n

    def decay(self) -> None:
        """Halve the counts until their total is below the limit (once, unless one batch was larger than it)."""
        while self.total >= self.limit:
            for emoji in self.counts:
                self.counts[emoji] /= 2
            self.total /= 2

    def entropy(self) -> float:
        """Shannon entropy of the mix, in bits."""
        total = self.total
        if total <= 0:
            return 0.0
        return max(0.0, -sum(c / total * math.log2(c / total) for c in self.counts.values() if c > 0))


class _Viewer:
    __slots__ = ("mix", "run_start", "sessions", "since_check", "win_start", "win_taps")

    def __init__(self, now: float, mix_limit: int) -> None:
        self.win_start = now
        self.win_taps = 0
        self.run_start: float | None = None
        self.mix = _Mix(mix_limit)
        self.since_check = 0
        # session -> monotonic time last seen, oldest first (a seen session is re-inserted)
        self.sessions: dict[Hashable, float] = {}


class AbuseDetector:
    """Per-viewer anomaly signals over admitted batches; O(emojis in the batch) per ``observe``, amortized."""

    def __init__(self, config: AbuseConfig, clock: Clock, rate_cap_per_s: float) -> None:
        if not rate_cap_per_s > 0:
            raise ValueError("rate_cap_per_s > 0 is required")
        self.config = config
        self._clock = clock
        self._cap = float(rate_cap_per_s)
        self._hot_taps = config.rate_fraction * self._cap * config.rate_window_s
        self._check_every = max(1, config.min_taps // 4)
        self._viewers: OrderedDict[str, _Viewer] = OrderedDict()
        self._streams: OrderedDict[str, _Mix] = OrderedDict()
        # (viewer, kind) -> (monotonic raise time, flag), in raise order, hence in expiry order
        self._active: dict[tuple[str, FlagKind], tuple[float, Flag]] = {}
        self._flagged: dict[str, int] = {}  # viewer -> number of its active flags
        self._raised = dict.fromkeys(FlagKind, 0)
        self.evictions = 0
        self.flags_dropped = 0

    def observe(
        self,
        viewer_id: str,
        session_id: Hashable,
        stream_id: str,
        counts: Mapping[str, int],
        granted: int | None = None,
    ) -> list[Flag]:
        """Account one admitted batch: ``counts`` are the taps offered per emoji, ``granted`` how many of them the
        rate limit let through (None: all). Returns the flags this batch newly raised (usually none)."""
        now = self._clock.monotonic()
        self._expire(now)
        cfg = self.config
        viewer = self._viewers.get(viewer_id)
        if viewer is None:
            viewer = _Viewer(now, 2 * cfg.min_taps)
            self._viewers[viewer_id] = viewer
            if len(self._viewers) > cfg.max_viewers_tracked:
                self._viewers.popitem(last=False)
                self.evictions += 1
        else:
            self._viewers.move_to_end(viewer_id)
        offered = sum(counts.values())
        raised: list[Flag] = []

        # RATE: back-to-back windows of rate_window_s, each at or above the line, for sustain_s.
        window = cfg.rate_window_s
        if now >= viewer.win_start + window:
            elapsed = int((now - viewer.win_start) // window)
            if elapsed == 1 and viewer.win_taps >= self._hot_taps:
                if viewer.run_start is None:
                    viewer.run_start = viewer.win_start
            else:
                viewer.run_start = None
            viewer.win_start += elapsed * window
            viewer.win_taps = 0
        viewer.win_taps += offered
        run = viewer.run_start
        if run is not None and viewer.win_start - run >= cfg.sustain_s:
            self._raise(
                raised,
                now,
                viewer_id,
                FlagKind.RATE,
                stream_id,
                f"offered >= {cfg.rate_fraction:g} x {self._cap:g} taps/s for {viewer.win_start - run:.0f} s",
            )

        # SESSIONS: distinct sessions seen within sessions_window_s.
        sessions = viewer.sessions
        horizon = now - cfg.sessions_window_s
        while sessions:
            oldest = next(iter(sessions))
            if sessions[oldest] >= horizon:
                break
            del sessions[oldest]
        sessions.pop(session_id, None)
        sessions[session_id] = now
        if len(sessions) > cfg.max_sessions + 1:
            del sessions[next(iter(sessions))]
        if len(sessions) > cfg.max_sessions:
            self._raise(
                raised,
                now,
                viewer_id,
                FlagKind.SESSIONS,
                stream_id,
                f"{len(sessions)} sessions within {cfg.sessions_window_s:g} s (max {cfg.max_sessions})",
            )

        # LOW_ENTROPY: the viewer's offered mix against the stream's granted mix.
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = _Mix(cfg.stream_memory_taps)
            self._streams[stream_id] = stream
            if len(self._streams) > cfg.max_streams_tracked:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(stream_id)
        share = 1.0 if granted is None or offered == 0 else min(granted, offered) / offered
        mix = viewer.mix
        for emoji, n in counts.items():
            mix.add(emoji, n)
            if share:
                stream.add(emoji, n * share)
        viewer.since_check += offered
        if viewer.since_check >= self._check_every and mix.total >= cfg.min_taps and stream.total >= cfg.min_taps:
            viewer.since_check = 0
            mine, theirs = mix.entropy(), stream.entropy()
            if mine < theirs - cfg.entropy_gap_bits:
                self._raise(
                    raised,
                    now,
                    viewer_id,
                    FlagKind.LOW_ENTROPY,
                    stream_id,
                    f"emoji entropy {mine:.2f} bits over {mix.total:.0f} taps, stream's {theirs:.2f} bits",
                )
        mix.decay()
        stream.decay()
        return raised

    def _raise(self, out: list[Flag], now: float, viewer_id: str, kind: FlagKind, stream_id: str, detail: str) -> None:
        key = (viewer_id, kind)
        if key in self._active:
            return
        flag = Flag(viewer_id, kind, stream_id, detail, self._clock.wall_ms())
        self._active[key] = (now, flag)
        self._flagged[viewer_id] = self._flagged.get(viewer_id, 0) + 1
        self._raised[kind] += 1
        if len(self._active) > self.config.max_viewers_tracked:
            self._drop(next(iter(self._active)))
            self.flags_dropped += 1
        out.append(flag)

    def _drop(self, key: tuple[str, FlagKind]) -> None:
        del self._active[key]
        viewer_id = key[0]
        left = self._flagged[viewer_id] - 1
        if left:
            self._flagged[viewer_id] = left
        else:
            del self._flagged[viewer_id]

    def _expire(self, now: float) -> None:
        """Drop flags whose TTL has passed; they are at the front."""
        active = self._active
        cutoff = now - self.config.flag_ttl_s
        while active:
            key = next(iter(active))
            if active[key][0] > cutoff:
                return
            self._drop(key)

    def flagged(self, viewer_id: str) -> bool:
        """True while ``viewer_id`` has an active flag of any kind."""
        if viewer_id not in self._flagged:
            return False
        self._expire(self._clock.monotonic())
        return viewer_id in self._flagged

    def active_flags(self) -> list[Flag]:
        """Every active flag, oldest first (for admin views)."""
        self._expire(self._clock.monotonic())
        return [flag for _, flag in self._active.values()]

    def __len__(self) -> int:
        return len(self._viewers)

    def __contains__(self, viewer_id: object) -> bool:
        return viewer_id in self._viewers

    def statistics(self) -> dict[str, int]:
        """Viewers and streams tracked, flags raised by kind (ever), viewers with an active flag now."""
        self._expire(self._clock.monotonic())
        stats = {
            "viewers_tracked": len(self._viewers),
            "streams_tracked": len(self._streams),
            "viewers_evicted": self.evictions,
            "viewers_flagged": len(self._flagged),
            "flags_active": len(self._active),
            "flags_dropped": self.flags_dropped,
        }
        for kind, count in self._raised.items():
            stats[f"flags_raised_{kind.value}"] = count
        return stats
