"""TLS and mTLS with real certificates made in the test: an mTLS mesh converges while viewers present none, plaintext
and foreign-CA peers are refused (and counted), and rotated files are used without a restart."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reactmesh.edge.sdk import ReactionClient
from reactmesh.merge.clock import SystemClock
from reactmesh.region_node.certs import CertFiles, CertificateAuthority
from reactmesh.region_node.config import from_mapping
from reactmesh.region_node.devmesh import InProcessMesh, channel_credentials, free_port_block
from reactmesh.region_node.node import Node
from reactmesh.region_node.replication import GossipServicer
from reactmesh.region_node.state import RegionGossipNode, RegionState
from reactmesh.v1 import gossip_pb2_grpc
from tests.support.polling import eventually
from tests.support.totals import wait_converged


def rejections(node: Node) -> Counter[str]:
    assert node.metrics is not None
    return Counter(
        {
            labels["reason"]: int(value)
            for name, labels, value in node.metrics.samples()
            if name == "reactmesh_tls_peer_rejections_total"
        }
    )


def metric(node: Node, name: str) -> float:
    assert node.metrics is not None
    return sum(value for n, _, value in node.metrics.samples() if n == name)


async def health(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    """One health check; raises grpc.aio.AioRpcError when the connection is refused."""
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    async with channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


async def test_mtls_mesh_converges_while_viewers_present_only_the_ca(tmp_path: Path) -> None:
    async with InProcessMesh(tmp_path, regions=("a", "b"), tls=True) as mesh:
        assert mesh.client_tls is not None
        viewer = channel_credentials(mesh.client_tls, client_cert=False)
        clients = [
            ReactionClient([p.edge], viewer_id=f"v-{r}", credentials=viewer, batch_interval_s=0.05)
            for r, p in mesh.plans.items()
        ]
        for c in clients:
            await c.start()
        truth: Counter[str] = Counter()
        for i, c in enumerate(clients):
            for _ in range(5 + i):
                c.tap("tls-0", "fire")
                truth["tls-0/fire"] += 1
        for c in clients:
            await c.flush(timeout=10)
            await c.close()
        broadcasters = {r: p.broadcaster for r, p in mesh.plans.items()}
        await wait_converged(broadcasters, truth, within=30, credentials=viewer)
        main = mesh.nodes[("a", "main")]
        assert main.aggregator is not None and main.broadcaster is not None
        # Every link is TLS: a plaintext client reaches no port, and an aggregator wants a client certificate.
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await health(mesh.plans["a"].edge, None)
        assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await health(mesh.plans["a"].aggregators[0], viewer)
        await health(mesh.plans["a"].aggregators[0], channel_credentials(mesh.client_tls))
        assert rejections(main) == Counter()


def _node(tmp_path: Path, name: str, base: int, tls: Mapping[str, Any] | None, peers: list[str]) -> Node:
    config: dict[str, Any] = {
        "region": "a" if name == "a" else "b",
        "metrics_listen": f"127.0.0.1:{base + 5}",
        "broadcaster": {
            "listen": f"127.0.0.1:{base}",
            "peer_listen": f"127.0.0.1:{base + 1}",
            "node_id": f"{name}/bcast-0",
            "peers": peers,
        },
    }
    if tls is not None:
        config["tls"] = dict(tls)
    return Node(from_mapping(config), frozenset({"broadcaster"}))


def _tls(files: CertFiles) -> dict[str, Any]:
    return {"cert_file": str(files.cert_file), "key_file": str(files.key_file), "ca_file": str(files.ca_file)}


async def test_plaintext_and_foreign_ca_peers_are_refused_and_counted(tmp_path: Path) -> None:
    ca, foreign = CertificateAuthority.create("mesh"), CertificateAuthority.create("someone else")
    ours, theirs = ca.write_node(tmp_path / "mesh", "a"), foreign.write_node(tmp_path / "foreign", "x")
    client = ca.write_node(tmp_path / "mesh", "client")
    base = free_port_block(30)
    # A plaintext broadcaster and one with a foreign CA's certificate, both named as peers of the mTLS node "a".
    plain = _node(tmp_path, "p", base + 10, None, [])
    evil = _node(tmp_path, "x", base + 20, _tls(theirs), [f"127.0.0.1:{base + 1}"])
    node = _node(tmp_path, "a", base, _tls(ours), [f"127.0.0.1:{base + 11}", f"127.0.0.1:{base + 21}"])
    for n in (plain, evil, node):
        await n.start()
    try:
        await eventually(
            lambda: rejections(node)["plaintext_peer"] >= 1 and rejections(node)["untrusted_certificate"] >= 1,
            within=20,
        )
        # The foreign node dials "a": each refuses the other's certificate in the handshake; and neither a foreign
        # nor a plaintext client reaches a's peer port.
        await eventually(lambda: rejections(evil)["untrusted_certificate"] >= 1, within=10)
        with pytest.raises(grpc.aio.AioRpcError):
            await health(f"127.0.0.1:{base + 1}", channel_credentials(theirs))
        with pytest.raises(grpc.aio.AioRpcError):
            await health(f"127.0.0.1:{base + 1}", None)
        await health(f"127.0.0.1:{base + 1}", channel_credentials(client))

        # Gossip on the viewer-facing port, which asks for no certificate: refused at the call, and counted.
        viewer = channel_credentials(client, client_cert=False)
        async with grpc.aio.secure_channel(f"127.0.0.1:{base}", viewer) as channel:
            call = gossip_pb2_grpc.GossipStub(channel).Exchange()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "client certificate" in (refused.value.details() or "")
        assert rejections(node)["no_client_certificate"] == 1
        await health(f"127.0.0.1:{base}", viewer)  # viewers need no certificate
        assert node.broadcaster_gossip is not None and not node.broadcaster_gossip.stats.deltas_received
    finally:
        for n in (node, evil, plain):
            await n.stop(grace=0.5)


def _served_certificate(address: str, files: CertFiles) -> x509.Certificate:
    """The certificate a listener presents to a new connection (Python's ssl, with a client certificate)."""
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(files.ca_file))
    ctx.load_cert_chain(str(files.cert_file), str(files.key_file))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def test_rotated_certificate_and_ca_are_used_without_restart(tmp_path: Path) -> None:
    d = tmp_path / "tls"
    ca = CertificateAuthority.create("mesh")
    files = ca.write_node(d, "a")
    client = ca.write_node(d, "client")
    base = free_port_block(10)
    node = _node(tmp_path, "a", base, _tls(files), [])
    await node.start()
    loop = asyncio.get_running_loop()
    peer_port = f"127.0.0.1:{base + 1}"
    try:
        first = await loop.run_in_executor(None, _served_certificate, peer_port, client)
        ca.write_node(d, "a")  # a new key and certificate, same CA
        second = await loop.run_in_executor(None, _served_certificate, peer_port, client)
        assert second.serial_number != first.serial_number
        assert metric(node, "reactmesh_tls_reloads_total") == 1

        # A half-written rotation (a key that does not match the certificate) keeps the current pair.
        files.key_file.write_bytes(CertificateAuthority.create().issue("other")[1])
        again = await loop.run_in_executor(None, _served_certificate, peer_port, client)
        assert again.serial_number == second.serial_number
        assert metric(node, "reactmesh_tls_reload_failures_total") >= 1

        # A new CA: the node now trusts only certificates it signs, and serves one it signed.
        new_ca = CertificateAuthority.create("mesh 2")
        new_ca.write_node(d, "a")  # also replaces ca.pem
        new_client = new_ca.write_node(tmp_path / "new", "client")
        served = await loop.run_in_executor(None, _served_certificate, peer_port, new_client)
        assert served.issuer == new_ca.cert.subject
        with pytest.raises(grpc.aio.AioRpcError):
            await health(peer_port, channel_credentials(client))
        await health(peer_port, channel_credentials(new_client))
    finally:
        await node.stop(grace=0.5)


