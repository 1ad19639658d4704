"""The SDK's send window (edge.sdk.window): AIMD on ack latency, one cut per round trip, small after a RETRY,
never below one batch; and a client whose acks slow down makes fewer, bigger batches and loses no tap."""

from __future__ import annotations

import pytest

from reactmesh.edge.sdk.batches import Ledger
from reactmesh.edge.sdk.config import ClientConfig
from reactmesh.edge.sdk.window import INITIAL_WINDOW, RETRY_WINDOW, SendWindow
from reactmesh.v1 import ingest_pb2


def test_a_new_window_starts_small_and_doubles_per_round_trip_until_acks_slow_down() -> None:
    w = SendWindow(64, target_s=0.25)
    assert w.batches == INITIAL_WINDOW
    for _ in range(4):  # one round trip of a full window: 4 -> 8
        w.on_ack(0.1, now=1.0, unacked=w.batches)
    assert w.batches == 8
    for _ in range(8):
        w.on_ack(0.1, now=1.1, unacked=w.batches)
    assert w.batches == 16
    w.on_ack(0.5, now=1.2, unacked=16)
    assert w.batches == 8
    w.on_ack(0.1, now=2.0, unacked=8)  # after the cut: congestion avoidance, 1/size per ack
    assert w.size == pytest.approx(8.125)


def test_slow_acks_halve_the_window_once_per_round_trip() -> None:
    w = SendWindow(64, target_s=0.25)
    w.size = 64.0
    w.on_ack(0.5, now=10.0, unacked=64)
    assert w.batches == 32
    w.on_ack(0.6, now=10.1, unacked=63)  # sent before the cut: the old queue, not a new signal
    assert w.batches == 32
    w.on_ack(0.5, now=10.6, unacked=40)  # a round trip later
    assert w.batches == 16
    for i in range(20):
        w.on_ack(9.0, now=20.0 + 10 * i, unacked=1)
    assert w.batches == 1 and w.cuts == 6  # 64 -> 1 in six halvings, then no more


def test_quick_acks_grow_a_full_window_by_one_per_round_trip_up_to_the_max() -> None:
    w = SendWindow(8, target_s=0.25)
    w.on_retry(now=0.0)  # leaves slow start
    w.size = 2.0
    w.on_ack(0.1, now=1.0, unacked=1)  # not full: no growth
    assert w.size == 2.0
    for _ in range(2):  # one window's worth of acks
        w.on_ack(0.1, now=1.0, unacked=2)
    assert w.batches == 2 and w.size == pytest.approx(2.9, abs=0.05)
    for _ in range(200):
        w.on_ack(0.1, now=2.0, unacked=w.batches)
    assert w.batches == 8


def test_a_retry_shrinks_the_window_and_counts_as_a_cut_for_the_round_trip() -> None:
    w = SendWindow(256, target_s=0.25)
    w.size = 256.0
    w.on_retry(now=5.0)
    assert w.batches == RETRY_WINDOW
    w.on_ack(0.4, now=5.1, unacked=4)  # the round trip of the retry itself
    assert w.batches == RETRY_WINDOW
    small = SendWindow(2, target_s=0.25)
    small.on_retry(now=0.0)
    assert small.batches == 2


def test_the_ledger_cuts_only_what_the_window_allows_and_coalesces_the_rest() -> None:
    ledger = Ledger(ClientConfig(edges=("e:1",), viewer_id="v"), b"s" * 16)
    for _ in range(5):
        ledger.add("live", "like", 1)
        assert ledger.cut(1_000, window=2) <= 1
    assert len(ledger.unacked) == 2  # two batches; the taps of the other three wait, merged
    assert ledger.pending_taps == 3
    ledger.settle(ingest_pb2.BatchAck(seq=1, outcome=ingest_pb2.BatchAck.ACCEPTED, accepted_taps=1), 1.0)
    assert ledger.cut(2_000, window=2) == 1
    assert list(ledger.unacked.values())[-1].taps == 3  # one bigger batch
    assert ledger.pending_taps == 0
