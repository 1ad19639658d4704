"""Laws of the smoother, for any configuration and any input: it never shows more than arrived,
every count is shown within ``drain_ticks`` ticks, it respects its cap, it emits integers, a
burst is spread over several ticks, and overload limits and drain() keep every count."""

from __future__ import annotations

import math

from hypothesis import assume, given
from hypothesis import strategies as st

from reactmesh.region_node.broadcaster.smoother import Smoother, SmootherConfig

EMOJIS = ("like", "heart", "wow")


@st.composite
def configs(draw: st.DrawFn) -> SmootherConfig:
    alpha = draw(st.floats(min_value=0.02, max_value=0.95))
    k = draw(st.floats(min_value=1.0, max_value=40.0))
    assume(k * alpha < 1)
    return SmootherConfig(
        alpha=alpha,
        k=k,
        min_step=draw(st.integers(min_value=1, max_value=5)),
        drain_ticks=draw(st.integers(min_value=2, max_value=30)),
    )


counts = st.one_of(st.just(0), st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=100_000))
ticks = st.lists(st.fixed_dictionaries({e: counts for e in EMOJIS}), min_size=1, max_size=60)


def run(config: SmootherConfig, inputs: list[dict[str, int]], idle: int) -> tuple[list[dict[str, int]], Smoother]:
    smoother = Smoother(config)
    outputs = []
    for tick in [*inputs, *([{}] * idle)]:
        for emoji, n in tick.items():
            smoother.add(emoji, n)
        outputs.append(smoother.step())
    return outputs, smoother


@given(configs(), ticks)
def test_cumulative_output_never_exceeds_cumulative_input_and_is_integral(
    config: SmootherConfig, inputs: list[dict[str, int]]
) -> None:
    outputs, _ = run(config, inputs, idle=config.drain_ticks)
    cum_in = dict.fromkeys(EMOJIS, 0)
    cum_out = dict.fromkeys(EMOJIS, 0)
    for t, out in enumerate(outputs):
        for emoji, n in (inputs[t] if t < len(inputs) else {}).items():
            cum_in[emoji] += n
        for emoji, n in out.items():
            assert type(n) is int and n > 0
            cum_out[emoji] += n
            assert cum_out[emoji] <= cum_in[emoji]


@given(configs(), ticks)
def test_every_count_is_shown_within_drain_ticks_of_its_arrival(
    config: SmootherConfig, inputs: list[dict[str, int]]
) -> None:
    d = config.drain_ticks
    outputs, smoother = run(config, inputs, idle=d)
    total_ticks = len(outputs)
    for emoji in EMOJIS:
        cum_in = [0] * total_ticks
        cum_out = [0] * total_ticks
        acc_in = acc_out = 0
        for t in range(total_ticks):
            acc_in += inputs[t].get(emoji, 0) if t < len(inputs) else 0
            acc_out += outputs[t].get(emoji, 0)
            cum_in[t], cum_out[t] = acc_in, acc_out
        for t in range(total_ticks - d + 1):
            assert cum_out[t + d - 1] >= cum_in[t], f"{emoji}: arrivals of tick {t} not shown by tick {t + d - 1}"
        # After input stops it drains to exactly the input within the bound.
        assert cum_out[len(inputs) - 1 + d] == cum_in[-1]
        assert smoother.pending(emoji) == 0


@given(configs(), ticks)
def test_output_respects_the_cap(config: SmootherConfig, inputs: list[dict[str, int]]) -> None:
    # cap = max(min_step, ceil(k * ema), ceil(M / drain_ticks)), M = the largest pending since it was last zero.
    alpha, keep = config.alpha, 1.0 - config.alpha
    outputs, _ = run(config, inputs, idle=config.drain_ticks)
    for emoji in EMOJIS:
        ema = 0.0
        pending = peak = 0
        for t, out in enumerate(outputs):
            inflow = inputs[t].get(emoji, 0) if t < len(inputs) else 0
            ema = alpha * inflow + keep * ema
            pending += inflow
            peak = max(peak, pending)
            n = out.get(emoji, 0)
            cap = max(config.min_step, math.ceil(config.k * ema), -(-peak // config.drain_ticks))
            assert n <= cap
            assert n == min(pending, n)
            pending -= n
            if pending == 0:
                peak = 0


@given(configs(), st.integers(min_value=1, max_value=10_000_000))
def test_a_burst_at_rest_is_spread_over_more_than_one_tick(config: SmootherConfig, burst: int) -> None:
    first_cap = max(config.min_step, math.ceil(config.k * config.alpha * burst), -(-burst // config.drain_ticks))
    smoother = Smoother(config)
    smoother.add("like", burst)
    first = smoother.step().get("like", 0)
    assert first == min(burst, first_cap)
    if burst > first_cap:
        assert first < burst
        assert smoother.pending("like") == burst - first
        shown, steps = first, 1
        while smoother.pending("like"):
            shown += smoother.step().get("like", 0)
            steps += 1
        assert shown == burst
        assert 2 <= steps <= config.drain_ticks


@given(configs(), ticks, st.integers(min_value=1, max_value=2))
def test_top_k_limit_keeps_every_count_and_unlimited_ticks_then_drain_within_the_bound(
    config: SmootherConfig, inputs: list[dict[str, int]], limit: int
) -> None:
    smoother = Smoother(config)
    cum_in = dict.fromkeys(EMOJIS, 0)
    cum_out = dict.fromkeys(EMOJIS, 0)
    for tick in inputs:
        for emoji, n in tick.items():
            smoother.add(emoji, n)
            cum_in[emoji] += n
        out = smoother.step(limit)
        assert len(out) <= limit
        for emoji, n in out.items():
            cum_out[emoji] += n
            assert cum_out[emoji] <= cum_in[emoji]
    for _ in range(config.drain_ticks):
        for emoji, n in smoother.step().items():
            cum_out[emoji] += n
    assert cum_out == cum_in


@given(configs(), ticks)
def test_drain_releases_exactly_what_is_pending(config: SmootherConfig, inputs: list[dict[str, int]]) -> None:
    smoother = Smoother(config)
    cum_in = dict.fromkeys(EMOJIS, 0)
    cum_out = dict.fromkeys(EMOJIS, 0)
    for tick in inputs:
        for emoji, n in tick.items():
            smoother.add(emoji, n)
            cum_in[emoji] += n
        for emoji, n in smoother.step().items():
            cum_out[emoji] += n
    pending = dict(smoother.pending_items())
    for emoji, n in smoother.drain().items():
        assert pending.pop(emoji) == n
        cum_out[emoji] += n
    assert pending == {}
    assert cum_out == cum_in
    assert not smoother.active
