"""TLS metrics: peers refused (by reason), certificate reloads, and when the served certificate expires."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from reactmesh.region_node.metrics.families import counter, gauge
from reactmesh.region_node.tls import TLSStats

REASONS = ("no_client_certificate", "plaintext_peer", "untrusted_certificate")
"""Every reason is exported from the start (at zero), so an alert on increase() sees the first refusal."""


class TLSCollector:
    """Reads ``TLSStats`` at scrape time."""

    def __init__(self, region: str, stats: TLSStats) -> None:
        self._region = region
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        r, s = self._region, self._stats
        rejections = counter(
            "reactmesh_tls_peer_rejections_total",
            "Peers refused: a node-to-node call without a client certificate (on a viewer-facing port), or a dialled "
            "peer that answered in plaintext or with a certificate the mesh CA did not sign.",
            ("region", "reason"),
        )
        for reason in sorted({*REASONS, *s.rejections}):
            rejections.add_metric([r, reason], s.rejections[reason])
        yield rejections
        reloads = counter("reactmesh_tls_reloads_total", "Certificate files reloaded after they changed.")
        reloads.add_metric([r], s.reloads)
        yield reloads
        failures = counter(
            "reactmesh_tls_reload_failures_total",
            "Changed certificate files that could not be used (unreadable, or the key does not match); the "
            "previous certificate is kept.",
        )
        failures.add_metric([r], s.reload_failures)
        yield failures
        expiry = gauge("reactmesh_tls_cert_expiry_timestamp_seconds", "notAfter of the certificate in use (unix s).")
        expiry.add_metric([r], s.cert_not_after_s)
        yield expiry
