"""Reading the k8s/ manifests the way a cluster would, shared by the manifest tests.

``render`` runs ``kubectl kustomize`` (offline) on a kustomization and returns its documents. ``Cluster`` indexes
the renders of one or more overlays and answers what Kubernetes would: which pods a workload runs and under
which names, the environment and the mounted files a container sees, and which pod and container port a
"host:port" written in a config reaches through cluster DNS (search domains included) and Services.

Nothing here is specific to reactmesh's roles: the tests read every name, port and path from the manifests.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
REGIONS = ("a", "b", "c")
SCHEMA_VERSION = "1.33.0"
CLUSTER_DOMAIN = "cluster.local"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Doc = dict[str, Any]


def overlay(region: str) -> Path:
    return K8S / "overlays" / f"region-{region}"


def kubectl() -> str:
    """The kubectl binary, or skip the calling test."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: it renders the kustomizations (kubectl kustomize, offline)")
    return path


def yaml_module() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML (a dependency of kubernetes-validate) reads kubectl's output")


@functools.cache
def _render(path: str, binary: str) -> tuple[Doc, ...]:
    out = subprocess.run([binary, "kustomize", path], check=True, capture_output=True, text=True, timeout=60)
    return tuple(d for d in yaml_module().safe_load_all(out.stdout) if d)


def render(path: Path) -> tuple[Doc, ...]:
    """The documents ``kubectl kustomize path`` prints (cached per path)."""
    return _render(str(path), kubectl())


def render_regions() -> dict[str, tuple[Doc, ...]]:
    return {r: render(overlay(r)) for r in REGIONS}


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    assert sep and host and port.isdigit(), f"not host:port: {address!r}"
    return host, int(port)


@dataclass(frozen=True)
class Container:
    """One container of one pod, as the kubelet would start it."""

    pod: str
    namespace: str
    workload: Doc
    spec: Doc

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def pod_spec(self) -> Doc:
        return dict(self.workload["spec"]["template"]["spec"])

    @property
    def ports(self) -> dict[int, str]:
        """containerPort -> port name."""
        return {int(p["containerPort"]): str(p.get("name", "")) for p in self.spec.get("ports", [])}

    def port_number(self, port: int | str) -> int:
        """A probe's or Service's port, a number or the name of one of the container's ports."""
        if isinstance(port, int):
            return port
        named = {name: number for number, name in self.ports.items()}
        assert port in named, f"{self.name}: no container port named {port!r}"
        return named[port]

    def mounts(self) -> Iterator[tuple[str, Doc]]:
        """(mountPath, volume) for each volume mount; a volumeClaimTemplate counts as a volume."""
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes", [])}
        for claim in self.workload["spec"].get("volumeClaimTemplates", []):
            volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "persistentVolumeClaim": claim}
        for m in self.spec.get("volumeMounts", []):
            assert m["name"] in volumes, f"{self.name}: mount of undeclared volume {m['name']!r}"
            yield str(m["mountPath"]).rstrip("/"), volumes[m["name"]]

    def config_path(self) -> str:
        """The path given to --config (in args or command), else REACTMESH_CONFIG."""
        argv = [*self.spec.get("command", []), *self.spec.get("args", [])]
        for i, arg in enumerate(argv):
            if arg.startswith("--config="):
                return str(arg.split("=", 1)[1])
            if arg == "--config":
                return str(argv[i + 1])
        env = {e["name"]: e.get("value") for e in self.spec.get("env", [])}
        assert env.get("REACTMESH_CONFIG"), f"{self.name}: no --config and no REACTMESH_CONFIG"
        return str(env["REACTMESH_CONFIG"])

    def target(self) -> str:
        argv = [*self.spec.get("command", []), *self.spec.get("args", [])]
        for i, arg in enumerate(argv):
            if arg.startswith("--target="):
                return str(arg.split("=", 1)[1])
            if arg == "--target":
                return str(argv[i + 1])
        env = {e["name"]: e.get("value") for e in self.spec.get("env", [])}
        return str(env.get("REACTMESH_TARGET", "all"))


