"""Shared fixtures of every suite, and the Hypothesis profiles.

Fixtures: ``clock`` (a FakeClock: tests advance time themselves instead of sleeping), ``db_path`` (a fresh SQLite
file path in the test's own directory). Helpers that are not fixtures live in tests/support/.

Hypothesis profiles:

``ci`` (the default) is deterministic: a fixed seed derived from each test, no example database,
so a run that passes once passes every time. ``thorough`` explores more and differently on every
run; select it with ``HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from reactmesh.merge.clock import FakeClock

settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"
