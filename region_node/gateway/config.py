"""Configuration of the gateway role (the ``[gateway]`` section of a node config).

    [gateway]
    listen = "0.0.0.0:7109"                   # HTTP and WebSocket
    edge = "127.0.0.1:7100"                   # the region's edge (POST /v1/reactions -> Ingest.Send)
    broadcaster = "127.0.0.1:7103"            # the region's broadcaster (Subscribe, Query, Polls)
    upstream_token_file = "/etc/reactmesh/gateway/token"   # with [auth]: the gateway's own token for the
                                              # shared upstream Subscribe calls (re-read at every dial)
    queue_frames = 32                         # per socket; beyond it frames coalesce (lossless)
    idle_release_ms = 2000                    # an upstream without sockets this long is closed
    backoff_initial_ms = 100                  # upstream reconnects: full jitter, doubling up to max
    backoff_max_ms = 5000
    websocket_deflate = false                 # permessage-deflate on sockets: zlib state and work per socket
    reactions = ["like", "heart", ...]        # the tap bar of the overlay page (the edge's reaction set)

Every error is a ConfigError naming the field and the expected form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reactmesh.edge.config import DEFAULT_REACTIONS
from reactmesh.edge.limits import EMOJI_FORM, is_emoji
from reactmesh.merge.checks import boolean, int_in
from reactmesh.merge.errors import ConfigError

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _address(name: str, value: object) -> None:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ConfigError(name, '"host:port"', value)


@dataclass(frozen=True)
class GatewayConfig:
    """What one gateway serves and where its upstreams are; see the module docstring for each field."""

    listen: str
    edge: str
    broadcaster: str
    upstream_token_file: str | None = None
    queue_frames: int = 32
    idle_release_ms: int = 2000
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 5000
    websocket_deflate: bool = False
    reactions: tuple[str, ...] = DEFAULT_REACTIONS

    def __post_init__(self) -> None:
        _address("gateway.listen", self.listen)
        _address("gateway.edge", self.edge)
        _address("gateway.broadcaster", self.broadcaster)
        if self.upstream_token_file is not None and (
            not isinstance(self.upstream_token_file, str) or not self.upstream_token_file
        ):
            raise ConfigError("gateway.upstream_token_file", "a file path", self.upstream_token_file)
        int_in("gateway.queue_frames", self.queue_frames, 1, 10_000)
        int_in("gateway.idle_release_ms", self.idle_release_ms, 0, 3_600_000)
        int_in("gateway.backoff_initial_ms", self.backoff_initial_ms, 1, 60_000)
        int_in("gateway.backoff_max_ms", self.backoff_max_ms, self.backoff_initial_ms, 600_000)
        boolean("gateway.websocket_deflate", self.websocket_deflate)
        expected = f"a non-empty list of distinct emoji names, {EMOJI_FORM}"
        if (
            not isinstance(self.reactions, tuple)
            or not self.reactions
            or len(set(self.reactions)) != len(self.reactions)
        ):
            raise ConfigError("gateway.reactions", expected, self.reactions)
        for emoji in self.reactions:
            if not is_emoji(emoji):
                raise ConfigError("gateway.reactions", expected, emoji)
