"""Benchmark config overrides: layers merge field by field, nested tables included."""

from __future__ import annotations

from reactmesh.bench.common import EDGE_OVERRIDES, merge_overrides


def test_a_nested_table_is_merged_not_replaced() -> None:
    scenario = merge_overrides(EDGE_OVERRIDES, {"edge": {"shedding": {"enabled": False}}})
    merged = merge_overrides(scenario, {"edge": {"shedding": {"retry_after_max_ms": 500}}, "aggregator": {"x": 1}})
    assert merged["edge"]["shedding"] == {"enabled": False, "retry_after_max_ms": 500}
    assert merged["edge"]["rate_per_s"] == EDGE_OVERRIDES["edge"]["rate_per_s"]
    assert merged["aggregator"] == {"x": 1}
    assert "shedding" not in EDGE_OVERRIDES["edge"]  # the layers themselves are left as they were


def test_a_later_scalar_replaces_an_earlier_one() -> None:
    assert merge_overrides({"edge": {"burst": 1}}, None, {"edge": {"burst": 2}}) == {"edge": {"burst": 2}}
