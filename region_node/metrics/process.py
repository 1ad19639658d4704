"""The standard process, platform and GC metrics with ``region`` on every series, and ``reactmesh_build_info``.

prometheus_client's ProcessCollector (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, open fds,
start time...), PlatformCollector (``python_info``) and GCCollector (``python_gc_*``) export unlabelled series; here
they carry ``region`` like every reactmesh series, so one query selects a region's processes without relabelling
rules. ``reactmesh_build_info{region, version, python, grpc, protobuf}`` is 1: join on it to see which build runs
where (the convention of ``*_build_info`` gauges).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib import metadata

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from reactmesh.region_node.metrics.families import gauge


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    """version (reactmesh), python, grpc, protobuf."""
    return {
        "version": _version("reactmesh"),
        "python": platform.python_version(),
        "grpc": _version("grpcio"),
        "protobuf": _version("protobuf"),
    }


class ProcessMetrics(Collector):
    """The standard collectors' families, each sample with ``region`` added; plus the build info."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._standard = CollectorRegistry()
        ProcessCollector(registry=self._standard)
        PlatformCollector(registry=self._standard)
        GCCollector(registry=self._standard)
        self._build = build_labels()

    def collect(self) -> Iterator[Metric]:
        for family in self._standard.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={"region": self._region, **s.labels}) for s in family.samples]
            yield out
        names = sorted(self._build)
        info = gauge("reactmesh_build_info", "1, labelled with the versions this process runs.", ("region", *names))
        info.add_metric([self._region, *(self._build[n] for n in names)], 1)
        yield info
