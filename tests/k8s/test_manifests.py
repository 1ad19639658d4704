"""The k8s/ manifests: every region overlay renders offline, is valid Kubernetes under the strict 1.33 schema, and
is wired consistently (peers, hash ring, the gateway's upstreams, probes, metrics ports, writable paths), read as a
cluster would read it.

Skips (with the reason) only when kubectl or kubernetes-validate is not installed.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from reactmesh.edge.auth import Authorizer
from reactmesh.region_node.config import ROLES, from_mapping
from reactmesh.region_node.gateway.app import READY_TIMEOUT_S, Gateway
from reactmesh.region_node.gateway.config import GatewayConfig
from tests.support.k8s import (
    K8S,
    REGIONS,
    SCHEMA_VERSION,
    Cluster,
    Container,
    Doc,
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
        "Service": 5,
        "Deployment": 2,
        "StatefulSet": 2,
        "PodDisruptionBudget": 4,
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


async def gateway_routes() -> set[str]:
    """The HTTP paths the gateway's app serves (read from the app itself, not from the manifests)."""
    config = GatewayConfig(listen="127.0.0.1:0", edge="127.0.0.1:1", broadcaster="127.0.0.1:2")
    gateway = Gateway(config, Authorizer.disabled())
    await gateway.close()
    return {str(r.path) for r in gateway.app.routes if isinstance(r, Route)}


async def test_every_container_has_probes_on_its_serving_port_limits_and_a_locked_down_security_context(
    cluster: Cluster,
) -> None:
    served = await gateway_routes()
    for c in cluster.containers(deployment_replicas=1):
        where = f"{c.namespace}/{c.pod}/{c.name}"
        pod = c.pod_spec
        port = listen_port(cluster, c)
        probes = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if p in c.spec]
        assert {"readinessProbe", "livenessProbe"} <= set(probes), where
        for probe in probes:
            assert "grpc" not in c.spec[probe], f"{where}: {probe}: a gRPC probe cannot do TLS"
            if role(c) == "gateway":
                # Plain HTTP: the kubelet asks the gateway's own health routes on the serving port.
                get = c.spec[probe]["httpGet"]
                assert c.port_number(get["port"]) == port, f"{where}: {probe} must check the serving port"
                assert get.get("scheme", "HTTP") == "HTTP", f"{where}: the gateway serves plain HTTP"
                assert get["path"] in served, f"{where}: {probe} asks {get['path']}, which the gateway does not serve"
            else:
                # The serving port speaks only TLS, which the kubelet's gRPC probe cannot: a TCP probe on that port.
                assert c.spec[probe]["tcpSocket"] == {"port": port}, f"{where}: {probe} must check the serving port"
        if role(c) == "gateway":
            # Liveness never looks upstream (a broadcaster outage must not restart gateways); readiness does.
            assert c.spec["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert c.spec["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert c.spec["readinessProbe"]["timeoutSeconds"] > READY_TIMEOUT_S, f"{where}: /readyz needs its 1 s"
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


def render_with_component(tmp_path: Path, component: str) -> tuple[Doc, ...]:
    """Region a's overlay rendered with ``k8s/components/<component>`` added."""
    base = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "namespace: reactmesh-a\n"
        f"resources: [{base / 'overlays/region-a'}]\n"
        f"components: [{base / 'components' / component}]\n"
    )
    return render(tmp_path)


def test_servicemonitor_component_scrapes_every_service_metrics_port(tmp_path: Path) -> None:
    docs = render_with_component(tmp_path, "servicemonitor")
    (monitor,) = (d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "reactmesh-a"
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "reactmesh/pod-names-only", "operator": "DoesNotExist"}
    ]
    services = [d for d in docs if d["kind"] == "Service" and "reactmesh/pod-names-only" not in d["metadata"]["labels"]]
    assert {s["metadata"]["name"] for s in services} == {"edge", "agg", "bcast", "gateway"}
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
GATEWAY_TOKEN_SECRET = "reactmesh-gateway-token"


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
        elif role(c) == "gateway":
            assert cfg.auth.enabled
            assert secrets == {TLS_SECRET, "reactmesh-auth", GATEWAY_TOKEN_SECRET}
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
        dialled += [cfg[role(c)][k] for k in ("edge", "broadcaster") if role(c) == "gateway"]
        for address in dialled:
            host = split_address(address)[0]
            for ns, _, _ in cluster.resolve(address, c.namespace):
                region = ns.removeprefix("reactmesh-")
                wanted = {n.replace("$r", region) for n in documented}
                assert host in wanted, f"{c.namespace}/{c.pod} dials {host}, not in region {region}'s certificate"


