"""Local meshes: N simulated regions on loopback, as processes (``reactmesh up``) or in-process.

Each region runs an edge, two aggregators, a broadcaster and a gateway (HTTP/WebSocket for browsers, port +9).
As processes: one ``serve --target=all`` process (edge, agg-0, broadcaster, gateway) and one ``serve
--target=aggregator`` process (agg-1). Broadcasters of different regions gossip with each other (all-to-all).
``ProcessMesh`` can SIGKILL and restart any process, which the fault tests use; ``InProcessMesh`` runs the same
plan as Nodes in the caller's event loop for fast integration tests.

With ``tls`` a mesh gets a throwaway CA in ``<data_dir>/tls`` (``mesh_certs``), a certificate per process, and
runs with mTLS between nodes: broadcasters then gossip on their ``peer_listen`` port (+4).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reactmesh.edge.tokens import Minter, new_dev_secret
from reactmesh.region_node.certs import CertFiles, CertificateAuthority
from reactmesh.region_node.config import ROLES, from_mapping
from reactmesh.region_node.node import Node
from reactmesh.region_node.supervise import Child, start_child


@dataclass(frozen=True)
class RegionPlan:
    region: str
    edge: str
    aggregators: tuple[str, str]
    broadcaster: str
    peers: tuple[str, ...]
    data_dir: Path
    peer_listen: str | None = None
    gateway: str | None = None
    """The gateway's "host:port" (HTTP); None: no gateway."""
    tls_dir: Path | None = None
    """Set with TLS: the directory of ``mesh_certs`` (``<region>-<process>.pem``, its key, ``ca.pem``)."""

    def tls_section(self, name: str) -> dict[str, Any]:
        """The [tls] section of process ``name`` ("main", "agg1"); empty without TLS."""
        if self.tls_dir is None:
            return {}
        d, stem = self.tls_dir, f"{self.region}-{name}"
        return {
            "cert_file": str(d / f"{stem}.pem"),
            "key_file": str(d / f"{stem}-key.pem"),
            "ca_file": str(d / "ca.pem"),
            "require_client_cert": True,
        }

    def process_configs(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """Config mappings of the region's two processes: "main" (all roles) and "agg1"."""
        o = overrides or {}
        agg = [
            {
                "listen": address,
                "node_id": f"{self.region}/agg-{i}",
                "db_path": str(self.data_dir / f"{self.region}-agg-{i}.db"),
                **o.get("aggregator", {}),
            }
            for i, address in enumerate(self.aggregators)
        ]
        port = int(self.edge.rsplit(":", 1)[1])
        main = {
            "region": self.region,
            "metrics_listen": f"127.0.0.1:{port + 5}",
            "edge": {
                "listen": self.edge,
                "node_id": f"{self.region}/edge-0",
                "aggregators": list(self.aggregators),
                **o.get("edge", {}),
            },
            "aggregator": agg[0],
            "broadcaster": {
                "listen": self.broadcaster,
                "node_id": f"{self.region}/bcast-0",
                "sources": list(self.aggregators),
                "peers": list(self.peers),
                "polls_db_path": str(self.data_dir / f"{self.region}-polls.db"),
                "comments_db_path": str(self.data_dir / f"{self.region}-comments.db"),
                "history_db_path": str(self.data_dir / f"{self.region}-history.db"),
                "moderation_db_path": str(self.data_dir / f"{self.region}-moderation.db"),
                **({"peer_listen": self.peer_listen} if self.peer_listen else {}),
                **o.get("broadcaster", {}),
            },
            "gossip": dict(o.get("gossip", {})),
            **({"auth": dict(o["auth"])} if "auth" in o else {}),
        }
        if self.gateway is not None:
            main["gateway"] = {
                "listen": self.gateway,
                "edge": self.edge,
                "broadcaster": self.broadcaster,
                **o.get("gateway", {}),
            }
        if self.tls_dir is not None:
            main["tls"] = {**self.tls_section("main"), **o.get("tls", {})}
        second = {
            "region": self.region,
            "metrics_listen": f"127.0.0.1:{port + 6}",
            "aggregator": agg[1],
            "gossip": dict(o.get("gossip", {})),
        }
        if self.tls_dir is not None:
            second["tls"] = {**self.tls_section("agg1"), **o.get("tls", {})}
        return {"main": main, "agg1": second}

    def split_configs(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """One process per role: "edge", "agg0", "agg1", "bcast" (for fault tests)."""
        combined = self.process_configs(overrides)
        main, region, gossip = combined["main"], self.region, combined["main"]["gossip"]
        port = int(self.edge.rsplit(":", 1)[1])
        tls = {"tls": main["tls"]} if "tls" in main else {}
        split = {
            "edge": {
                "region": region,
                "metrics_listen": main["metrics_listen"],
                "edge": main["edge"],
                "gossip": gossip,
                **({"auth": main["auth"]} if "auth" in main else {}),
            },
            "agg0": {
                "region": region,
                "metrics_listen": f"127.0.0.1:{port + 7}",
                "aggregator": main["aggregator"],
                "gossip": gossip,
            },
            "agg1": combined["agg1"],
            "bcast": {
                "region": region,
                "metrics_listen": f"127.0.0.1:{port + 8}",
                "broadcaster": main["broadcaster"],
                "gossip": gossip,
                **({"auth": main["auth"]} if "auth" in main else {}),
            },
        }
        for name, cfg in split.items():
            if name != "agg1":
                cfg.update(tls)
        return split


def plan(
    regions: Sequence[str],
    base_port: int,
    data_dir: Path,
    hosts: Mapping[str, str] | None = None,
    ports: Mapping[str, int] | None = None,
    tls_dir: Path | None = None,
) -> dict[str, RegionPlan]:
    """Ports: region i uses base+10i (or ``ports[region]``) for its edge, +1/+2 (aggregators),
    +3 (broadcaster), +4 (its gossip peer port, with ``tls_dir``), +5..+8 (metrics), +9 (gateway), on 127.0.0.1
    (or ``hosts[region]``)."""
    host = {r: (hosts or {}).get(r, "127.0.0.1") for r in regions}
    base = {r: (ports or {}).get(r, base_port + 10 * i) for i, r in enumerate(regions)}
    bcast = {r: f"{host[r]}:{base[r] + 3}" for r in regions}
    peer = {r: f"{host[r]}:{base[r] + 4}" for r in regions} if tls_dir is not None else bcast
    return {
        r: RegionPlan(
            region=r,
            edge=f"{host[r]}:{base[r]}",
            aggregators=(f"{host[r]}:{base[r] + 1}", f"{host[r]}:{base[r] + 2}"),
            broadcaster=bcast[r],
            peers=tuple(peer[o] for o in regions if o != r),
            data_dir=data_dir,
            peer_listen=peer[r] if tls_dir is not None else None,
            gateway=f"{host[r]}:{base[r] + 9}",
            tls_dir=tls_dir,
        )
        for r in regions
    }


def to_toml(data: Mapping[str, Any]) -> str:
    """Serialise the two-level mappings of a node config as TOML (deeper tables inline)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):  # a table inside a section, e.g. [broadcaster.history], inline
            return "{" + ", ".join(f"{kk} = {value(vv)}" for kk, vv in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for k, v in data.items():
        if isinstance(v, Mapping):
            lines.append(f"\n[{k}]")
            lines.extend(f"{kk} = {value(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"


def mesh_certs(plans: Mapping[str, RegionPlan], hosts: Sequence[str] = ()) -> CertFiles:
    """A new CA and a certificate per process of ``plans`` (valid for loopback and ``hosts``) in their
    ``tls_dir``, plus ``client.pem`` for the harness and tools that dial node-to-node ports; returns the client's."""
    dirs = {p.tls_dir for p in plans.values() if p.tls_dir is not None}
    if not dirs:
        raise ValueError("the plans have no tls_dir")
    ca = CertificateAuthority.create("reactmesh up CA")
    names = (
        "localhost",
        "127.0.0.1",
        "::1",
        *hosts,
        *(a.rsplit(":", 1)[0] for p in plans.values() for a in (p.edge, *p.aggregators, p.broadcaster)),
    )
    san = tuple(dict.fromkeys(names))
    client = None
    for d in dirs:
        ca.write(d)
        for p in plans.values():
            if p.tls_dir == d:
                for name in ("main", "agg1"):
                    ca.write_node(d, f"{p.region}-{name}", san)
        client = ca.write_node(d, "client", san)
    assert client is not None
    return client


def channel_credentials(files: CertFiles | None, *, client_cert: bool = True) -> grpc.ChannelCredentials | None:
    """Credentials for the harness: the CA, and the client certificate unless ``client_cert`` is false (a viewer)."""
    if files is None:
        return None
    ca = files.ca_file.read_bytes()
    if not client_cert:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(ca, files.key_file.read_bytes(), files.cert_file.read_bytes())


async def wait_serving(address: str, within: float = 20.0, credentials: grpc.ChannelCredentials | None = None) -> None:
    """Wait until the gRPC health service at ``address`` answers SERVING (over TLS with ``credentials``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    channel = (
        grpc.aio.secure_channel(address, credentials) if credentials is not None else grpc.aio.insecure_channel(address)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"{address} not serving after {within} s")
            await asyncio.sleep(0.05)


@dataclass
class ProcessMesh:
    """The regions as OS processes. Use as ``async with ProcessMesh(...) as mesh``."""

    regions: Sequence[str] = ("a", "b", "c")
    base_port: int = 7100
    data_dir: Path | None = None
    overrides: Mapping[str, Mapping[str, Any]] | None = None
    log_dir: Path | None = None
    layout: str = "combined"  # or "split": one process per role
    # Require client tokens, signed with an HS256 dev key in data_dir/auth.key (kept across runs of one data dir).
    auth: bool = False
    auth_key: Path | None = None
    tls: bool = False  # a throwaway CA in <data_dir>/tls, mTLS between nodes
    plans: dict[str, RegionPlan] = field(default_factory=dict)
    procs: dict[tuple[str, str], Child] = field(default_factory=dict)
    client_tls: CertFiles | None = None
    """With ``tls``: the harness's certificate (``ca_file`` is what viewers trust)."""
    _tmp: Path | None = None

    async def __aenter__(self) -> ProcessMesh:
        if self.data_dir is None:
            self._tmp = self.data_dir = Path(tempfile.mkdtemp(prefix="reactmesh-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls_dir = self.data_dir / "tls" if self.tls else None
        self.plans = plan(self.regions, self.base_port, self.data_dir, tls_dir=tls_dir)
        if tls_dir is not None:
            self.client_tls = mesh_certs(self.plans)
        overrides = dict(self.overrides or {})
        if self.auth:
            self.auth_key = write_dev_key(self.data_dir / "auth.key")
            overrides["auth"] = {"enabled": True, "key_file": str(self.auth_key), **overrides.get("auth", {})}
            token = write_gateway_token(self.auth_key, self.data_dir / "gateway.token")
            overrides["gateway"] = {"upstream_token_file": str(token), **overrides.get("gateway", {})}
        try:
            for r, p in self.plans.items():
                configs = p.split_configs(overrides) if self.layout == "split" else p.process_configs(overrides)
                for name, cfg in configs.items():
                    (self.data_dir / f"{r}-{name}.toml").write_text(to_toml(cfg))
                for name in configs:
                    await self.start(r, name)
            await self.wait_ready()
        except BaseException:
            await self.stop_all()  # no orphaned processes when start-up fails; the data and logs are kept
            self._tmp = None
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def start(self, region: str, name: str) -> None:
        """Start (or restart) process ``name`` of ``region`` ("main"/"agg1", or edge/agg0/agg1/bcast when split)."""
        assert self.data_dir is not None
        target = {"main": "all", "edge": "edge", "bcast": "broadcaster", "gw": "gateway"}.get(name, "aggregator")
        log_dir = self.log_dir or self.data_dir
        self.procs[(region, name)] = await start_child(
            [
                sys.executable,
                "-m",
                "reactmesh.region_node.cli",
                "serve",
                f"--target={target}",
                "--config",
                str(self.data_dir / f"{region}-{name}.toml"),
            ],
            name=f"region {region} process {name} (serve --target={target})",
            # Linked: it says when it is serving, and stops when this process dies (see supervise).
            linked=True,
            log=log_dir / f"{region}-{name}.log",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Own session: a terminal's Ctrl-C reaches only `reactmesh up`, which stops the demo first
            # and then the processes in order (SIGTERM), instead of every process at once.
            new_session=True,
        )

    async def wait_ready(self, within: float = 30.0) -> None:
        """Wait until every process says it is serving and every server answers health checks.

        Raises ChildFailed (naming the process, with its log) as soon as one exits before it is ready.
        """
        await asyncio.gather(*(p.ready(within) for p in self.procs.values()))
        addresses = []
        for p in self.plans.values():
            addresses += [p.edge, *p.aggregators, p.broadcaster]
        credentials = channel_credentials(self.client_tls)
        await asyncio.gather(*(wait_serving(a, within, credentials) for a in addresses))

    def kill(self, region: str, name: str) -> None:
        """SIGKILL a process: no flush, no final commit."""
        self.procs[(region, name)].send_signal(signal.SIGKILL)

    async def wait(self, region: str, name: str) -> int:
        return await self.procs[(region, name)].wait()

    async def stop_all(self, grace: float = 15.0) -> None:
        live = [p for p in self.procs.values() if p.returncode is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in live:
            try:
                await asyncio.wait_for(p.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


@dataclass
class InProcessMesh:
    """The same plan as Nodes in this event loop (no subprocesses)."""

    data_dir: Path
    regions: Sequence[str] = ("a",)
    base_port: int = 0
    overrides: Mapping[str, Mapping[str, Any]] | None = None
    tls: bool = False
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    plans: dict[str, RegionPlan] = field(default_factory=dict)
    client_tls: CertFiles | None = None

    async def __aenter__(self) -> InProcessMesh:
        base = self.base_port or free_port_block(10 * len(self.regions))
        tls_dir = self.data_dir / "tls" if self.tls else None
        self.plans = plan(self.regions, base, self.data_dir, tls_dir=tls_dir)
        if tls_dir is not None:
            self.client_tls = mesh_certs(self.plans)
        try:
            for r, p in self.plans.items():
                configs = p.process_configs(self.overrides)
                for name, targets in (("agg1", frozenset({"aggregator"})), ("main", frozenset(ROLES))):
                    node = Node(from_mapping(configs[name]), targets)
                    self.nodes[(r, name)] = node
                    await node.start()
        except BaseException:
            await self.__aexit__(None, None, None)  # stop what did start when start-up fails
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            await node.stop(grace=1.0)


def write_dev_key(path: Path) -> Path:
    """An HS256 development secret at ``path`` (owner-only), made once and kept, so tokens outlive a restart."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_dev_secret() + "\n")
    return path


def write_gateway_token(key: Path, path: Path, ttl_s: int = 30 * 86_400) -> Path:
    """A viewer token for the gateways' shared upstream Subscribe calls, signed with the dev ``key``."""
    token = Minter(key, ttl_s=ttl_s).mint("gateway")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


def free_port_block(n: int) -> int:
    """A base port such that base..base+n-1 were free a moment ago (best effort)."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n >= 65535:
            continue
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise OSError("no free block of ports")