class Cluster:
    """The objects of one or more renders, keyed by (kind, namespace, name)."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        self.objects: dict[tuple[str, str, str], Doc] = {}
        for d in docs:
            meta = d["metadata"]
            key = (str(d["kind"]), str(meta.get("namespace", "default")), str(meta["name"]))
            assert key not in self.objects, f"rendered twice: {key}"
            self.objects[key] = d

    def of_kind(self, kind: str, namespace: str | None = None) -> list[Doc]:
        return [d for (k, ns, _), d in self.objects.items() if k == kind and namespace in (None, ns)]

    def get(self, kind: str, namespace: str, name: str) -> Doc:
        key = (kind, namespace, name)
        assert key in self.objects, f"no {kind} {namespace}/{name} in the render"
        return self.objects[key]

    def workloads(self, namespace: str | None = None) -> list[Doc]:
        return [d for k in WORKLOAD_KINDS for d in self.of_kind(k, namespace)]

    @staticmethod
    def namespace_of(doc: Doc) -> str:
        return str(doc["metadata"].get("namespace", "default"))

    @staticmethod
    def pod_names(workload: Doc, limit: int | None = None) -> list[str]:
        """StatefulSet pods are <name>-<ordinal>; a Deployment's get a stand-in <name>-pod<i>."""
        name = workload["metadata"]["name"]
        replicas = int(workload["spec"].get("replicas", 1))
        n = replicas if limit is None else min(limit, replicas)
        if workload["kind"] == "StatefulSet":
            return [f"{name}-{i}" for i in range(n)]
        return [f"{name}-pod{i}" for i in range(n)]

    def containers(self, namespace: str | None = None, deployment_replicas: int | None = None) -> list[Container]:
        """Every container of every pod (a Deployment contributes at most ``deployment_replicas`` pods)."""
        out = []
        for w in self.workloads(namespace):
            limit = deployment_replicas if w["kind"] == "Deployment" else None
            for pod in self.pod_names(w, limit):
                for c in w["spec"]["template"]["spec"]["containers"]:
                    out.append(Container(pod, self.namespace_of(w), w, c))
        return out

    def config_map(self, namespace: str, name: str) -> Mapping[str, str]:
        return dict(self.get("ConfigMap", namespace, name).get("data", {}))

    def environment(self, c: Container) -> dict[str, str]:
        """The container's environment as the kubelet builds it (the subset of sources the manifests use)."""
        env: dict[str, str] = {}
        for src in c.spec.get("envFrom", []):
            assert set(src) == {"configMapRef"}, f"{c.name}: unsupported envFrom {src}"
            env.update(self.config_map(c.namespace, src["configMapRef"]["name"]))
        for e in c.spec.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            source = e["valueFrom"]
            if "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                values = {"metadata.name": c.pod, "metadata.namespace": c.namespace}
                assert field in values, f"{c.name}: unsupported fieldRef {field}"
                env[e["name"]] = values[field]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[e["name"]] = self.config_map(c.namespace, ref["name"])[ref["key"]]
            else:
                raise AssertionError(f"{c.name}: unsupported env source {source}")
        return env

    def file(self, c: Container, path: str) -> str:
        """The text of a file the container reads from a ConfigMap volume."""
        for mount, volume in c.mounts():
            if path.startswith(mount + "/") and "configMap" in volume:
                key = path[len(mount) + 1 :]
                data = self.config_map(c.namespace, volume["configMap"]["name"])
                assert key in data, f"{c.name}: {path} is not a key of ConfigMap {volume['configMap']['name']}"
                return data[key]
        raise AssertionError(f"{c.name}: {path} is not on a ConfigMap volume")

    def config(self, c: Container) -> dict[str, Any]:
        """The container's TOML config, parsed (``${VAR}`` not yet expanded)."""
        return tomllib.loads(self.file(c, c.config_path()))

    def selected_pods(self, namespace: str, selector: Mapping[str, str]) -> list[tuple[Doc, str]]:
        out: list[tuple[Doc, str]] = []
        for w in self.workloads(namespace):
            labels = w["spec"]["template"]["metadata"].get("labels", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.extend((w, pod) for pod in self.pod_names(w))
        return out

    def resolve(self, address: str, from_namespace: str) -> list[tuple[str, str, int]]:
        """(namespace, pod, containerPort) that ``address`` reaches from a pod in ``from_namespace``.

        Names resolve as in a pod: <svc>, <svc>.<ns>, <pod>.<svc>, <pod>.<svc>.<ns>, each optionally followed
        by .svc[.cluster.local]; relative names try <from_namespace>.svc.cluster.local first (the search list).
        A ClusterIP Service maps its port to the target port; a pod's own name under a headless Service (the
        StatefulSet's serviceName) reaches that pod's container port directly.
        """
        host, port = split_address(address)
        labels = host.split(".")
        absolute = False
        for suffix in (["svc", *CLUSTER_DOMAIN.split(".")], ["svc"]):
            if labels[-len(suffix) :] == suffix:
                labels, absolute = labels[: -len(suffix)], True
                break
        candidates: list[tuple[str | None, str, str]] = []  # (pod, service, namespace)
        if not absolute:
            if len(labels) == 1:
                candidates.append((None, labels[0], from_namespace))
            elif len(labels) == 2:
                candidates.append((labels[0], labels[1], from_namespace))
        if len(labels) == 2:
            candidates.append((None, labels[0], labels[1]))
        elif len(labels) == 3:
            candidates.append((labels[0], labels[1], labels[2]))
        for pod, service, ns in candidates:
            svc = self.objects.get(("Service", ns, service))
            if svc is None:
                continue
            spec = svc["spec"]
            if pod is None:
                ports = [p for p in spec["ports"] if int(p["port"]) == port]
                assert ports, f"{address}: Service {ns}/{service} has no port {port}"
                target = ports[0].get("targetPort", port)
                out = []
                for w, name in self.selected_pods(ns, spec.get("selector", {})):
                    for c in w["spec"]["template"]["spec"]["containers"]:
                        named = {str(p.get("name")): int(p["containerPort"]) for p in c.get("ports", [])}
                        number = named.get(target) if isinstance(target, str) else int(target)
                        if number is not None and number in {int(p["containerPort"]) for p in c.get("ports", [])}:
                            out.append((ns, name, number))
                assert out, f"{address}: Service {ns}/{service} port {port} reaches no container port"
                return out
            if spec.get("clusterIP") != "None":
                continue  # only a headless Service publishes pod names
            for w, name in self.selected_pods(ns, spec.get("selector", {})):
                if name == pod and w["kind"] == "StatefulSet" and w["spec"]["serviceName"] == service:
                    declared = {
                        int(p["containerPort"]) for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]
                    }
                    assert port in declared, f"{address}: pod {ns}/{pod} declares no container port {port}"
                    return [(ns, name, port)]
        raise AssertionError(f"{address} (from namespace {from_namespace}) resolves to no pod")