@pytest.mark.parametrize("region", REGIONS)
def test_gateway_dials_its_own_regions_edge_and_broadcaster_services_over_tls(cluster: Cluster, region: str) -> None:
    """The gateway's upstreams are this region's edge Service and the broadcasters' viewer port (never the peer port,
    which would refuse it for its lack of a peer certificate), dialled over TLS against the mounted mesh CA."""
    for c in containers_of(cluster, region, "gateway"):
        cfg = from_mapping(cluster.config(c), cluster.environment(c))
        cfg.require(frozenset({"gateway"}))
        gateway = cfg.gateway
        assert gateway is not None
        # region_node.node dials the gateway's upstreams with the [tls] client (checking the servers against ca_file)
        # whenever the config has a [tls] section; without one they would be plaintext, which edge and bcast refuse.
        assert cfg.tls is not None and cfg.tls.ca_file is not None, f"{c.pod}: upstream calls would be plaintext"
        for address, target in ((gateway.edge, "edge"), (gateway.broadcaster, "broadcaster")):
            reached = cluster.resolve(address, c.namespace)
            assert reached, address
            for ns, pod, port in reached:
                assert ns == c.namespace, f"{address} leaves the region"
                upstream = next(t for t in cluster.containers(ns) if t.pod == pod)
                assert role(upstream) == target, f"gateway.{target} = {address} reaches a {role(upstream)}"
                assert port == listen_port(cluster, upstream), f"{address} is not the {target}'s viewer port"
            pods = {pod for _, pod, _ in reached}
            assert pods == {t.pod for t in containers_of(cluster, region, target)}, f"{address} misses pods"


def test_gateway_has_its_own_upstream_token_from_a_required_read_only_secret(cluster: Cluster) -> None:
    for c in cluster.containers():
        if role(c) != "gateway":
            continue
        where = f"{c.namespace}/{c.pod}"
        gateway = from_mapping(cluster.config(c), cluster.environment(c)).gateway
        assert gateway is not None and gateway.upstream_token_file is not None, f"{where}: no upstream token"
        mount, key = os.path.split(gateway.upstream_token_file)
        volume = dict(c.mounts()).get(mount)
        assert volume is not None, f"{where}: {gateway.upstream_token_file} is on no volume"
        assert volume.get("secret") == {"secretName": GATEWAY_TOKEN_SECRET, "optional": False}, f"{where}: {volume}"
        assert key == "token"
        read_only = {m["mountPath"].rstrip("/"): m.get("readOnly") for m in c.spec["volumeMounts"]}
        assert read_only[mount] is True, f"{where}: {mount} must be mounted read-only"


@pytest.mark.parametrize("region", REGIONS)
def test_every_client_facing_role_checks_tokens_with_the_same_auth_settings(cluster: Cluster, region: str) -> None:
    """The gateway checks viewers' tokens on its sockets itself: with other keys or claims than the edge's and the
    broadcaster's, a token would open a socket that its taps and reads could not use, or the reverse."""
    policies: dict[str, set[Any]] = {}
    for c in cluster.containers(namespace(region)):
        if role(c) != "aggregator":
            policies.setdefault(role(c), set()).add(from_mapping(cluster.config(c), cluster.environment(c)).auth)
    assert set(policies) == {"edge", "broadcaster", "gateway"}
    (policy,) = set().union(*policies.values())
    assert policy.enabled


def test_gateway_service_serves_http_and_metrics_on_the_ports_its_config_listens_on(cluster: Cluster) -> None:
    for region in REGIONS:
        ns = namespace(region)
        service = cluster.get("Service", ns, "gateway")
        (http,) = (p for p in service["spec"]["ports"] if p["name"] == "http")
        assert http["targetPort"] == "http"
        for c in containers_of(cluster, region, "gateway"):
            assert c.ports[listen_port(cluster, c)] == "http"
        reached = cluster.resolve(f"gateway:{http['port']}", ns)
        assert {pod for _, pod, _ in reached} == {c.pod for c in containers_of(cluster, region, "gateway")}
        for _, pod, port in reached:
            c = next(t for t in containers_of(cluster, region, "gateway") if t.pod == pod)
            assert port == listen_port(cluster, c)
        deployment = cluster.get("Deployment", ns, "gateway")
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 10
        (spread,) = pod["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_ingress_component_terminates_tls_in_front_of_the_gateway_http_port(tmp_path: Path) -> None:
    docs = render_with_component(tmp_path, "ingress")
    cluster = Cluster(docs)
    (ingress,) = cluster.of_kind("Ingress", "reactmesh-a")
    kv: Any = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    kv.validate(ingress, SCHEMA_VERSION, strict=True)
    spec = ingress["spec"]
    hosts = {r["host"] for r in spec["rules"]}
    assert hosts and hosts <= {h for t in spec["tls"] for h in t["hosts"]}, "every host is served over TLS"
    assert all(t["secretName"] != TLS_SECRET for t in spec["tls"]), "the public certificate, not the mesh's"
    backends = [p["backend"]["service"] for r in spec["rules"] for p in r["http"]["paths"]]
    assert backends
    for backend in backends:
        service = cluster.get("Service", "reactmesh-a", backend["name"])
        (port,) = (p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"])
        for _, pod, number in cluster.resolve(f"{backend['name']}:{port['port']}", "reactmesh-a"):
            c = next(t for t in cluster.containers("reactmesh-a") if t.pod == pod)
            assert role(c) == "gateway" and number == listen_port(cluster, c)
    assert not any(d["kind"] == "Ingress" for d in render(overlay("a"))), "the default render needs no controller"
