"""The Query service over real gRPC on loopback, reading a ReplicaState fed with KeyedGCounter deltas
through the codec: exact totals, per-second history in steps, filters, bad inputs, and an index that
answers without scanning the state's keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest

from reactmesh.merge.clock import FakeClock
from reactmesh.merge.keyed import KeyedGCounter
from reactmesh.region_node.query import QueryServicer
from reactmesh.region_node.state import TOTALS, WINDOWS, RegionState
from reactmesh.v1 import query_pb2, query_pb2_grpc

T0 = 1_700_000_000  # a Unix second


class Aggregator:
    """Commits taps the way an aggregator does: totals and per-second windows, merged through the codec."""

    def __init__(self, state: RegionState, replica: str) -> None:
        self.state = state
        self.replica = replica
        self.totals = KeyedGCounter()
        self.windows = KeyedGCounter()

    def commit(self, stream: str, second: int, counts: Mapping[str, int]) -> None:
        totals, windows = KeyedGCounter(), KeyedGCounter()
        for emoji, n in counts.items():
            totals.merge(self.totals.increment((stream, emoji), self.replica, n))
            windows.merge(self.windows.increment((stream, emoji, second), self.replica, n))
        self.state.merge_part(TOTALS, totals.encode())
        self.state.merge_part(WINDOWS, windows.encode())


class ScanCounting(KeyedGCounter):
    """A KeyedGCounter that counts full scans of its keys."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    def keys(self) -> Any:
        self.scans += 1
        return super().keys()

    def items(self) -> Any:
        self.scans += 1
        return super().items()


@pytest.fixture
async def query() -> AsyncIterator[tuple[Any, RegionState, QueryServicer]]:
    state = RegionState()
    clock = FakeClock()
    servicer = QueryServicer(state, clock)
    server = grpc.aio.server()
    servicer.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield query_pb2_grpc.QueryStub(channel), state, servicer
    await channel.close()
    await server.stop(None)


def series(response: query_pb2.GetHistoryResponse) -> dict[str, list[tuple[int, int]]]:
    return {s.emoji: [(p.start_s, p.count) for p in s.points] for s in response.series}


async def test_totals_are_the_exact_sums_merged_from_every_replica(query: Any) -> None:
    stub, state, _ = query
    a, b = Aggregator(state, "a/agg-0~1"), Aggregator(state, "b/agg-0~1")
    a.commit("match", T0, {"like": 10, "heart": 2})
    b.commit("match", T0, {"like": 5})
    a.commit("other", T0, {"wow": 1})
    state.merge_part(TOTALS, a.totals.encode())  # a duplicate delivery changes nothing
    response = await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id="match"))
    assert {c.emoji: c.count for c in response.totals} == {"like": 15, "heart": 2}
    assert response.stream_id == "match" and response.as_of_ms == FakeClock().wall_ms()
    empty = await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id="nobody-watches"))
    assert list(empty.totals) == []


async def test_history_per_second_covers_start_and_excludes_end(query: Any) -> None:
    stub, state, _ = query
    agg = Aggregator(state, "a/agg-0~1")
    for s in range(10):
        agg.commit("match", T0 + s, {"like": s + 1})
    response = await stub.GetHistory(query_pb2.GetHistoryRequest(stream_id="match", start_s=T0 + 2, end_s=T0 + 5))
    assert response.step_s == 1
    assert series(response) == {"like": [(T0 + 2, 3), (T0 + 3, 4), (T0 + 4, 5)]}


async def test_history_in_steps_sums_buckets_aligned_to_start_and_skips_empty_ones(query: Any) -> None:
    stub, state, _ = query
    a, b = Aggregator(state, "a/agg-0~1"), Aggregator(state, "b/agg-0~1")
    for s in (0, 1, 9, 25, 29, 30):  # nothing in [T0+10, T0+20)
        a.commit("match", T0 + s, {"like": 1, "heart": 10})
    b.commit("match", T0 + 1, {"like": 100})
    request = query_pb2.GetHistoryRequest(stream_id="match", start_s=T0, end_s=T0 + 30, step_s=10)
    response = await stub.GetHistory(request)
    assert response.step_s == 10
    assert series(response) == {
        "heart": [(T0, 30), (T0 + 20, 20)],
        "like": [(T0, 103), (T0 + 20, 2)],
    }
    only_like = await stub.GetHistory(
        query_pb2.GetHistoryRequest(stream_id="match", start_s=T0 + 5, end_s=T0 + 35, step_s=7, emojis=["like", "wow"])
    )
    # Buckets start at T0+5, T0+12, T0+19, T0+26, T0+33.
    assert series(only_like) == {"like": [(T0 + 5, 1), (T0 + 19, 1), (T0 + 26, 2)], "wow": []}


