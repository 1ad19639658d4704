"""Every role's server answers grpc.health.v1 and server reflection (so grpcurl works)."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from reactmesh.region_node.devmesh import InProcessMesh

EXPECTED = {
    "edge": {"reactmesh.v1.Ingest"},
    "aggregator": {"reactmesh.v1.Aggregator", "reactmesh.v1.Gossip"},
    "broadcaster": {"reactmesh.v1.Broadcast", "reactmesh.v1.Query", "reactmesh.v1.Gossip"},
}


async def list_services(address: str) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names: set[str] = set()
        async for reply in call:
            names.update(s.name for s in reply.list_services_response.service)
        return names


async def test_every_role_serves_health_and_reflection(tmp_path: Path) -> None:
    async with InProcessMesh(tmp_path) as mesh:
        node = mesh.nodes[("a", "main")]
        for role, services in EXPECTED.items():
            address = node.addresses[role]
            listed = await list_services(address)
            assert services | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed
            async with grpc.aio.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", *services):
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING, (role, service)
