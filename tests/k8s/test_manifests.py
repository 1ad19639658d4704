"""The k8s/ manifests: every region overlay renders offline, is valid Kubernetes under the strict 1.33 schema, and
is wired consistently (peers, hash ring, probes, metrics ports, writable paths), read as a cluster would read it.

Skips (with the reason) only when kubectl or kubernetes-validate is not installed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reactmesh.region_node.config import ROLES, from_mapping
from tests.support.k8s import (
    K8S,
    REGIONS,
    SCHEMA_VERSION,
    Cluster,
    Container,
    overlay,
    render,
    render_regions,
    split_address,
)


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    return Cluster(d for docs in render_regions().values() for d in docs)


def namespace(region: str) -> str:
    return f"reactmesh-{region}"


def role(c: Container) -> str:
    target = c.target()
    assert target in ROLES, f"{c.name}: one role per pod, got --target={target}"
    return target


def listen_port(cluster: Cluster, c: Container) -> int:
    return split_address(cluster.config(c)[role(c)]["listen"])[1]


def peer_port(cluster: Cluster, c: Container) -> int:
    """The broadcaster's peer_listen port (Gossip only, mTLS only), distinct from its viewer-facing listen port."""
    port = split_address(cluster.config(c)["broadcaster"]["peer_listen"])[1]
    assert port != listen_port(cluster, c)
    return port


def containers_of(cluster: Cluster, region: str, target: str) -> list[Container]:
    out = [c for c in cluster.containers(namespace(region)) if role(c) == target]
    assert out, f"region {region} runs no {target}"
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_overlay_renders_offline_into_its_own_namespace(region: str) -> None:
    docs = render(overlay(region))
    kinds = Counter(d["kind"] for d in docs)
    assert kinds == {
        "Namespace": 1,
        "ConfigMap": 2,
        "Service": 4,
        "Deployment": 1,
        "StatefulSet": 2,
        "PodDisruptionBudget": 3,
    }
    for d in docs:
        if d["kind"] == "Namespace":
            assert d["metadata"]["name"] == namespace(region)
        else:
            assert d["metadata"]["namespace"] == namespace(region), d["metadata"]["name"]


def test_base_is_namespace_agnostic() -> None:
    docs = render(K8S / "base")
    assert docs
    pinned = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if "namespace" in d["metadata"]]
    assert pinned == []
    assert not any(d["kind"] == "Namespace" for d in docs)


