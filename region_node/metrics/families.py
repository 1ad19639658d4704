"""Metric families shared by the collectors: bucket layouts, counter/gauge helpers and a lock-free histogram."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Lags along the tap path: the target is 0.25 s end to end, ticks are 0.1 s."""
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Work inside one tick: an SQLite commit (fsync) or a broadcaster tick."""
ENTRIES_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)


def counter(name: str, doc: str, labels: Sequence[str] = ("region",)) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def gauge(name: str, doc: str, labels: Sequence[str] = ("region",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class HistogramChild:
    """One labelled series of a Histogram; ``observe`` is a bisect and two additions."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class Histogram:
    """A histogram family observed on the event loop (no locks, no ``_created`` series)."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [*(repr(b) for b in self.bounds), "+Inf"]
        self._children: dict[tuple[str, ...], HistogramChild] = {}

    def child(self, *values: str) -> HistogramChild:
        """The series of these label values, created (at zero) on first use."""
        series = self._children.get(values)
        if series is None:
            if len(values) != len(self.labels):
                raise ValueError(f"{self.name}: expected labels {self.labels}, got {values}")
            series = self._children[values] = HistogramChild(self.bounds)
        return series

    def family(self) -> HistogramMetricFamily:
        out = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for values, series in self._children.items():
            running = 0
            buckets: list[tuple[str, float]] = []
            for le, n in zip(self._les, series.counts, strict=True):
                running += n
                buckets.append((le, running))
            out.add_metric(list(values), buckets, series.sum)
        return out
