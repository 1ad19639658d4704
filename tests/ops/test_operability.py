"""Operability on real servers and processes: per-method gRPC server metrics by status, region-labelled process
metrics, reactmesh_build_info, and JSON log lines carrying region, role and node."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest

from reactmesh.region_node.devmesh import free_port_block, to_toml
from reactmesh.v1 import query_pb2, query_pb2_grpc
from tests.support.metered import metered_region, scrape, value


async def test_grpc_calls_are_counted_by_method_and_status_and_process_series_carry_the_region(
    tmp_path: Path,
) -> None:
    async with metered_region(tmp_path) as region:
        async with grpc.aio.insecure_channel(region.broadcaster) as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id="ok-stream"), timeout=5)
            await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id="ok-stream"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id="bad stream id!"), timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        samples = await scrape(region.front.addresses["metrics"])
        where = {"region": "a", "role": "broadcaster", "service": "reactmesh.v1.Query", "method": "GetTotals"}
        assert value(samples, "reactmesh_grpc_server_started_total", **where) == 3
        assert value(samples, "reactmesh_grpc_server_handled_total", code="OK", **where) == 2
        assert value(samples, "reactmesh_grpc_server_handled_total", code="INVALID_ARGUMENT", **where) == 1
        assert value(samples, "reactmesh_grpc_server_handling_seconds_count", **where) == 3
        # The broadcaster's gossip session to the aggregator is a stream call on the aggregator's server.
        agg = await scrape(region.aggregator.addresses["metrics"])
        gossip = {"role": "aggregator", "service": "reactmesh.v1.Gossip", "method": "Exchange"}
        assert value(agg, "reactmesh_grpc_server_started_total", **gossip) >= 1
        rss = [s for s in samples if s.name == "process_resident_memory_bytes"]
        assert rss and all(s.labels.get("region") == "a" for s in rss)
        assert all(s.labels.get("region") == "a" for s in samples if s.name.startswith(("python_", "process_")))
        (info_sample,) = [s for s in samples if s.name == "reactmesh_build_info"]
        assert info_sample.value == 1 and info_sample.labels["region"] == "a"
        assert {"version", "python", "grpc", "protobuf"} <= set(info_sample.labels)


async def test_serve_logs_one_json_object_per_line_with_region_role_and_node(tmp_path: Path) -> None:
    port = free_port_block(2)
    config = tmp_path / "agg.toml"
    config.write_text(
        to_toml(
            {
                "region": "a",
                "aggregator": {
                    "listen": f"127.0.0.1:{port}",
                    "node_id": "a/agg-7",
                    "db_path": str(tmp_path / "agg.db"),
                },
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reactmesh.region_node.cli",
        "--log-format",
        "json",
        "--log-level",
        "INFO",
        "serve",
        "--target",
        "aggregator",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        lines: list[dict[str, str]] = []
        while not any("serving on" in line["msg"] for line in lines):
            raw = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert raw, f"serve ended before serving; got {lines}"
            if raw.strip().startswith(b"{"):
                lines.append(json.loads(raw))
        serving = next(line for line in lines if "serving on" in line["msg"])
        assert serving["region"] == "a" and serving["role"] == "aggregator" and serving["node"] == "a/agg-7"
        assert list(serving)[:4] == ["ts", "level", "logger", "msg"] and serving["level"] == "INFO"
        assert serving["ts"].endswith("Z")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def test_a_bad_log_format_is_a_usage_error() -> None:
    from reactmesh.region_node.cli.main import build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--log-format", "yaml", "serve", "--config", "x"])
    assert info.value.code == 2
