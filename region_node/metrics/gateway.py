"""Gateway metrics: browser sockets and upstream Subscribe and WatchComments calls (one each per watched stream),
frames received from the broadcaster and queued to sockets, merges into slow sockets' queues, upstream reconnects."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from reactmesh.region_node.gateway.app import Gateway
from reactmesh.region_node.metrics.families import counter, gauge


class GatewayCollector:
    """Reads ``Gateway.statistics()`` at scrape time."""

    def __init__(self, region: str, gateway: Gateway) -> None:
        self._region = region
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        r = self._region
        s = self._gateway.statistics()
        for name, doc, key in (
            ("reactmesh_gateway_sockets", "Browser WebSockets open now.", "sockets"),
            ("reactmesh_gateway_upstreams", "Upstream Subscribe calls open now (one per watched stream).", "upstreams"),
            ("reactmesh_gateway_deepest_queue", "Frames queued for the slowest socket now.", "deepest_queue"),
        ):
            g = gauge(name, doc, ("region",))
            g.add_metric([r], s[key])
            yield g
        for name, doc, key in (
            ("reactmesh_gateway_upstreams_opened", "Upstream Subscribe calls opened for a stream.", "upstreams_opened"),
            ("reactmesh_gateway_upstream_reconnects", "Upstream calls resumed after a break.", "upstream_reconnects"),
            (
                "reactmesh_gateway_upstreams_released",
                "Upstreams closed, no socket left.",
                "upstreams_released",
            ),
            ("reactmesh_gateway_frames_received", "Frames received from the broadcaster.", "frames_received"),
            ("reactmesh_gateway_frames_queued", "Frames queued to sockets (received x sockets).", "frames_queued"),
            (
                "reactmesh_gateway_frames_coalesced",
                "Frames merged into a queued frame.",
                "frames_coalesced",
            ),
            ("reactmesh_gateway_sockets_joined", "Browser WebSockets opened.", "sockets_joined"),
            (
                "reactmesh_gateway_comment_upstreams_opened",
                "Upstream WatchComments calls opened for a stream.",
                "comment_upstreams_opened",
            ),
            (
                "reactmesh_gateway_comment_upstream_reconnects",
                "Upstream WatchComments calls resumed after a break.",
                "comment_upstream_reconnects",
            ),
            (
                "reactmesh_gateway_comment_frames_received",
                "Comment frames received from the broadcaster.",
                "comment_frames_received",
            ),
        ):
            c = counter(name, doc, ("region",))
            c.add_metric([r], s[key])
            yield c