@pytest.mark.parametrize("path", ["base", *(f"overlays/region-{r}" for r in REGIONS)])
def test_render_is_valid_under_the_strict_kubernetes_schema(path: str) -> None:
    kv: Any = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)"
    )
    errors = []
    for doc in render(K8S / path):
        try:
            kv.validate(doc, SCHEMA_VERSION, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert errors == []


@pytest.mark.parametrize("region", REGIONS)
def test_every_container_config_loads_with_the_pod_environment(cluster: Cluster, region: str) -> None:
    node_ids = set()
    for c in cluster.containers(namespace(region)):
        cfg = from_mapping(cluster.config(c), cluster.environment(c))
        cfg.require(frozenset({role(c)}))
        assert cfg.region == region
        if cfg.aggregator is not None:
            assert cfg.aggregator.config.node_id == f"{region}/{c.pod}", "the replica id is the pod name"
            node_ids.add(cfg.aggregator.config.node_id)
    assert len(node_ids) == 2


@pytest.mark.parametrize("region", REGIONS)
def test_each_broadcaster_peers_with_its_siblings_and_the_other_two_regions(cluster: Cluster, region: str) -> None:
    siblings = {c.pod for c in containers_of(cluster, region, "broadcaster")}
    assert len(siblings) == 2
    for c in containers_of(cluster, region, "broadcaster"):
        reached: dict[str, set[str]] = {}
        pods_here: set[str] = set()
        for peer in cluster.config(c)["broadcaster"]["peers"]:
            for ns, pod, port in cluster.resolve(peer, c.namespace):
                target = next(t for t in cluster.containers(ns) if t.pod == pod)
                assert role(target) == "broadcaster", f"{peer} reaches a {role(target)}"
                assert port == peer_port(cluster, target), f"{peer} reaches {port}, not the broadcaster's peer port"
                reached.setdefault(ns, set()).add(peer)
                if ns == c.namespace:
                    pods_here.add(pod)
        assert set(reached) == {namespace(r) for r in REGIONS}
        # Every broadcaster of its own region by pod name (itself included: the node skips its own name), so polls
        # agree within the region; one Service name per other region.
        assert pods_here == siblings
        assert all(len(peers) == 1 for ns, peers in reached.items() if ns != c.namespace), reached


@pytest.mark.parametrize("region", REGIONS)
def test_edge_ring_and_broadcaster_sources_name_every_aggregator_pod(cluster: Cluster, region: str) -> None:
    (agg,) = {id(c.workload): c for c in containers_of(cluster, region, "aggregator")}.values()
    sts = agg.workload
    assert sts["kind"] == "StatefulSet"
    service = cluster.get("Service", namespace(region), sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    port = listen_port(cluster, agg)
    expected = [f"{pod}.{service['metadata']['name']}:{port}" for pod in Cluster.pod_names(sts)]
    assert len(expected) == 2
    for c in containers_of(cluster, region, "edge"):
        assert cluster.config(c)["edge"]["aggregators"] == expected
    for c in containers_of(cluster, region, "broadcaster"):
        assert cluster.config(c)["broadcaster"]["sources"] == expected
    for address, pod in zip(expected, Cluster.pod_names(sts), strict=True):
        assert cluster.resolve(address, namespace(region)) == [(namespace(region), pod, port)]


def test_every_container_has_tcp_probes_on_its_tls_port_limits_and_a_locked_down_security_context(
    cluster: Cluster,
) -> None:
    for c in cluster.containers(deployment_replicas=1):
        where = f"{c.namespace}/{c.pod}/{c.name}"
        pod = c.pod_spec
        port = listen_port(cluster, c)
        # The serving port speaks only TLS, which the kubelet's gRPC probe cannot: a TCP probe on that port.
        probes = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c.spec]
        assert {"readinessProbe", "livenessProbe"} <= set(probes), where
        for probe in probes:
            assert "grpc" not in c.spec[probe], f"{where}: {probe}: a gRPC probe cannot do TLS"
            assert c.spec[probe]["tcpSocket"] == {"port": port}, f"{where}: {probe} must check the serving port"
        for kind in ("requests", "limits"):
            assert set(c.spec["resources"][kind]) >= {"cpu", "memory"}, f"{where}: resources.{kind}"
        sc, psc = c.spec["securityContext"], pod["securityContext"]
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
        assert sc.get("runAsUser", psc.get("runAsUser", 0)) != 0, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert "add" not in sc["capabilities"], where
        assert sc.get("seccompProfile", psc.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where


def test_every_path_a_process_writes_is_a_writable_volume(cluster: Cluster) -> None:
    for c in cluster.containers(deployment_replicas=1):
        mounts = dict(c.mounts())
        read_only = {m["mountPath"].rstrip("/") for m in c.spec["volumeMounts"] if m.get("readOnly")}
        assert "emptyDir" in mounts["/tmp"] and "/tmp" not in read_only
        config_dir = os.path.dirname(c.config_path())
        assert "configMap" in mounts[config_dir] and config_dir in read_only
        aggregator = cluster.config(c).get("aggregator")
        if aggregator is not None:
            data_dir = os.path.dirname(aggregator["db_path"])
            claim = mounts[data_dir]["persistentVolumeClaim"]
            assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], "one SQLite file per pod, never shared"
            assert data_dir not in read_only


def test_metrics_are_scraped_on_the_port_the_config_serves_them(cluster: Cluster) -> None:
    for c in cluster.containers(deployment_replicas=1):
        metrics = split_address(cluster.config(c)["metrics_listen"])[1]
        annotations = c.workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics)
        assert annotations["prometheus.io/path"] == "/metrics"
        assert c.ports.get(metrics) == "metrics"
        labels = c.workload["spec"]["template"]["metadata"]["labels"]
        services = [
            s
            for s in cluster.of_kind("Service", c.namespace)
            if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
            and "reactmesh/pod-names-only" not in s["metadata"]["labels"]
        ]
        assert services, f"{c.pod}: no Service selects it"
        for s in services:
            assert {"name": "metrics", "port": metrics, "targetPort": "metrics"} in s["spec"]["ports"]


def test_every_workload_has_a_disruption_budget_that_lets_one_pod_go(cluster: Cluster) -> None:
    for w in cluster.workloads():
        ns = Cluster.namespace_of(w)
        labels = w["spec"]["template"]["metadata"]["labels"]
        budgets = [
            b
            for b in cluster.of_kind("PodDisruptionBudget", ns)
            if all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items())
        ]
        assert len(budgets) == 1, f"{ns}/{w['metadata']['name']}: {len(budgets)} budgets"
        spec = budgets[0]["spec"]
        assert spec.get("maxUnavailable") == 1 and "minAvailable" not in spec
        assert w["spec"]["replicas"] >= 2, "a budget of one unavailable pod keeps the role serving only with two"


def test_servicemonitor_component_scrapes_every_service_metrics_port(tmp_path: Path) -> None:
    base = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "namespace: reactmesh-a\n"
        f"resources: [{base / 'overlays/region-a'}]\n"
        f"components: [{base / 'components/servicemonitor'}]\n"
    )
    docs = render(tmp_path)
    (monitor,) = (d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "reactmesh-a"
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "reactmesh/pod-names-only", "operator": "DoesNotExist"}
    ]
    services = [d for d in docs if d["kind"] == "Service" and "reactmesh/pod-names-only" not in d["metadata"]["labels"]]
    assert len(services) == 3
    for s in services:
        assert all(s["metadata"]["labels"].get(k) == v for k, v in selector.items()), s["metadata"]["name"]
        assert endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert not any(d["kind"] == "ServiceMonitor" for d in render(overlay("a"))), "the default render needs no CRD"


