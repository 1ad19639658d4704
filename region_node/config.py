"""Node configuration: one TOML file per process, validated at load.

    region = "a"
    metrics_listen = "0.0.0.0:9100"        # optional Prometheus /metrics

    [edge]
    listen = "0.0.0.0:7100"
    aggregators = ["agg-0.agg:7200", "agg-1.agg:7200"]
    node_id = "a/${POD_NAME}"                        # optional gossip id; default "<region>/edge-<hostname>"
    # ... any EdgeConfig field
    [edge.abuse]                                     # anti-abuse flags (edge.abuse.AbuseConfig); on by default
    shadow_mute = false                              # true: flagged viewers' taps are acked but not counted
    # ... any AbuseConfig field
    [edge.shedding]                                  # load shedding (edge.admission.ShedConfig); on by default
    target_ms = 150                                  # commit lag above which the in-flight limit comes down
    # ... any ShedConfig field

    [aggregator]
    listen = "0.0.0.0:7200"
    node_id = "a/${POD_NAME}"               # ${VAR} is taken from the environment
    db_path = "/data/reactmesh.db"
    # ... any AggregatorConfig field

    [broadcaster]
    listen = "0.0.0.0:7300"
    node_id = "a/bcast-0"
    polls_db_path = "/data/polls.db"                 # optional; polls in memory without it
    comments_db_path = "/data/comments.db"           # optional; comments in memory without it
    history_db_path = "/data/history.db"             # optional; without it GetHistory covers the horizon only
    moderation_db_path = "/data/moderation.db"       # optional; mutes, drains and flags in memory without it
    window_horizon_s = 120                           # windows older than this live on disk only
    window_retention_s = 604800                      # stored history kept this long
    sources = ["agg-0.agg:7200", "agg-1.agg:7200"]   # this region's aggregators
    peers = ["bcast-1.bcast-peers:7300", "bcast.region-b:7300"]  # this region's other broadcasters and the
                                                     # other regions' (naming the node itself is fine: skipped)
    # ... any BroadcasterConfig field
    [broadcaster.history]                            # history repair from sources and peers, per round
    # ... any HistorySyncConfig field

    peer_listen = "0.0.0.0:7301"                     # optional; Gossip only, for sources' and peers' dialers
                                                     # (needed with [tls]: peers present client certificates)

    [gateway]                                        # HTTP/WebSocket JSON for browsers (region_node.gateway)
    listen = "0.0.0.0:7109"
    edge = "127.0.0.1:7100"                          # the region's edge and broadcaster
    broadcaster = "127.0.0.1:7103"
    # ... any GatewayConfig field

    [gossip]
    # ... any GossipConfig field

    [auth]                                           # client tokens (edge.auth.AuthConfig); off without it
    enabled = true
    key_file = "/etc/reactmesh/auth/key"             # HS256 secret or PEM public key; or jwks_file = "...json"
    audience = "reactmesh"
    issuer = "https://login.example.com/"
    [tls]                                            # optional; TLS on every listener, mTLS between nodes
    cert_file = "/etc/reactmesh/tls/tls.crt"         # this node's certificate (chain), server and client auth
    key_file = "/etc/reactmesh/tls/tls.key"
    ca_file = "/etc/reactmesh/tls/ca.crt"            # the CA that signs the mesh's nodes
    require_client_cert = true                       # node-to-node ports refuse peers without a CA-signed cert
    # server_name = "reactmesh-node"                 # optional: the name checked in dialled nodes' certificates
    # (files are re-read when they change; see region_node/tls.py)

A section is needed only for the roles a process runs (``--target``). Every error is a
ConfigError naming the field (``aggregator.tick_ms``) and the expected form.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reactmesh.edge.abuse import AbuseConfig
from reactmesh.edge.admission import ShedConfig
from reactmesh.edge.auth import AuthConfig
from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.limits import REGION_FORM, is_region
from reactmesh.merge.checks import int_in
from reactmesh.merge.errors import ConfigError
from reactmesh.merge.gossip import GossipConfig
from reactmesh.region_node.aggregator.config import AggregatorConfig
from reactmesh.region_node.broadcaster.config import BroadcasterConfig
from reactmesh.region_node.comments.config import CommentsConfig
from reactmesh.region_node.gateway.config import GatewayConfig
from reactmesh.region_node.polls.config import PollsConfig
from reactmesh.region_node.state import DIGESTED, region_gossip_config
from reactmesh.region_node.tls import TLSConfig
from reactmesh.region_node.windows.sync import HistorySyncConfig

ROLES = ("edge", "aggregator", "broadcaster", "gateway")
_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
T = TypeVar("T")


def check_address(field_name: str, value: object) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ConfigError(field_name, '"host:port"', value)
    return value


@dataclass(frozen=True)
class EdgeSection:
    listen: str
    config: EdgeConfig
    # The edge's gossip identity (it receives mutes and drains from its aggregators and sends them its abuse
    # flags); unique per edge process. Default "<region>/edge-<hostname>".
    node_id: str = ""

    def __post_init__(self) -> None:
        check_address("edge.listen", self.listen)
        if not self.node_id:
            object.__setattr__(self, "node_id", f"{self.config.region}/edge-{socket.gethostname()}")


@dataclass(frozen=True)
class AggregatorSection:
    listen: str
    config: AggregatorConfig

    def __post_init__(self) -> None:
        check_address("aggregator.listen", self.listen)


@dataclass(frozen=True)
class BroadcasterSection:
    listen: str
    node_id: str
    config: BroadcasterConfig
    sources: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    # SQLite file for polls; None keeps polls in memory (a restarted broadcaster gets them back from
    # peer regions, but votes answered and not yet gossiped would be lost).
    polls_db_path: str | None = None
    polls: PollsConfig = field(default_factory=PollsConfig)
    # SQLite file for live comments (history and retention); None keeps the hot window in memory only.
    comments_db_path: str | None = None
    comments: CommentsConfig = field(default_factory=CommentsConfig)
    # SQLite file for per-second history and totals (region_node.windows): sealed windows live there, and are
    # repaired from sources and peers. None keeps only open windows (GetHistory covers the horizon only).
    history_db_path: str | None = None
    # SQLite file for mutes, drains and abuse flags (region_node.moderation); None keeps them in memory (a
    # restarted broadcaster then gets them back from peers only).
    moderation_db_path: str | None = None
    window_horizon_s: int = 120
    window_retention_s: int = 7 * 86_400
    history: HistorySyncConfig = field(default_factory=HistorySyncConfig)
    # A second listener serving Gossip only, for the region's and other regions' broadcasters (with [tls] it
    # requires client certificates, which the viewer-facing ``listen`` cannot).
    peer_listen: str | None = None

    def __post_init__(self) -> None:
        check_address("broadcaster.listen", self.listen)
        if self.peer_listen is not None:
            check_address("broadcaster.peer_listen", self.peer_listen)
        if self.history_db_path is not None and (not self.history_db_path or self.history_db_path == ":memory:"):
            raise ConfigError(
                "broadcaster.history_db_path", "a file path (omit it to keep open windows only)", self.history_db_path
            )
        int_in("broadcaster.window_retention_s", self.window_retention_s, 60, 10 * 365 * 86_400)
        int_in("broadcaster.window_horizon_s", self.window_horizon_s, 10, self.window_retention_s)
        if self.polls_db_path is not None and (not self.polls_db_path or self.polls_db_path == ":memory:"):
            raise ConfigError(
                "broadcaster.polls_db_path", "a file path (omit it to keep polls in memory)", self.polls_db_path
            )
        if self.comments_db_path is not None and (not self.comments_db_path or self.comments_db_path == ":memory:"):
            raise ConfigError(
                "broadcaster.comments_db_path",
                "a file path (omit it to keep comments in memory)",
                self.comments_db_path,
            )
        if self.moderation_db_path is not None and (
            not self.moderation_db_path or self.moderation_db_path == ":memory:"
        ):
            raise ConfigError(
                "broadcaster.moderation_db_path",
                "a file path (omit it to keep moderation in memory)",
                self.moderation_db_path,
            )
        if not self.node_id:
            raise ConfigError("broadcaster.node_id", "a non-empty id such as 'a/bcast-0'", self.node_id)
        for i, s in enumerate(self.sources):
            check_address(f"broadcaster.sources[{i}]", s)
        for i, p in enumerate(self.peers):
            check_address(f"broadcaster.peers[{i}]", p)


@dataclass(frozen=True)
class NodeConfig:
    region: str
    edge: EdgeSection | None = None
    aggregator: AggregatorSection | None = None
    broadcaster: BroadcasterSection | None = None
    gateway: GatewayConfig | None = None
    gossip: GossipConfig = field(default_factory=region_gossip_config)
    metrics_listen: str | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TLSConfig | None = None

    def __post_init__(self) -> None:
        if not is_region(self.region):
            raise ConfigError("region", REGION_FORM, self.region)
        if self.metrics_listen is not None:
            check_address("metrics_listen", self.metrics_listen)
        if (
            self.tls is not None
            and self.tls.require_client_cert
            and self.broadcaster is not None
            and self.broadcaster.peer_listen is None
        ):
            raise ConfigError(
                "broadcaster.peer_listen",
                "a 'host:port' for gossip peers (with [tls] peers present client certificates on it; viewers use "
                "listen without one)",
                None,
            )

    def require(self, targets: frozenset[str]) -> None:
        """Raise ConfigError unless every role in ``targets`` has its section (``all`` may leave out [gateway])."""
        for role in ROLES:
            if role in targets and getattr(self, role) is None:
                if role == "gateway" and targets >= frozenset(ROLES):
                    continue  # `--target=all` runs a gateway only when the config has a [gateway] section
                raise ConfigError(role, f"a [{role}] section (needed by --target={role})", None)


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} in every string of ``value`` (recursively); unknown variables are an error."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"${{{name}}}", "a set environment variable", None)
            return env[name]

        return _ENV.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    return value


def build(cls: type[T], section: str, table: Mapping[str, Any]) -> T:
    """Construct a config dataclass from a TOML table; unknown keys name the field."""
    assert dataclasses.is_dataclass(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}", f"one of: {', '.join(sorted(known))}", value)
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if not exc.field.startswith(f"{section}."):
            # Re-qualify the field name; the message keeps what the component chose to show (no secrets).
            exc.field = f"{section}.{exc.field}"
            exc.args = (
                str(exc).replace(f"config field {exc.field[len(section) + 1 :]!r}", f"config field {exc.field!r}", 1),
            )
        raise
    except TypeError as exc:
        raise ConfigError(section, "a table with every required field", str(exc)) from exc


def from_mapping(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> NodeConfig:
    data = expand_env(dict(data), os.environ if env is None else env)
    known = {"region", "metrics_listen", "gossip", "auth", "tls", *ROLES}
    for key in data:
        if key not in known:
            raise ConfigError(key, f"one of: {', '.join(sorted(known))}", data[key])
    region = data.get("region")

    def table(name: str) -> dict[str, Any] | None:
        t = data.get(name)
        if t is None:
            return None
        if not isinstance(t, dict):
            raise ConfigError(name, "a table", t)
        return dict(t)

    edge = aggregator = broadcaster = None
    if (t := table("edge")) is not None:
        listen = t.pop("listen", None)
        edge_id = t.pop("node_id", "")
        t.setdefault("region", region)
        abuse = t.pop("abuse", None) or {}
        if not isinstance(abuse, dict):
            raise ConfigError("edge.abuse", "a table", abuse)
        t["abuse"] = build(AbuseConfig, "edge.abuse", abuse)
        shedding = t.pop("shedding", None) or {}
        if not isinstance(shedding, dict):
            raise ConfigError("edge.shedding", "a table", shedding)
        t["shedding"] = build(ShedConfig, "edge.shedding", shedding)
        edge = EdgeSection(listen=listen, config=build(EdgeConfig, "edge", t), node_id=edge_id)
    if (t := table("aggregator")) is not None:
        listen = t.pop("listen", None)
        t.setdefault("region", region)
        aggregator = AggregatorSection(listen=listen, config=build(AggregatorConfig, "aggregator", t))
    if (t := table("broadcaster")) is not None:
        listen = t.pop("listen", None)
        node_id = t.pop("node_id", f"{region}/broadcaster")
        sources = tuple(t.pop("sources", ()))
        peers = tuple(t.pop("peers", ()))
        polls_db_path = t.pop("polls_db_path", None)
        polls = build(PollsConfig, "broadcaster.polls", t.pop("polls", None) or {})
        comments_db_path = t.pop("comments_db_path", None)
        comments = build(CommentsConfig, "broadcaster.comments", t.pop("comments", None) or {})
        history_db_path = t.pop("history_db_path", None)
        moderation_db_path = t.pop("moderation_db_path", None)
        horizon = t.pop("window_horizon_s", BroadcasterSection.window_horizon_s)
        retention = t.pop("window_retention_s", BroadcasterSection.window_retention_s)
        history = build(HistorySyncConfig, "broadcaster.history", t.pop("history", None) or {})
        peer_listen = t.pop("peer_listen", None)
        broadcaster = BroadcasterSection(
            listen=listen,
            node_id=node_id,
            sources=sources,
            peers=peers,
            polls_db_path=polls_db_path,
            polls=polls,
            comments_db_path=comments_db_path,
            comments=comments,
            history_db_path=history_db_path,
            moderation_db_path=moderation_db_path,
            window_horizon_s=horizon,
            window_retention_s=retention,
            history=history,
            peer_listen=peer_listen,
            config=build(BroadcasterConfig, "broadcaster", t),
        )
    gateway = build(GatewayConfig, "gateway", t) if (t := table("gateway")) is not None else None
    gossip = build(GossipConfig, "gossip", {"digest_collections": DIGESTED, **(table("gossip") or {})})
    tls = build(TLSConfig, "tls", t) if (t := table("tls")) is not None else None
    return NodeConfig(
        region=region,  # type: ignore[arg-type]
        edge=edge,
        aggregator=aggregator,
        broadcaster=broadcaster,
        gateway=gateway,
        gossip=gossip,
        metrics_listen=data.get("metrics_listen"),
        auth=build(AuthConfig, "auth", table("auth") or {}),
        tls=tls,
    )


def load(path: str | Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError("--config", "an existing TOML file", str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"valid TOML ({exc})", str(path)) from exc
    return from_mapping(data, env)
