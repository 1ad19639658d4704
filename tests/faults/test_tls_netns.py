"""mTLS across network namespaces: three regions as OS processes, each in its own namespace, with real certificates
for their addresses (IP SANs), converge to exact totals; a plaintext peer and a peer whose certificate a foreign CA
signed are refused, and the refusals are counted.

Namespaces a, b and c hold one region each (``RegionPlan.process_configs``: "main" runs edge, aggregator and
broadcaster, "agg1" the second aggregator), and namespace x holds two rogue broadcasters: one in plaintext and one
with a certificate of another CA. Region a's broadcaster names both as peers, and both dial a's peer port. The
test process (the root namespace) taps through every region's edge as a viewer (trusting the CA, presenting no
certificate) and reads the totals and metrics over the namespaces' routes.

What shows a refusal: the dialler's ``reactmesh_tls_peer_rejections_total`` (a counts ``plaintext_peer`` and
``untrusted_certificate`` for the rogues it dials; the foreign node counts ``untrusted_certificate`` for a's
certificate) with a log line naming the peer, gRPC core's "Handshake failed" lines (the only trace of what a
listener refuses in the handshake), connections from the test process that fail the same way, and no count of the
rogues' anywhere.
Needs root and ``ip netns`` (skipped with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reactmesh.edge.sdk import ReactionClient
from reactmesh.region_node.certs import CertFiles, CertificateAuthority
from reactmesh.region_node.devmesh import channel_credentials, mesh_certs, plan, wait_serving
from tests.support.netns import RegionNetwork, netns_unavailable
from tests.support.polling import settled
from tests.support.regions import RegionProcesses, listen_addresses
from tests.support.totals import merged_totals, wait_converged

REGIONS = ("a", "b", "c")
ROGUES = "x"
BASE = 7100
STREAM = "tls-ns"
REJECTIONS = re.compile(r'^reactmesh_tls_peer_rejections_total\{[^}]*reason="([a-z_]+)"[^}]*\} ([0-9.e+]+)$', re.M)


def scrape_rejections(address: str) -> Counter[str]:
    """``reactmesh_tls_peer_rejections_total`` per reason, read from a process's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        body = reply.read().decode()
    out: Counter[str] = Counter()
    for reason, value in REJECTIONS.findall(body):
        out[reason] += int(float(value))
    return out


async def health(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    """One health check; raises grpc.aio.AioRpcError when the connection is refused."""
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    async with channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)


def rogue(name: str, host: str, base: int, tls: Mapping[str, Any] | None, peers: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "region": ROGUES,
        "metrics_listen": f"{host}:{base + 5}",
        "broadcaster": {
            "listen": f"{host}:{base}",
            "peer_listen": f"{host}:{base + 1}",
            "node_id": f"{ROGUES}/{name}",
            "peers": peers,
        },
    }
    if tls is not None:
        config["tls"] = dict(tls)
    return config


def tls_section(files: CertFiles) -> dict[str, Any]:
    return {
        "cert_file": str(files.cert_file),
        "key_file": str(files.key_file),
        "ca_file": str(files.ca_file),
        "require_client_cert": True,
    }


