"""edge.limits: each wire rule accepts exactly its form, and the one region rule admits every region the
repository deploys or tests with, in every component that checks region names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reactmesh.edge import limits
from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.errors import ConfigError
from reactmesh.region_node.aggregator.config import AggregatorConfig

REPO = Path(__file__).resolve().parents[2]
REGIONS_IN_TESTS = ("a", "b", "c", "eu", "eu-west", "test", "x")


def deployed_regions() -> set[str]:
    """Every ``region=<name>`` literal of the k8s/ kustomizations."""
    found: set[str] = set()
    for path in (REPO / "k8s").rglob("kustomization.yaml"):
        found.update(re.findall(r"^\s*-\s*region=(\S+)\s*$", path.read_text(), flags=re.MULTILINE))
    return found


def test_k8s_names_the_regions_this_test_expects() -> None:
    assert deployed_regions() == {"local", "a", "b", "c"}


@pytest.mark.parametrize("region", sorted({*REGIONS_IN_TESTS, "local"}))
def test_every_region_in_the_repository_is_valid_for_the_edge_and_the_aggregator(region: str, tmp_path: Path) -> None:
    assert limits.is_region(region)
    assert EdgeConfig(region=region, aggregators=("127.0.0.1:7100",)).region == region
    agg = AggregatorConfig(node_id=f"{region}/agg-0", region=region, db_path=str(tmp_path / "agg.db"))
    assert agg.region == region


@pytest.mark.parametrize("region", ["", "A", "eu.west", "eu_west", "-a", "a" * 33, "é", "a b"])
def test_region_rule_rejects_names_outside_its_form_in_the_edge_config(region: str) -> None:
    assert not limits.is_region(region)
    with pytest.raises(ConfigError) as info:
        EdgeConfig(region=region, aggregators=("127.0.0.1:7100",))
    assert info.value.field == "region"
    assert info.value.expected == limits.REGION_FORM


def test_region_rule_accepts_its_longest_name() -> None:
    assert limits.is_region("a" * 32)
    assert limits.is_region("0-" + "a" * 30)


@pytest.mark.parametrize(
    ("check", "longest", "alphabet", "bad"),
    [
        (limits.is_stream_id, limits.MAX_STREAM_ID_CHARS, "Az09._:-", ["", "a b", "a/b", "é"]),
        (limits.is_emoji, limits.MAX_EMOJI_CHARS, "az09_", ["", "Like", "a-b", "a:b"]),
        (limits.is_poll_id, limits.MAX_POLL_ID_CHARS, "Az09._:-", ["", "a b", "a/b"]),
    ],
)
def test_name_rules_take_their_alphabet_up_to_their_length_and_nothing_else(
    check: object, longest: int, alphabet: str, bad: list[str]
) -> None:
    assert callable(check)
    assert check(alphabet)
    assert check((alphabet * longest)[:longest])
    assert not check((alphabet * longest)[: longest + 1] + "a")
    for value in (*bad, None, 7, b"abc"):
        assert not check(value), value


def test_patterns_and_forms_agree_on_the_lengths() -> None:
    assert limits.STREAM_ID_RE.fullmatch("s" * 128) and not limits.STREAM_ID_RE.fullmatch("s" * 129)
    assert limits.EMOJI_RE.fullmatch("e" * 32) and not limits.EMOJI_RE.fullmatch("e" * 33)
    assert limits.POLL_ID_RE.fullmatch("p" * 64) and not limits.POLL_ID_RE.fullmatch("p" * 65)
    assert "1..128" in limits.STREAM_ID_FORM and "1..32" in limits.EMOJI_FORM and "1..64" in limits.POLL_ID_FORM


def test_viewer_id_is_any_string_of_1_to_128_chars() -> None:
    assert limits.is_viewer_id("v") and limits.is_viewer_id("é" * 128)
    assert not limits.is_viewer_id("") and not limits.is_viewer_id("v" * 129) and not limits.is_viewer_id(None)


def test_node_name_starts_with_a_letter_or_digit() -> None:
    assert limits.is_node_name("agg-0") and limits.is_node_name("A" * 63) and limits.is_node_name("b.cast_0")
    assert not limits.is_node_name("-agg") and not limits.is_node_name(".a") and not limits.is_node_name("A" * 64)
    assert not limits.is_node_name("a/b") and not limits.is_node_name("")


def test_edge_config_caps_come_from_the_limits() -> None:
    config = EdgeConfig(region="a", aggregators=("127.0.0.1:7100",))
    assert config.max_entries_per_batch == limits.MAX_ENTRIES_PER_BATCH == 16
    assert config.max_count_per_entry == limits.DEFAULT_MAX_COUNT_PER_ENTRY
    assert config.max_entries_per_edge_batch <= limits.MAX_ENTRIES_PER_EDGE_BATCH == 4096
    EdgeConfig(region="a", aggregators=("a:1",), max_count_per_entry=limits.MAX_COUNT_PER_ENTRY)
    with pytest.raises(ConfigError):
        EdgeConfig(region="a", aggregators=("a:1",), max_count_per_entry=limits.MAX_COUNT_PER_ENTRY + 1)
