"""edge.backoff: the named policies stay in their ranges, grow as documented, stay finite for any number of
failures, and draw only from the random source they are given."""

from __future__ import annotations

import random

import pytest

from reactmesh.edge.backoff import EqualJitterBackoff, FullJitterBackoff, backoff_delay, exponential_cap


def test_exponential_cap_doubles_from_initial_up_to_max() -> None:
    assert [exponential_cap(f, 0.1, 1.0) for f in (0, 1, 2, 3, 4, 5)] == [0.1, 0.1, 0.2, 0.4, 0.8, 1.0]


@pytest.mark.parametrize("failures", [1_025, 10**6])
def test_delays_stay_finite_however_many_failures(failures: int) -> None:
    rng = random.Random(1)
    assert exponential_cap(failures, 0.001, 600.0) == 600.0
    assert 0.0 <= FullJitterBackoff(0.001, 600.0, rng).compute(failures) <= 600.0
    assert 300.0 <= EqualJitterBackoff(0.001, 600.0, rng).compute(failures) <= 600.0


def test_full_jitter_policy_is_the_backoff_delay_rule() -> None:
    policy = FullJitterBackoff(0.1, 5.0, random.Random(9))
    twin = random.Random(9)
    for failures in (1, 2, 3, 7, 40, 1000):
        assert policy.compute(failures) == backoff_delay(failures, 0.1, 5.0, twin)


def test_equal_jitter_waits_between_half_the_cap_and_the_cap() -> None:
    policy = EqualJitterBackoff(0.1, 1.0, random.Random(5))
    for failures, cap in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (50, 1.0)):
        delays = [policy.compute(failures) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.9 and min(delays) < cap * 0.6


def test_equal_jitter_draws_one_random_number_per_delay() -> None:
    policy = EqualJitterBackoff(0.1, 1.0, random.Random(3))
    twin = random.Random(3)
    for failures in (1, 2, 3):
        assert policy.compute(failures) == min(1.0, 0.1 * 2 ** (failures - 1)) * (0.5 + 0.5 * twin.random())


def test_retry_after_waits_at_least_what_the_server_asked_plus_up_to_half_of_it() -> None:
    policy = FullJitterBackoff(0.1, 5.0, random.Random(2))
    waits = [policy.after_retry_after(1.5) for _ in range(200)]
    assert all(1.5 <= w <= 2.25 for w in waits)
    assert max(waits) - min(waits) > 0.5  # spread over the half, not bunched at the hint


def test_a_short_retry_after_still_gets_up_to_initial_of_jitter() -> None:
    policy = FullJitterBackoff(0.1, 5.0, random.Random(2))
    waits = [policy.after_retry_after(0.01) for _ in range(200)]
    assert all(0.01 <= w <= 0.11 for w in waits)
    assert max(waits) > 0.06


@pytest.mark.parametrize("policy", [FullJitterBackoff, EqualJitterBackoff])
def test_a_policy_needs_initial_at_most_max(policy: type[FullJitterBackoff] | type[EqualJitterBackoff]) -> None:
    with pytest.raises(ValueError):
        policy(2.0, 1.0)
    with pytest.raises(ValueError):
        policy(-1.0, 1.0)
