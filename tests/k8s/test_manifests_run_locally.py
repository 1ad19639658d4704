"""The rendered manifests of all three regions, run as local processes: proof that they are wired, not only valid.

Every pod of the three overlays (each StatefulSet ordinal; one pod per Deployment, whose replicas are
interchangeable) becomes one OS process started exactly as the kubelet would start its container: the image's
ENTRYPOINT (read from the Dockerfile) or the container's command, its args, its environment (downward API and
ConfigMap references included) and its mounted files. The only rewrite is of addresses and paths: every
container port gets a distinct 127.0.0.1 port, every cluster DNS name:port in a config is resolved the way the
cluster would (search domains, Services, headless pod names) to the port of the pod it reaches, and mount paths
become directories under tmp_path. The Secrets are made in the test: a JWKS for "reactmesh-auth", for
"reactmesh-tls" a throwaway CA (region_node/certs.py) and one certificate for the rendered names and 127.0.0.1 (what
the rewritten addresses dial), so the pods run with TLS and mTLS exactly as configured, and for
"reactmesh-gateway-token" a viewer token signed with the JWKS's key. Readiness is each container's own readiness
probe: for gRPC roles a TCP connect to its serving port, then a gRPC health check over mTLS; for the gateway its
HTTP probe (/readyz, which is 200 only once both upstreams answer health over TLS).

Then every pod must serve Prometheus metrics where its scrape annotations point, and taps sent through region a's
edge Service (one session routed to each aggregator by the edge's own hash ring, over TLS) must show up in the
Query totals of every region's broadcaster, while a plaintext client is refused. Every region's gateway Service
shows the same totals to a browser (a WebSocket snapshot, fed by the gateway's shared upstream Subscribe under its
own token, and GET totals with the viewer's token) and serves the overlay page. Skips only when kubectl or PyYAML is
missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import ec

from reactmesh.edge.ring import HashRing
from reactmesh.edge.sdk import ReactionClient
from reactmesh.edge.tokens import bearer, mint_token
from reactmesh.region_node.certs import CertificateAuthority
from reactmesh.region_node.config import load
from reactmesh.region_node.devmesh import free_port_block, to_toml, wait_serving
from reactmesh.v1 import query_pb2, query_pb2_grpc
from tests.support.k8s import REGIONS, REPO, Cluster, Container, render_regions, split_address
from tests.support.polling import eventually

ANY_HOST = ("0.0.0.0", "[::]", "::")
ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
STREAM = "k8s-wiring"


def entrypoint() -> list[str]:
    """The exec-form ENTRYPOINT of the Dockerfile."""
    lines = [line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    assert len(lines) == 1, "the Dockerfile needs exactly one ENTRYPOINT"
    argv = json.loads(lines[0].removeprefix("ENTRYPOINT "))
    assert isinstance(argv, list)
    return [str(a) for a in argv]


@dataclass
class LocalPod:
    container: Container
    argv: list[str]
    env: dict[str, str]
    root: Path
    config: Path
    process: asyncio.subprocess.Process | None = None


class LocalCluster:
    """Runs the containers of ``cluster`` on loopback."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.containers = cluster.containers(deployment_replicas=1)
        self.running = {(c.namespace, c.pod) for c in self.containers}
        wanted = [(c.namespace, c.pod, port) for c in self.containers for port in c.ports]
        base = free_port_block(len(wanted))
        self.ports = {key: base + i for i, key in enumerate(wanted)}
        # Secret "reactmesh-auth": a JWKS with one test key; tokens signed with it pass the rendered [auth].
        self.signer = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.signer.public_key()))
        # Secret "reactmesh-tls": one certificate for every pod of the three regions, valid for every name the configs
        # dial and for the loopback address they are rewritten to (k8s/README.md's one certificate per region works
        # the same way: what the regions must share is the CA).
        self.ca = CertificateAuthority.create("reactmesh k8s test CA")
        cert, key = self.ca.issue("reactmesh", ("localhost", "127.0.0.1", *dialled_names(cluster)))
        self.secrets = {
            "reactmesh-auth": {"jwks.json": json.dumps({"keys": [{**jwk, "kid": "test-1", "alg": "ES256"}]})},
            "reactmesh-tls": {"ca.crt": self.ca.cert_pem.decode(), "tls.crt": cert.decode(), "tls.key": key.decode()},
            "reactmesh-gateway-token": {"token": self.token("gateway") + "\n"},
        }
        self.node_credentials = grpc.ssl_channel_credentials(self.ca.cert_pem, key, cert)
        self.viewer_credentials = grpc.ssl_channel_credentials(self.ca.cert_pem)
        self.pods = [self._prepare(c, tmp / c.namespace / c.pod) for c in self.containers]

    def token(self, sub: str) -> str:
        """A viewer token for ``sub`` that the rendered pods accept."""
        return mint_token(self.signer, "ES256", sub=sub, now_s=int(time.time()), kid="test-1")

    def local(self, address: str, from_namespace: str) -> str:
        """The 127.0.0.1 address a cluster "host:port" reaches (a running pod behind it)."""
        for ns, pod, port in self.cluster.resolve(address, from_namespace):
            if (ns, pod) in self.running:
                return f"127.0.0.1:{self.ports[(ns, pod, port)]}"
        raise AssertionError(f"{address} reaches no running pod")

    def _rewrite(self, c: Container, value: Any, mounts: dict[str, Path]) -> Any:
        if isinstance(value, dict):
            return {k: self._rewrite(c, v, mounts) for k, v in value.items()}
        if isinstance(value, list):
            return [self._rewrite(c, v, mounts) for v in value]
        if not isinstance(value, str):
            return value
        if value.startswith("/"):
            return str(_local_path(value, mounts))
        if ADDRESS.match(value):
            host, port = split_address(value)
            if host in ANY_HOST:
                assert port in c.ports, f"{c.pod}/{c.name} listens on {port}, which it does not declare"
                return f"127.0.0.1:{self.ports[(c.namespace, c.pod, port)]}"
            return self.local(value, c.namespace)
        return value

    def _prepare(self, c: Container, root: Path) -> LocalPod:
        mounts: dict[str, Path] = {}
        for mount, volume in c.mounts():
            local = root / mount.lstrip("/")
            local.mkdir(parents=True)
            mounts[mount] = local
            if "configMap" in volume:
                for key, text in self.cluster.config_map(c.namespace, volume["configMap"]["name"]).items():
                    (local / key).write_text(text)
            elif "secret" in volume:
                for key, text in self.secrets[volume["secret"]["secretName"]].items():
                    (local / key).write_text(text)
            else:
                assert set(volume) & {"emptyDir", "persistentVolumeClaim"}, f"{c.name}: unsupported volume {volume}"
        config = _local_path(c.config_path(), mounts)
        config.write_text(to_toml(self._rewrite(c, self.cluster.config(c), mounts)))
        command = c.spec.get("command") or entrypoint()
        assert command[0] == "reactmesh", f"{c.name}: expected the reactmesh console script, got {command}"
        args = [_rewrite_flag(a, mounts) for a in [*command[1:], *c.spec.get("args", [])]]
        argv = [sys.executable, "-m", "reactmesh.region_node.cli", *args]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("REACTMESH_")}
        env = {**inherited, **self.cluster.environment(c), "PYTHONUNBUFFERED": "1"}
        return LocalPod(c, argv, env, root, config)

    async def start(self) -> None:
        for p in self.pods:
            log = open(p.root / "log.txt", "ab")  # noqa: SIM115, ASYNC230 - handed to the child
            p.process = await asyncio.create_subprocess_exec(*p.argv, stdout=log, stderr=log, env=p.env, cwd=p.root)
            log.close()

    async def wait_ready(self, within: float = 30.0) -> None:
        """Each container's readiness probe until all pass: a TCP connect to the probe's port, then gRPC health on
        that port over mTLS; or, for an HTTP probe, a GET answered 200. No process may exit."""
        checks = []
        for c in self.containers:
            probe = c.spec["readinessProbe"]
            if "httpGet" in probe:
                port = self.ports[(c.namespace, c.pod, c.port_number(probe["httpGet"]["port"]))]
                checks.append(http_ok(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", within))
            else:
                port = self.ports[(c.namespace, c.pod, probe["tcpSocket"]["port"])]
                checks.append(tcp_then_health(port, within, self.node_credentials))
        ready: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*checks))
        exits: dict[asyncio.Future[Any], LocalPod] = {
            asyncio.ensure_future(p.process.wait()): p for p in self.pods if p.process is not None
        }
        try:
            done, _ = await asyncio.wait([ready, *exits], return_when=asyncio.FIRST_COMPLETED)
            exited = [exits[t].root for t in done if t in exits]
            assert not exited, f"exited before ready: {exited}\n{self.logs()}"
            try:
                ready.result()
            except TimeoutError as exc:
                raise AssertionError(f"not ready: {exc}\n{self.logs()}") from exc
        finally:
            for t in [ready, *exits]:
                t.cancel()
            await asyncio.gather(ready, *exits, return_exceptions=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.root}/log.txt\n{(p.root / 'log.txt').read_text()[-2000:]}" for p in self.pods)

    async def stop(self) -> None:
        live = [p.process for p in self.pods if p.process is not None and p.process.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in live:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def dialled_names(cluster: Cluster) -> list[str]:
    """Every host name a rendered config dials (aggregators, sources, peers, the gateway's upstreams): the
    certificate's DNS SANs."""
    names: dict[str, None] = {}
    for c in cluster.containers():
        cfg = cluster.config(c)
        for section, key in (("edge", "aggregators"), ("broadcaster", "sources"), ("broadcaster", "peers")):
            for address in cfg.get(section, {}).get(key, []):
                names[split_address(address)[0]] = None
        for key in ("edge", "broadcaster"):
            if key in cfg.get("gateway", {}):
                names[split_address(cfg["gateway"][key])[0]] = None
    return list(names)


async def http_ok(url: str, within: float) -> None:
    """What the kubelet's httpGet probe checks: a 2xx answer (here: 200) before ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = "no answer"
    async with httpx.AsyncClient(timeout=5) as http:
        while loop.time() < deadline:
            try:
                reply = await http.get(url)
                if reply.status_code == 200:
                    return
                last = f"{reply.status_code} {reply.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not 200 after {within} s: {last}")


async def tcp_then_health(port: int, within: float, credentials: grpc.ChannelCredentials) -> None:
    """What the kubelet's tcpSocket probe checks, then what a TLS client sees: SERVING."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"127.0.0.1:{port} accepts no TCP connection after {within} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    await wait_serving(f"127.0.0.1:{port}", max(1.0, deadline - loop.time()), credentials)


def _local_path(path: str, mounts: dict[str, Path]) -> Path:
    """Where a path inside the container lives locally; every path a process uses must be on a volume."""
    for mount, local in mounts.items():
        if path.startswith(mount + "/"):
            return local / path[len(mount) + 1 :]
    raise AssertionError(f"{path} is on no volume (the root filesystem is read-only)")


def _rewrite_flag(arg: str, mounts: dict[str, Path]) -> str:
    flag, sep, value = arg.partition("=")
    if sep and value.startswith("/"):
        return f"{flag}={_local_path(value, mounts)}"
    assert not arg.startswith("/"), f"bare path argument {arg} is not supported"
    return arg


@contextlib.asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[LocalCluster]:
    cluster = Cluster(d for docs in render_regions().values() for d in docs)
    local = LocalCluster(cluster, tmp)
    try:
        await local.start()
        await local.wait_ready()
        yield local
    finally:
        await local.stop()


def session_for(ring: HashRing, node: str) -> bytes:
    """A session id the edge's ring routes to ``node`` (deterministic)."""
    for i in range(10_000):
        sid = hashlib.blake2b(f"session-{i}".encode(), digest_size=16).digest()
        if ring.lookup(sid) == node:
            return sid
    raise AssertionError(f"no session routes to {node}")


async def totals(address: str, token: str | None, credentials: grpc.ChannelCredentials | None) -> dict[str, int]:
    """Query totals as a viewer: over TLS trusting the mesh CA, or in plaintext when ``credentials`` is None."""
    channel = (
        grpc.aio.secure_channel(address, credentials) if credentials is not None else grpc.aio.insecure_channel(address)
    )
    async with channel:
        reply = await query_pb2_grpc.QueryStub(channel).GetTotals(
            query_pb2.GetTotalsRequest(stream_id=STREAM), timeout=5, metadata=bearer(token)
        )
    return {c.emoji: c.count for c in reply.totals}


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200, url
        return str(reply.read().decode())


async def send_one_session_per_aggregator(mesh: LocalCluster) -> dict[str, int]:
    """Taps through region a's edge Service, one session routed to each aggregator by the edge's own ring."""
    edge = next(p for p in mesh.pods if p.container.namespace == "reactmesh-a" and p.container.target() == "edge")
    section = load(edge.config, edge.env).edge
    assert section is not None
    ring = HashRing(section.config.aggregators, section.config.ring_vnodes)
    address = mesh.local("edge.reactmesh-a.svc.cluster.local:7100", "default")
    expected: dict[str, int] = {}
    clients = []
    for i, (node, emoji) in enumerate(zip(ring.nodes, ("heart", "fire"), strict=True)):
        client = ReactionClient(
            [address], f"viewer-{i}", token=mesh.token(f"viewer-{i}"), credentials=mesh.viewer_credentials
        )
        client.session_id = session_for(ring, node)
        client.tap(STREAM, emoji, n=3 + i)
        expected[emoji] = 3 + i
        clients.append(client)
    try:
        await asyncio.gather(*(c.flush(timeout=20) for c in clients))
    finally:
        for c in clients:
            await c.close()
    return expected


async def test_rendered_regions_run_locally_are_scrapable_and_carry_taps_from_region_a_to_every_region(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as mesh:
        for c in mesh.containers:
            annotations = c.workload["spec"]["template"]["metadata"]["annotations"]
            port = mesh.ports[(c.namespace, c.pod, int(annotations["prometheus.io/port"]))]
            body = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}{annotations['prometheus.io/path']}")
            assert "# TYPE " in body, f"{c.namespace}/{c.pod}: no Prometheus metrics where the annotations point"

        # TLS and auth are on as rendered: a plaintext client reaches nothing, an anonymous TLS call is refused.
        bcast_a = mesh.local("bcast.reactmesh-a.svc.cluster.local:7300", "default")
        with pytest.raises(grpc.aio.AioRpcError) as plaintext:
            await totals(bcast_a, mesh.token("plain"), None)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await totals(bcast_a, None, mesh.viewer_credentials)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        expected = await send_one_session_per_aggregator(mesh)
        watcher = mesh.token("watcher")
        seen: dict[str, dict[str, int]] = {}

        async def poll(region: str) -> None:
            address = mesh.local(f"bcast.reactmesh-{region}.svc.cluster.local:7300", "default")
            while True:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    seen[region] = await totals(address, watcher, mesh.viewer_credentials)
                await asyncio.sleep(0.05)

        pollers = [asyncio.create_task(poll(r)) for r in REGIONS]
        try:
            await eventually(lambda: all(seen.get(r) == expected for r in REGIONS), within=30)
        except AssertionError as exc:
            raise AssertionError(f"totals per region {seen}, expected {expected}\n{mesh.logs()}") from exc
        finally:
            for t in pollers:
                t.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)

        for region in REGIONS:
            gateway = mesh.local(f"gateway.reactmesh-{region}.svc.cluster.local:8080", "default")
            try:
                await asyncio.wait_for(through_gateway(gateway, watcher, expected), 20)
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"region {region}'s gateway: {exc!r}\n{mesh.logs()}") from exc


async def through_gateway(address: str, token: str, expected: dict[str, int]) -> None:
    """What a browser sees at a gateway: the overlay page, the totals over HTTP and on a WebSocket; anonymous is 401."""
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as http:
        page = await http.get("/overlay")
        assert page.status_code == 200 and "<html" in page.text.lower(), page.status_code
        assert (await http.get(f"/v1/streams/{STREAM}/totals")).status_code == 401
        reply = await http.get(f"/v1/streams/{STREAM}/totals", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["totals"] == expected
    async with websockets.connect(f"ws://{address}/v1/streams/{STREAM}?access_token={token}") as ws:
        while True:
            message = json.loads(await ws.recv())
            assert message["type"] != "error", message
            if message["type"] == "frame" and message["kind"] == "snapshot":
                assert message["counts"] == expected
                return