@pytest.mark.netns
async def test_mtls_mesh_across_namespaces_converges_and_refuses_plaintext_and_foreign_ca_peers(
    tmp_path: Path,
) -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(
            f"network namespaces unavailable: {reason}. "
            "tests/integration/test_tls.py covers the same refusals on loopback"
        )
    with RegionNetwork((*REGIONS, ROGUES)) as net:
        hosts = {r: net.host(r) for r in (*REGIONS, ROGUES)}
        plans = plan(REGIONS, BASE, tmp_path, hosts=hosts, ports=dict.fromkeys(REGIONS, BASE), tls_dir=tmp_path / "tls")
        client = mesh_certs(plans)  # IP SANs: every region's address (and loopback)
        foreign = CertificateAuthority.create("someone else").write_node(
            tmp_path / "foreign", "x", ("localhost", "127.0.0.1", hosts[ROGUES])
        )
        mesh_node, viewer = channel_credentials(client), channel_credentials(client, client_cert=False)
        foreign_node = channel_credentials(foreign)
        a_peer = plans["a"].peer_listen
        assert a_peer is not None
        plain_peer, foreign_peer = f"{hosts[ROGUES]}:{BASE + 1}", f"{hosts[ROGUES]}:{BASE + 11}"

        configs: dict[str, dict[str, dict[str, Any]]] = {}
        for r, p in plans.items():
            configs[r] = p.process_configs()
            for cfg in configs[r].values():  # metrics on the region's address, where the root namespace reads them
                cfg["metrics_listen"] = cfg["metrics_listen"].replace("127.0.0.1", hosts[r])
        configs["a"]["main"]["broadcaster"]["peers"] += [plain_peer, foreign_peer]
        configs[ROGUES] = {
            "bcast": rogue("plain", hosts[ROGUES], BASE, None, [a_peer]),
            "bcast1": rogue("foreign", hosts[ROGUES], BASE + 10, tls_section(foreign), [a_peer]),
        }
        credentials = {
            **{(r, n): mesh_node for r in REGIONS for n in configs[r]},
            (ROGUES, "bcast"): None,
            (ROGUES, "bcast1"): foreign_node,
        }
        prefixes = {r: net.exec_prefix(r) for r in (*REGIONS, ROGUES)}
        async with RegionProcesses(tmp_path / "run", prefixes) as procs:
            for r, per_process in configs.items():
                await procs.add(r, per_process)
            await asyncio.gather(
                *(
                    wait_serving(address, 30, credentials[key])
                    for key, cfg in procs.configs.items()
                    for address in listen_addresses(cfg)
                )
            )

            # Viewers tap through every region's edge over TLS, presenting no certificate.
            truth: Counter[str] = Counter()
            clients = []
            for i, (r, p) in enumerate(plans.items()):
                c = ReactionClient([p.edge], viewer_id=f"viewer-{r}", credentials=viewer, batch_interval_s=0.05)
                await c.start()
                for emoji in ("fire", "heart")[: i + 1]:
                    c.tap(STREAM, emoji, n=3 + i)
                    truth[f"{STREAM}/{emoji}"] += 3 + i
                clients.append(c)
            for c in clients:
                await c.flush(timeout=20)
                await c.close()
            try:
                await wait_converged({r: p.broadcaster for r, p in plans.items()}, truth, within=60, credentials=viewer)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{logs(tmp_path / 'run')}") from exc

            # a dials both rogues and refuses them: the plaintext one answers without TLS, the other's certificate
            # is signed by a CA that a does not trust. The foreign node refuses a's certificate the same way.
            a_metrics = configs["a"]["main"]["metrics_listen"]
            foreign_metrics = configs[ROGUES]["bcast1"]["metrics_listen"]

            async def counted() -> tuple[Counter[str], Counter[str]]:
                at_a = await asyncio.to_thread(scrape_rejections, a_metrics)
                at_foreign = await asyncio.to_thread(scrape_rejections, foreign_metrics)
                assert at_a["plaintext_peer"] >= 1 and at_a["untrusted_certificate"] >= 1, at_a
                assert at_foreign["untrusted_certificate"] >= 1, at_foreign
                return at_a, at_foreign

            try:
                at_a, _ = await settled(counted, within=30)
            except AssertionError as exc:
                raise AssertionError(f"rejections {exc}\n{logs(tmp_path / 'run')}") from exc
            assert at_a["no_client_certificate"] == 0, at_a

            # a's peer port, from the root namespace: only a certificate of the mesh's CA gets through.
            with pytest.raises(grpc.aio.AioRpcError) as plaintext:
                await health(a_peer, None)
            assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as untrusted:
                await health(a_peer, foreign_node)
            assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE
            await health(a_peer, mesh_node)

            # Nothing crossed: the rogues hold no counts, and every region still holds exactly the truth.
            streams = [STREAM]
            assert await merged_totals(f"{hosts[ROGUES]}:{BASE}", streams) == Counter()
            assert await merged_totals(f"{hosts[ROGUES]}:{BASE + 10}", streams, credentials=foreign_node) == Counter()
            for p in plans.values():
                assert await merged_totals(p.broadcaster, streams, credentials=viewer) == truth

        # The same refusals in the logs: the dialler's line per refused peer (with its reason), and gRPC core's
        # failed handshakes, the only trace of what a's listeners refused (Python never sees those).
        a_log = (tmp_path / "run" / "a-main.log").read_text()
        foreign_log = (tmp_path / "run" / f"{ROGUES}-bcast1.log").read_text()
        assert f"refused peer {plain_peer} (plaintext_peer)" in a_log
        assert f"refused peer {foreign_peer} (untrusted_certificate)" in a_log
        assert f"refused peer {a_peer} (untrusted_certificate)" in foreign_log
        for error in ("WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED"):
            assert re.search(f"Handshake failed .*{error}", a_log), error


def logs(directory: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(directory.glob("*.log")))