async def test_history_indexes_windows_that_arrive_out_of_order(query: Any) -> None:
    stub, state, servicer = query
    agg = Aggregator(state, "a/agg-0~1")
    for s in (50, 10, 30, 10, 20, 50, 40):
        agg.commit("match", T0 + s, {"like": 1})
    response = await stub.GetHistory(query_pb2.GetHistoryRequest(stream_id="match", start_s=T0, end_s=T0 + 60))
    assert series(response) == {"like": [(T0 + 10, 2), (T0 + 20, 1), (T0 + 30, 1), (T0 + 40, 1), (T0 + 50, 2)]}
    state.windows.prune(lambda key: key[2] < T0 + 25)
    assert servicer.forget_windows_before(T0 + 25) == 2
    response = await stub.GetHistory(query_pb2.GetHistoryRequest(stream_id="match", start_s=T0, end_s=T0 + 60))
    assert series(response) == {"like": [(T0 + 30, 1), (T0 + 40, 1), (T0 + 50, 2)]}


async def test_queries_use_the_index_not_a_scan_of_the_state() -> None:
    state = RegionState()
    windows = ScanCounting()
    totals = ScanCounting()
    state.collections[WINDOWS] = windows
    state.collections[TOTALS] = totals
    agg = Aggregator(state, "a/agg-0~1")
    agg.commit("match", T0, {"like": 3})
    servicer = QueryServicer(state)  # reads the existing keys once
    for i in range(200):
        agg.commit(f"stream-{i}", T0 + i, {"like": 1})
    agg.commit("match", T0 + 1, {"like": 4})
    scans = windows.scans, totals.scans
    assert await servicer.totals("match") == {"like": 7}
    assert await servicer.history("match", T0, T0 + 10) == (1, {"like": [(T0, 3), (T0 + 1, 4)]})
    assert (windows.scans, totals.scans) == scans


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"stream_id": "match", "start_s": T0, "end_s": T0}, "non-empty"),
        ({"stream_id": "match", "start_s": T0 + 10, "end_s": T0}, "non-empty"),
        ({"stream_id": "match", "start_s": -5, "end_s": T0}, "start_s"),
        ({"stream_id": "match", "start_s": T0, "end_s": T0 + 86_401}, "86400"),
        ({"stream_id": "match", "start_s": T0, "end_s": T0 + 2 * 86_400 + 1, "step_s": 2}, "86400"),
        ({"stream_id": "", "start_s": T0, "end_s": T0 + 1}, "stream_id"),
        ({"stream_id": "bad stream", "start_s": T0, "end_s": T0 + 1}, "stream_id"),
        ({"stream_id": "match", "start_s": T0, "end_s": T0 + 1, "emojis": ["Like!"]}, "emoji"),
    ],
)
async def test_bad_history_requests_are_invalid_arguments(
    query: Any, request_kwargs: dict[str, Any], fragment: str
) -> None:
    stub, _, _ = query
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHistory(query_pb2.GetHistoryRequest(**request_kwargs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (info.value.details() or "")


async def test_the_largest_allowed_range_is_answered(query: Any) -> None:
    stub, state, _ = query
    Aggregator(state, "a/agg-0~1").commit("match", T0 + 86_399, {"like": 1})
    response = await stub.GetHistory(query_pb2.GetHistoryRequest(stream_id="match", start_s=T0, end_s=T0 + 86_400))
    assert series(response) == {"like": [(T0 + 86_399, 1)]}


async def test_bad_stream_id_in_totals_is_an_invalid_argument(query: Any) -> None:
    stub, _, _ = query
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetTotals(query_pb2.GetTotalsRequest(stream_id="x" * 129))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_servicer_indexes_state_merged_before_it_started() -> None:
    state = RegionState()
    agg = Aggregator(state, "a/agg-0~1")
    for s in (5, 1, 3):
        agg.commit("match", T0 + s, {"like": s})
    servicer = QueryServicer(state)
    assert await servicer.totals("match") == {"like": 9}
    assert await servicer.history("match", T0, T0 + 6, 2) == (2, {"like": [(T0, 1), (T0 + 2, 3), (T0 + 4, 5)]})
