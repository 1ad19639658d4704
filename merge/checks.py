"""Range checks for configuration dataclasses: each raises ConfigError naming the field and the expected form.

One home for the validators every ``__post_init__`` uses (gossip here, the edge's, the aggregator's, the
broadcaster's, the smoother's and the polls' configs above), so a bound reads the same everywhere:
``config field 'aggregator.tick_ms': expected an integer in 1..10000, got 0``. A bool is never a number here,
though Python counts it as an int.
"""

from __future__ import annotations

from reactmesh.merge.errors import ConfigError


def is_int(value: object) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_in(field: str, value: object, low: int, high: int) -> None:
    """An integer in ``low..high`` (both included)."""
    if not is_int(value) or not low <= value <= high:  # type: ignore[operator]
        raise ConfigError(field, f"an integer in {low}..{high}", value)


def int_at_least(field: str, value: object, low: int) -> None:
    """An integer >= ``low``."""
    if not is_int(value) or value < low:  # type: ignore[operator]
        raise ConfigError(field, f"an integer >= {low}", value)


def number_in(
    field: str, value: object, low: float, high: float, *, low_open: bool = False, unit: str = "a number"
) -> None:
    """A number in ``[low, high]``, or ``(low, high]`` with ``low_open``; ``unit`` names it ("seconds")."""
    ok = is_number(value) and (low < value if low_open else low <= value) and value <= high  # type: ignore[operator]
    if not ok:
        raise ConfigError(field, f"{unit} in {'(' if low_open else '['}{low}, {high}]", value)


def boolean(field: str, value: object) -> None:
    """True or false."""
    if not isinstance(value, bool):
        raise ConfigError(field, "true or false", value)
