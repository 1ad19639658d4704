"""Every reject reason the validator owns, the order rules are checked in, and EdgeConfig's own checks."""

from __future__ import annotations

import pytest

from reactmesh.edge.config import EdgeConfig
from reactmesh.edge.errors import ConfigError
from reactmesh.edge.validation import Validator, validate
from reactmesh.v1 import common_pb2, ingest_pb2

Ack = ingest_pb2.BatchAck
CONFIG = EdgeConfig(region="eu", aggregators=("127.0.0.1:7100",), max_count_per_entry=1000)
VALIDATOR = Validator.from_config(CONFIG)


def make(
    *,
    session_id: bytes = b"s" * 16,
    viewer_id: str = "viewer-1",
    seq: int = 1,
    stream_id: str = "cup-final.2026:1_a-b",
    counts: list[tuple[str, int]] | None = None,
) -> ingest_pb2.ClientBatch:
    pairs = [("like", 3), ("fire", 1000)] if counts is None else counts
    return ingest_pb2.ClientBatch(
        session_id=session_id,
        viewer_id=viewer_id,
        seq=seq,
        stream_id=stream_id,
        counts=[common_pb2.ReactionCount(emoji=e, count=n) for e, n in pairs],
    )


def test_valid_batch_passes() -> None:
    assert VALIDATOR.check(make()) is None
    assert validate(make(), CONFIG) is None
    assert VALIDATOR.check(make(viewer_id="v" * 128, stream_id="s" * 128)) is None
    assert VALIDATOR.check(make(counts=[(e, 1) for e in CONFIG.reactions])) is None


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        (make(session_id=b""), Ack.BAD_SESSION_ID),
        (make(session_id=b"s" * 15), Ack.BAD_SESSION_ID),
        (make(session_id=b"s" * 17), Ack.BAD_SESSION_ID),
        (make(viewer_id=""), Ack.BAD_VIEWER_ID),
        (make(viewer_id="v" * 129), Ack.BAD_VIEWER_ID),
        (make(seq=0), Ack.BAD_SEQ),
        (make(stream_id=""), Ack.BAD_STREAM_ID),
        (make(stream_id="s" * 129), Ack.BAD_STREAM_ID),
        (make(stream_id="has space"), Ack.BAD_STREAM_ID),
        (make(stream_id="slash/no"), Ack.BAD_STREAM_ID),
        (make(stream_id="ünïcode"), Ack.BAD_STREAM_ID),
        (make(stream_id="trailing-newline\n"), Ack.BAD_STREAM_ID),
        (make(counts=[]), Ack.EMPTY_BATCH),
        (make(counts=[("like", 1)] * 17), Ack.TOO_MANY_ENTRIES),
        (make(counts=[("thumbs_down", 1)]), Ack.UNKNOWN_EMOJI),
        (make(counts=[("", 1)]), Ack.UNKNOWN_EMOJI),
        (make(counts=[("like", 1), ("like", 2)]), Ack.DUPLICATE_EMOJI),
        (make(counts=[("like", 0)]), Ack.BAD_COUNT),
        (make(counts=[("like", 1001)]), Ack.BAD_COUNT),
        (make(counts=[("heart", 1), ("like", 2**64 - 1)]), Ack.BAD_COUNT),
    ],
)
def test_each_invalid_field_is_rejected_with_its_reason(batch: ingest_pb2.ClientBatch, reason: int) -> None:
    rejection = VALIDATOR.check(batch)
    assert rejection is not None
    assert rejection[0] == reason, rejection
    assert rejection[1]


def test_first_failing_rule_decides_the_reason() -> None:
    both = make(session_id=b"", seq=0, counts=[])
    assert VALIDATOR.check(both) is not None
    assert VALIDATOR.check(both)[0] == Ack.BAD_SESSION_ID  # type: ignore[index]
    assert VALIDATOR.check(make(seq=0, counts=[]))[0] == Ack.BAD_SEQ  # type: ignore[index]


def test_deployment_caps_apply() -> None:
    small = Validator(("like",), max_count_per_entry=5, max_entries_per_batch=1)
    assert small.check(make(counts=[("like", 5)])) is None
    assert small.check(make(counts=[("like", 6)]))[0] == Ack.BAD_COUNT  # type: ignore[index]
    assert small.check(make(counts=[("heart", 1)]))[0] == Ack.UNKNOWN_EMOJI  # type: ignore[index]
    assert small.check(make(counts=[("like", 1), ("heart", 1)]))[0] == Ack.TOO_MANY_ENTRIES  # type: ignore[index]


def test_config_defaults_are_valid_and_from_mapping_builds_tuples() -> None:
    config = EdgeConfig.from_mapping(
        {"region": "eu-west", "aggregators": ["agg-0:7100", "[::1]:7101"], "reactions": ["like", "clap"]}
    )
    assert config.aggregators == ("agg-0:7100", "[::1]:7101")
    assert config.reactions == ("like", "clap")
    assert config.max_entries_per_edge_batch <= 4096


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"region": ""}, "region"),
        ({"aggregators": ()}, "aggregators"),
        ({"aggregators": ("no-port",)}, "aggregators"),
        ({"aggregators": ("host:0",)}, "aggregators"),
        ({"aggregators": ("a:1", "a:1")}, "aggregators"),
        ({"aggregators": ["a:1"]}, "aggregators"),
        ({"reactions": ("Like",)}, "reactions"),
        ({"reactions": ("like", "like")}, "reactions"),
        ({"max_count_per_entry": 0}, "max_count_per_entry"),
        ({"max_entries_per_batch": 17}, "max_entries_per_batch"),
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": float("nan")}, "rate_per_s"),
        ({"burst": True}, "burst"),
        ({"flush_interval_ms": -1}, "flush_interval_ms"),
        ({"max_entries_per_edge_batch": 4097}, "max_entries_per_edge_batch"),
        ({"max_inflight_entries": 0}, "max_inflight_entries"),
        ({"max_viewers_tracked": 0}, "max_viewers_tracked"),
        ({"retry_after_ms": 0}, "retry_after_ms"),
        ({"reconnect_backoff_max_ms": 1, "reconnect_backoff_ms": 10}, "reconnect_backoff_max_ms"),
    ],
)
def test_bad_config_value_names_its_field(changes: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"region": "eu", "aggregators": ("a:1",)}
    values.update(changes)
    with pytest.raises(ConfigError) as info:
        EdgeConfig(**values)  # type: ignore[arg-type]
    assert info.value.field == field


def test_from_mapping_rejects_unknown_and_missing_keys() -> None:
    with pytest.raises(ConfigError) as info:
        EdgeConfig.from_mapping({"region": "eu", "aggregators": ["a:1"], "burts": 5})
    assert info.value.field == "burts"
    with pytest.raises(ConfigError) as info:
        EdgeConfig.from_mapping({"region": "eu"})
    assert info.value.field == "aggregators"