async def test_reloading_channel_dials_with_the_rotated_certificate(tmp_path: Path) -> None:
    """A node's client channels present the certificate on disk at (re)connect: after a CA change that makes the
    old one useless, the channel is replaced and the call goes through."""
    from reactmesh.region_node.tls import NodeTLS, TLSConfig

    old_ca, new_ca = CertificateAuthority.create("old"), CertificateAuthority.create("new")
    server_files = new_ca.write_node(tmp_path / "server", "server")
    server = grpc.aio.server()
    GossipServicer(RegionGossipNode("b/bcast-0", "b", "broadcaster", RegionState(), SystemClock())).add_to_server(
        server
    )
    health_servicer = __import__("grpc_health.v1.health", fromlist=["aio"]).aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    creds = grpc.ssl_server_credentials(
        [(server_files.key_file.read_bytes(), server_files.cert_file.read_bytes())],
        root_certificates=new_ca.cert_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    d = tmp_path / "client"
    files = old_ca.write_node(d, "a")
    tls = NodeTLS.load(TLSConfig(str(files.cert_file), str(files.key_file), str(files.ca_file)))
    channel = tls.client.reloading_channel(f"127.0.0.1:{port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)  # built once, as the history sync does
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        new_ca.write_node(d, "a")  # the operator rotates the node to the new CA
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert channel.replacements == 1
    finally:
        await channel.close()
        await server.stop(None)
