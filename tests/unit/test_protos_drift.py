"""The committed stubs are exactly what protos/generate.py makes from the .proto files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reactmesh_protos_generate", ROOT / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_proto_files() -> None:
    pytest.importorskip("grpc_tools")
    generator = _load_generator()
    assert generator.check() == []


def test_drift_check_notices_an_edited_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("grpc_tools")
    generator = _load_generator()
    fake_root = tmp_path / "protos"
    (fake_root / "reactmesh").mkdir(parents=True)
    import shutil

    shutil.copytree(ROOT / "protos" / "reactmesh" / "v1", fake_root / "reactmesh" / "v1")
    stub = fake_root / "reactmesh" / "v1" / "ingest_pb2.py"
    stub.write_text(stub.read_text() + "\n# hand edit\n")
    monkeypatch.setattr(generator, "ROOT", fake_root)
    monkeypatch.setattr(generator, "PACKAGE", fake_root / "reactmesh" / "v1")
    assert generator.check() == ["ingest_pb2.py"]


def test_every_service_of_the_contract_has_a_stub() -> None:
    from reactmesh.v1 import (
        admin_pb2_grpc,
        aggregator_pb2_grpc,
        broadcast_pb2_grpc,
        gossip_pb2_grpc,
        ingest_pb2_grpc,
        polls_pb2_grpc,
        query_pb2_grpc,
    )

    stubs = [
        ingest_pb2_grpc.IngestStub,
        aggregator_pb2_grpc.AggregatorStub,
        gossip_pb2_grpc.GossipStub,
        broadcast_pb2_grpc.BroadcastStub,
        query_pb2_grpc.QueryStub,
        polls_pb2_grpc.PollsStub,
        admin_pb2_grpc.AdminStub,
    ]
    assert all(callable(s) for s in stubs)