def test_client_facing_pods_require_tokens_with_keys_from_a_secret(cluster: Cluster) -> None:
    for c in cluster.containers():
        auth = from_mapping(cluster.config(c), cluster.environment(c)).auth
        if role(c) == "aggregator":
            continue  # serves nodes only; takes no client tokens
        assert auth.enabled, f"{c.namespace}/{c.pod}: auth is off"
        assert auth.jwks_file is not None
        secrets = [m for m, v in c.mounts() if auth.jwks_file.startswith(m + "/") and "secret" in v]
        assert secrets, f"{c.namespace}/{c.pod}: {auth.jwks_file} is not on a Secret volume"
        volume = dict(c.mounts())[secrets[0]]
        assert volume["secret"] == {"secretName": "reactmesh-auth", "optional": False}


TLS_SECRET = "reactmesh-tls"
TLS_KEYS = {"cert_file": "tls.crt", "key_file": "tls.key", "ca_file": "ca.crt"}


def test_every_role_serves_tls_and_requires_peer_certificates_from_the_mounted_secret(cluster: Cluster) -> None:
    for c in cluster.containers():
        where = f"{c.namespace}/{c.pod}/{c.name}"
        cfg = from_mapping(cluster.config(c), cluster.environment(c))
        assert cfg.tls is not None, f"{where}: no [tls] section: TLS must be on by default"
        assert cfg.tls.require_client_cert is True, f"{where}: node-to-node ports must require certificates"
        assert cfg.tls.server_name is None, f"{where}: dialled names are checked as written in the config"
        for field, key in TLS_KEYS.items():
            path = getattr(cfg.tls, field)
            mounts = [(m, v) for m, v in c.mounts() if path == f"{m}/{key}"]
            assert mounts, f"{where}: tls.{field} = {path} is not key {key} of a mounted volume"
            ((mount, volume),) = mounts
            assert volume.get("secret") == {"secretName": TLS_SECRET, "optional": False}, f"{where}: {volume}"
            read_only = {m["mountPath"].rstrip("/"): m.get("readOnly") for m in c.spec["volumeMounts"]}
            assert read_only[mount] is True, f"{where}: {mount} must be mounted read-only"


def test_broadcaster_peer_port_is_declared_and_reachable_through_its_services(cluster: Cluster) -> None:
    for region in REGIONS:
        for c in containers_of(cluster, region, "broadcaster"):
            port = peer_port(cluster, c)
            assert c.ports.get(port) == "peer", f"{c.pod}: peer port {port} is not a declared container port"
        for name in ("bcast", "bcast-peers"):
            service = cluster.get("Service", namespace(region), name)
            assert {"name": "peer", "port": 7301, "targetPort": "peer"} in service["spec"]["ports"], name


@pytest.mark.parametrize("region", REGIONS)
def test_rendered_overlay_is_secure_by_default_tls_and_auth_on(cluster: Cluster, region: str) -> None:
    """What the strict schema validation above validated is the secured render: TLS for every role, tokens on the
    client-facing ones, both from Secrets the pods cannot start without."""
    for c in cluster.containers(namespace(region)):
        cfg = from_mapping(cluster.config(c), cluster.environment(c))
        assert cfg.tls is not None
        secrets = {v["secret"]["secretName"] for _, v in c.mounts() if "secret" in v}
        if role(c) == "aggregator":
            assert secrets == {TLS_SECRET}
        else:
            assert cfg.auth.enabled
            assert secrets == {TLS_SECRET, "reactmesh-auth"}


def test_readme_certificate_command_names_every_host_the_configs_dial(cluster: Cluster) -> None:
    """k8s/README.md's `reactmesh certs` loop issues region r's certificate; every name a config dials must be in
    the certificate of the region it reaches, or that link fails its TLS handshake."""
    readme = (K8S / "README.md").read_text()
    (command,) = [block for block in readme.split("```") if "reactmesh certs --ca-dir" in block and "for r in" in block]
    names = command.split("reactmesh certs", 1)[1].split("kubectl", 1)[0].split()
    documented = {names[i + 1] for i, word in enumerate(names) if word == "--name"}
    for c in cluster.containers():
        cfg = cluster.config(c)
        dialled = [*cfg.get("edge", {}).get("aggregators", [])]
        dialled += [*cfg.get("broadcaster", {}).get("sources", []), *cfg.get("broadcaster", {}).get("peers", [])]
        for address in dialled:
            host = split_address(address)[0]
            for ns, _, _ in cluster.resolve(address, c.namespace):
                region = ns.removeprefix("reactmesh-")
                wanted = {n.replace("$r", region) for n in documented}
                assert host in wanted, f"{c.namespace}/{c.pod} dials {host}, not in region {region}'s certificate"
