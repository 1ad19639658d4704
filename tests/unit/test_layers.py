"""The import-linter contracts of pyproject.toml hold for the code, and break when someone adds a backward import.

CI runs ``lint-imports`` itself; these tests check the contracts against the real import graph and against the
same graph with one forbidden import added, so a contract that could never fail would be caught here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.configuration import configure
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.contracts.protected import ProtectedContract
from importlinter.domain.contract import Contract

configure()

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
TYPES: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "forbidden": ForbiddenContract,
    "protected": ProtectedContract,
    "acyclic_siblings": AcyclicSiblingsContract,
}


def _contract(contract_id: str) -> Contract:
    for options in CONFIG["contracts"]:
        if options["id"] == contract_id:
            opts: dict[str, Any] = {k: v for k, v in options.items() if k not in ("id", "name", "type")}
            return TYPES[options["type"]](options["name"], {"root_packages": CONFIG["root_packages"]}, opts)
    raise KeyError(contract_id)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*CONFIG["root_packages"], cache_dir=None)


@pytest.mark.parametrize("contract_id", [c["id"] for c in CONFIG["contracts"]])
def test_every_contract_holds_for_the_code(graph: grimp.ImportGraph, contract_id: str) -> None:
    assert _contract(contract_id).check(graph, verbose=False).kept


@pytest.mark.parametrize(
    ("contract_id", "importer", "imported"),
    [
        ("layers", "reactmesh.merge.clock", "reactmesh.region_node.node"),
        ("layers", "reactmesh.edge.ring", "reactmesh.region_node.query"),
        ("layers", "reactmesh.region_node.node", "reactmesh.bench.run"),
        ("no-tests", "reactmesh.region_node.config", "tests.support.polling"),
        ("region-node-rooms", "reactmesh.region_node.aggregator.core", "reactmesh.region_node.node"),
        ("region-node-rooms", "reactmesh.region_node.aggregator.core", "reactmesh.region_node.broadcaster.core"),
        ("region-node-rooms", "reactmesh.region_node.history", "reactmesh.region_node.node"),
        ("region-node-rooms", "reactmesh.region_node.aggregator.store", "reactmesh.region_node.history"),
        ("devmesh", "reactmesh.region_node.broadcaster.core", "reactmesh.region_node.devmesh"),
        ("sdk", "reactmesh.edge.service", "reactmesh.edge.sdk.client"),
        ("sdk", "reactmesh.region_node.replication", "reactmesh.edge.sdk"),
        ("acyclic", "reactmesh.merge.codec", "reactmesh.merge.gossip"),
    ],
)
def test_a_backward_import_breaks_its_contract(
    graph: grimp.ImportGraph, contract_id: str, importer: str, imported: str
) -> None:
    assert {importer, imported} <= graph.modules
    assert not graph.direct_import_exists(importer=importer, imported=imported)
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    try:
        assert not _contract(contract_id).check(graph, verbose=False).kept
    finally:
        graph.remove_import(importer=importer, imported=imported)
