"""merge/ is a library below the application: it imports nothing of edge/, region_node/ or bench/, and
no code in it names a region collection or role (as a string such as "totals" or a constant such as
TOTALS; prose in docstrings and messages aside): region_node/state.py injects them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from reactmesh.region_node.config import ROLES
from reactmesh.region_node.state import COLLECTIONS, POLLS

MERGE = Path(__file__).resolve().parents[2] / "merge"
SOURCES = sorted(MERGE.glob("*.py"))
APPLICATION_NAMES = {*COLLECTIONS, POLLS, *ROLES}
CONSTANTS = {name.upper() for name in (*COLLECTIONS, POLLS)}
ALLOWED_FIRST_PARTY = ("reactmesh.merge", "reactmesh.v1")


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function, or a string after an assignment)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt in body:
            value = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out.add(id(value))
    return out


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_merge_imports_only_itself_the_stubs_and_third_party_libraries(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("reactmesh"):
                assert name.startswith(ALLOWED_FIRST_PARTY), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_no_code_in_merge_names_a_region_collection_or_role(path: Path) -> None:
    tree = ast.parse(path.read_text())
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            assert node.value not in APPLICATION_NAMES, f"{path.name}:{node.lineno} names {node.value!r}"
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            assert name not in CONSTANTS, f"{path.name}:{node.lineno} uses the constant {name}"
