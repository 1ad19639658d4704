"""The smoother's configuration and its behaviour on a few worked examples."""

from __future__ import annotations

import pytest

from reactmesh.merge.errors import ConfigError
from reactmesh.region_node.broadcaster.smoother import Smoother, SmootherConfig


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": 0.0}, "smoothing.alpha"),
        ({"alpha": 1.5}, "smoothing.alpha"),
        ({"k": 0.5}, "smoothing.k"),
        ({"alpha": 0.5, "k": 2.0}, "smoothing.k"),
        ({"min_step": 0}, "smoothing.min_step"),
        ({"min_step": 1.5}, "smoothing.min_step"),
        ({"drain_ticks": 1}, "smoothing.drain_ticks"),
        ({"drain_ticks": True}, "smoothing.drain_ticks"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SmootherConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_default_burst_of_1000_is_shown_over_several_ticks_and_completely() -> None:
    smoother = Smoother(SmootherConfig(alpha=0.2, k=2.0, min_step=1, drain_ticks=20))
    smoother.add("like", 1000)
    shown = [smoother.step().get("like", 0) for _ in range(20)]
    # ema = 200 -> cap 400; then ema 160 -> cap 320; ema 128 -> cap 256; the rest (24) fits the next cap.
    assert shown[:4] == [400, 320, 256, 24]
    assert sum(shown) == 1000


def test_steady_rate_is_shown_without_falling_behind() -> None:
    smoother = Smoother(SmootherConfig(alpha=0.2, k=2.0, drain_ticks=20))
    outs = []
    for _ in range(40):
        smoother.add("like", 50)
        outs.append(smoother.step().get("like", 0))
    assert outs[-20:] == [50] * 20
    assert smoother.pending("like") == 0


def test_small_counts_are_released_at_min_step_and_within_drain_ticks() -> None:
    smoother = Smoother(SmootherConfig(alpha=0.1, k=1.0, min_step=1, drain_ticks=4))
    smoother.add("wow", 10)
    outs = [smoother.step().get("wow", 0) for _ in range(4)]
    # ceil(k * ema) = 1 and floor = ceil(10 / 4) = 3: the floor sets the pace.
    assert outs == [3, 3, 3, 1]


def test_top_k_limit_releases_the_largest_and_holds_the_rest() -> None:
    smoother = Smoother(SmootherConfig(alpha=0.2, k=2.0, drain_ticks=20))
    smoother.add("like", 100)
    smoother.add("heart", 10)
    smoother.add("wow", 1)
    out = smoother.step(limit=1)
    assert out == {"like": 40}
    assert smoother.pending("heart") == 10
    assert smoother.pending("wow") == 1


def test_idle_emojis_are_forgotten_so_steps_do_no_work_for_them() -> None:
    smoother = Smoother()
    smoother.add("like", 5)
    steps = 0
    while smoother.active:
        smoother.step()
        steps += 1
        assert steps < 100
    assert smoother.pending("like") == 0
    assert smoother.step() == {}


def test_drain_flushes_everything_pending_at_once() -> None:
    smoother = Smoother()
    smoother.add("like", 500)
    smoother.add("heart", 3)
    first = smoother.step()
    assert smoother.drain() == {"like": 500 - first["like"], "heart": 3 - first["heart"]}
    assert not smoother.active


def test_negative_delta_is_refused() -> None:
    with pytest.raises(ValueError):
        Smoother().add("like", -1)
