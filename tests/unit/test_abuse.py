"""The abuse detector on a FakeClock: each signal is raised exactly when it should be and never for honest viewers
(a varied mix below the cap, a viewer reconnecting a couple of times); flags are raised once per TTL; memory stays
bounded under many viewers, sessions, streams and emojis, and eviction keeps active flags. Config validation and
the ``[edge.abuse]`` table."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactmesh.edge.abuse import MAX_EMOJIS, AbuseConfig, AbuseDetector, Flag, FlagKind
from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.ratelimit import RateLimiter
from reactmesh.merge.clock import FakeClock
from reactmesh.merge.errors import ConfigError
from reactmesh.region_node import config as node_config

CAP = 10.0  # the edge's per-viewer rate_per_s
MIX = {"like": 3, "heart": 3, "laugh": 2, "wow": 2, "sad": 1, "fire": 2}  # an honest, varied mix


@dataclass
class Tapper:
    """A viewer tapping ``per_s`` taps a second drawn from ``mix``, batched every step, on ``session``."""

    viewer: str
    per_s: float
    mix: dict[str, int] = field(default_factory=lambda: dict(MIX))
    session: bytes = b"s0"
    stream: str = "live"
    seed: int = 0
    due: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.viewer}/{self.seed}")

    def batch(self, step: float) -> dict[str, int]:
        self.due += self.per_s * step
        n, self.due = int(self.due), self.due - int(self.due)
        return dict(Counter(self.rng.choices(list(self.mix), weights=list(self.mix.values()), k=n)))


class Rig:
    """A detector behind a real rate limiter, as the Edge feeds it."""

    def __init__(self, **config: object) -> None:
        self.clock = FakeClock()
        self.detector = AbuseDetector(AbuseConfig(**config), self.clock, CAP)  # type: ignore[arg-type]
        self.limiter = RateLimiter(self.clock, CAP, 50, 1_000_000)
        self.flags: list[tuple[float, Flag]] = []

    def send(self, viewer: str, counts: dict[str, int], session: bytes = b"s0", stream: str = "live") -> list[Flag]:
        granted = self.limiter.take(viewer, sum(counts.values()))
        raised = self.detector.observe(viewer, session, stream, counts, granted)
        self.flags += [(self.clock.monotonic(), f) for f in raised]
        return raised

    async def run(self, seconds: float, *tappers: Tapper, step: float = 0.25) -> None:
        for _ in range(round(seconds / step)):
            for t in tappers:
                counts = t.batch(step)
                if counts:
                    self.send(t.viewer, counts, t.session, t.stream)
            await self.clock.advance(step)

    def kinds(self, viewer: str) -> list[FlagKind]:
        return [f.kind for _, f in self.flags if f.viewer_id == viewer]


def honest_crowd(n: int = 8, per_s: float = 4.0) -> list[Tapper]:
    return [Tapper(f"fan-{i}", per_s, seed=i) for i in range(n)]


async def test_a_viewer_offering_over_the_cap_is_flagged_rate_once_it_lasted_sustain_s() -> None:
    rig = Rig()
    start, start_wall = rig.clock.monotonic(), rig.clock.wall_ms()
    bot = Tapper("bot", 16.0, mix=dict(MIX))  # over the cap: the limiter grants 10/s, the detector sees 16/s offered
    await rig.run(19.5, bot)
    assert rig.flags == []
    await rig.run(5, bot)
    assert rig.kinds("bot") == [FlagKind.RATE]
    raised_at, flag = rig.flags[0]
    assert 20 <= raised_at - start <= 20 + 2 * rig.detector.config.rate_window_s
    assert flag.stream_id == "live" and flag.raised_at_ms == start_wall + round((raised_at - start) * 1000)
    assert "taps/s" in flag.detail
    await rig.run(60, bot)
    assert rig.kinds("bot") == [FlagKind.RATE], "an active flag is not raised again"
    assert rig.detector.flagged("bot")


async def test_rate_below_the_line_or_broken_by_pauses_is_not_flagged() -> None:
    rig = Rig()
    steady = Tapper("steady", 0.85 * CAP)  # just under rate_fraction of the cap, for minutes
    await rig.run(180, steady)
    pausing = Tapper("pausing", 2 * CAP)
    for _ in range(8):  # 15 s at twice the cap, then 5 s of silence: never sustain_s (20 s) in a row
        await rig.run(15, pausing)
        await rig.clock.advance(5)
    assert rig.flags == []


async def test_honest_viewers_with_a_varied_mix_below_the_cap_are_never_flagged() -> None:
    rig = Rig()
    crowd = honest_crowd()
    crowd.append(Tapper("eager", 0.8 * CAP, mix={"heart": 14, "like": 2, "fire": 2, "wow": 2}))  # a favourite
    await rig.run(120, *crowd)
    reconnecting = crowd[0]
    for session in (b"s1", b"s2"):  # a viewer reconnecting a couple of times: three sessions in a minute
        reconnecting.session = session
        await rig.run(20, *crowd)
    assert rig.flags == []
    stats = rig.detector.statistics()
    assert stats["viewers_flagged"] == 0 and stats["viewers_tracked"] == len(crowd)


async def test_one_emoji_far_below_the_streams_entropy_is_flagged_low_entropy_after_min_taps() -> None:
    rig = Rig()
    crowd = honest_crowd()
    await rig.run(30, *crowd)
    bot = Tapper("one-note", 5.0, mix={"fire": 1})  # under the rate line: only its mix gives it away
    taps_before_flag = 0
    while not rig.kinds("one-note"):
        await rig.run(1, bot, *crowd)
        taps_before_flag += 5
        assert taps_before_flag <= 400
    assert taps_before_flag >= rig.detector.config.min_taps
    assert rig.kinds("one-note") == [FlagKind.LOW_ENTROPY]
    assert "entropy 0.00 bits" in rig.flags[-1][1].detail
    assert all(not rig.kinds(t.viewer) for t in crowd)


async def test_low_entropy_is_not_raised_when_the_stream_itself_has_one_emoji() -> None:
    rig = Rig()
    crowd = [Tapper(f"fan-{i}", 4.0, mix={"like": 1}, seed=i) for i in range(6)]
    await rig.run(120, Tapper("bot", 5.0, mix={"like": 1}), *crowd)
    assert rig.flags == []


async def test_more_than_max_sessions_within_the_window_is_flagged_sessions() -> None:
    rig = Rig()
    for i in range(4):
        assert rig.send("hopper", {"like": 1}, session=b"s%d" % i) == []
        await rig.clock.advance(10)
    (flag,) = rig.send("hopper", {"like": 1}, session=b"s4")
    assert flag.kind == FlagKind.SESSIONS and "5 sessions" in flag.detail
    # Sessions spread over more than sessions_window_s are fine: each is forgotten a minute after it was seen.
    for i in range(12):
        assert rig.send("slow-hopper", {"like": 1}, session=b"s%d" % i) == []
        await rig.clock.advance(16)


async def test_a_flag_is_raised_again_only_after_its_ttl() -> None:
    rig = Rig(flag_ttl_s=60)
    for i in range(5):
        rig.send("hopper", {"like": 1}, session=b"s%d" % i)
    assert rig.kinds("hopper") == [FlagKind.SESSIONS]
    raised_at = rig.flags[0][0]
    await rig.clock.advance(59)
    assert rig.detector.flagged("hopper")
    for i in range(5, 10):
        rig.send("hopper", {"like": 1}, session=b"s%d" % i)
    assert rig.kinds("hopper") == [FlagKind.SESSIONS]
    await rig.clock.advance(1)
    assert not rig.detector.flagged("hopper")
    rig.send("hopper", {"like": 1}, session=b"s10")
    assert rig.kinds("hopper") == [FlagKind.SESSIONS, FlagKind.SESSIONS]
    assert rig.flags[1][0] - raised_at == 60
    assert rig.detector.statistics()["flags_raised_sessions"] == 2


async def test_memory_is_bounded_under_many_viewers_sessions_streams_and_emojis() -> None:
    rig = Rig(max_viewers_tracked=100, max_streams_tracked=10)
    for i in range(5_000):
        counts = {f"e{(i + k) % 200}": 1 for k in range(3)}
        rig.send(f"v{i % 1_000}", counts, session=b"%d" % i, stream=f"s{i % 50}")
        if i % 100 == 0:
            await rig.clock.advance(1)
    d = rig.detector
    assert len(d) == 100 and len(d._streams) == 10
    assert all(len(v.sessions) <= d.config.max_sessions + 1 for v in d._viewers.values())
    assert all(len(v.mix.counts) <= MAX_EMOJIS for v in d._viewers.values())
    assert all(len(s.counts) <= MAX_EMOJIS for s in d._streams.values())
    assert d.statistics()["viewers_evicted"] == 5_000 - 100  # 1000 viewers in turn: each comes back evicted


async def test_eviction_forgets_a_viewers_signals_but_not_its_active_flag() -> None:
    rig = Rig(max_viewers_tracked=10)
    for i in range(5):
        rig.send("hopper", {"like": 1}, session=b"s%d" % i)
    for i in range(50):
        rig.send(f"other-{i}", {"like": 1})
    assert "hopper" not in rig.detector
    assert rig.detector.flagged("hopper")
    for i in range(5, 10):  # back within the TTL, hopping again: the flag is still active, not raised again
        rig.send("hopper", {"like": 1}, session=b"s%d" % i)
    assert rig.kinds("hopper") == [FlagKind.SESSIONS]


def test_the_flag_table_is_bounded_and_drops_the_oldest_flag() -> None:
    rig = Rig(max_viewers_tracked=3)
    for v in range(5):
        for i in range(5):
            rig.send(f"hopper-{v}", {"like": 1}, session=b"s%d" % i)
    stats = rig.detector.statistics()
    assert stats["flags_active"] == 3 and stats["flags_dropped"] == 2
    assert not rig.detector.flagged("hopper-0") and rig.detector.flagged("hopper-4")


@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),  # viewer
            st.integers(0, 8),  # session
            st.integers(0, 5),  # stream
            st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 40), min_size=1, max_size=4),
            st.floats(0, 30),  # seconds before the batch
        ),
        max_size=200,
    )
)
def test_state_stays_within_its_bounds_and_flags_are_new_for_any_batches(ops: list[tuple]) -> None:
    clock = FakeClock()
    config = AbuseConfig(max_viewers_tracked=7, max_streams_tracked=3, min_taps=8, max_sessions=2, flag_ttl_s=40)
    detector = AbuseDetector(config, clock, 5.0)
    active: dict[tuple[str, FlagKind], float] = {}
    for viewer, session, stream, counts, gap in ops:
        clock._mono += gap
        for flag in detector.observe(f"v{viewer}", session, f"s{stream}", counts, sum(counts.values()) // 2):
            key = (flag.viewer_id, flag.kind)
            assert clock.monotonic() - active.get(key, -1e9) >= config.flag_ttl_s, "raised while still active"
            active[key] = clock.monotonic()
        assert len(detector) <= config.max_viewers_tracked
        assert len(detector._streams) <= config.max_streams_tracked
        assert len(detector._active) <= config.max_viewers_tracked
        assert all(len(v.sessions) <= config.max_sessions + 1 for v in detector._viewers.values())
        assert all(v.mix.total < 2 * config.min_taps for v in detector._viewers.values())
        assert sum(detector._flagged.values()) == len(detector._active)


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"enabled": 1}, "enabled"),
        ({"shadow_mute": "yes"}, "shadow_mute"),
        ({"rate_fraction": 0}, "rate_fraction"),
        ({"rate_fraction": 1.5}, "rate_fraction"),
        ({"sustain_s": 0}, "sustain_s"),
        ({"rate_window_s": 30}, "rate_window_s"),
        ({"min_taps": 0}, "min_taps"),
        ({"entropy_gap_bits": -1}, "entropy_gap_bits"),
        ({"stream_memory_taps": 100}, "stream_memory_taps"),
        ({"max_sessions": 0}, "max_sessions"),
        ({"sessions_window_s": float("nan")}, "sessions_window_s"),
        ({"flag_ttl_s": True}, "flag_ttl_s"),
        ({"max_viewers_tracked": 0}, "max_viewers_tracked"),
        ({"max_streams_tracked": 0}, "max_streams_tracked"),
    ],
)
def test_bad_abuse_config_names_its_field(changes: dict[str, object], field_name: str) -> None:
    with pytest.raises(ConfigError) as info:
        AbuseConfig(**changes)  # type: ignore[arg-type]
    assert info.value.field == field_name


def test_edge_abuse_table_becomes_the_edge_configs_abuse() -> None:
    edge = {"listen": "127.0.0.1:1", "aggregators": ["127.0.0.1:2"], "abuse": {"shadow_mute": True, "min_taps": 50}}
    parsed = node_config.from_mapping({"region": "a", "edge": edge}, env={})
    assert parsed.edge is not None
    assert parsed.edge.config.abuse == AbuseConfig(shadow_mute=True, min_taps=50)
    assert node_config.from_mapping({"region": "a", "edge": {**edge, "abuse": {}}}, env={}).edge.config.abuse == (  # type: ignore[union-attr]
        AbuseConfig()
    )
    for bad, field_name in (
        ({"bogus": 1}, "edge.abuse.bogus"),
        ({"rate_fraction": 2}, "edge.abuse.rate_fraction"),
        (3, "edge.abuse"),
    ):
        with pytest.raises(ConfigError) as info:
            node_config.from_mapping({"region": "a", "edge": {**edge, "abuse": bad}}, env={})
        assert info.value.field == field_name
    mapped = EdgeConfig.from_mapping({"region": "a", "aggregators": ["a:1"], "abuse": {"max_sessions": 9}})
    assert mapped.abuse.max_sessions == 9
    with pytest.raises(ConfigError) as info:
        EdgeConfig.from_mapping({"region": "a", "aggregators": ["a:1"], "abuse": {"nope": 1}})
    assert info.value.field == "abuse.nope"
