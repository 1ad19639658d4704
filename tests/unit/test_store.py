"""The SQLite store on real files: one-transaction commits, max-upserts, schema checks, pruning."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reactmesh.region_node import sqlite as sqlite_module
from reactmesh.region_node.aggregator.store import SCHEMA_VERSION, Store
from reactmesh.region_node.sqlite import SchemaVersionError, StoreError, write_transaction
from reactmesh.region_node.state import TOTALS, WINDOWS

S1 = b"\x01" * 16
S2 = b"\x02" * 16


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(db_path)
    yield s
    await s.close()


async def test_committed_watermarks_and_slots_load_back(store: Store) -> None:
    await store.commit(
        {S1: 3, S2: 7},
        [
            (TOTALS, ("s1", "like"), "a/agg-0~x", 5),
            (TOTALS, ("s1", "like"), "b/agg-0~y", 2),
            (WINDOWS, ("s1", "like", 1000), "a/agg-0~x", 5),
        ],
        now_ms=42,
    )
    assert sorted(await store.load_watermarks()) == [(S1, 3, 42), (S2, 7, 42)]
    colls = await store.load_collections()
    assert colls[TOTALS].value(("s1", "like")) == 7
    assert dict(colls[TOTALS].slots(("s1", "like"))) == {"a/agg-0~x": 5, "b/agg-0~y": 2}
    assert colls[WINDOWS].value(("s1", "like", 1000)) == 5


async def test_upserts_keep_the_maximum_so_an_old_value_never_moves_back(store: Store) -> None:
    await store.commit({S1: 5}, [(TOTALS, ("s", "e"), "r", 10), (WINDOWS, ("s", "e", 1), "r", 10)], now_ms=1)
    await store.commit({S1: 4}, [(TOTALS, ("s", "e"), "r", 3), (WINDOWS, ("s", "e", 1), "r", 3)], now_ms=2)
    assert await store.load_watermarks() == [(S1, 5, 2)]
    colls = await store.load_collections()
    assert colls[TOTALS].value(("s", "e")) == 10
    assert colls[WINDOWS].value(("s", "e", 1)) == 10


async def test_commit_is_atomic_when_a_row_fails_midway(store: Store) -> None:
    await store.commit({S1: 1}, [(TOTALS, ("s", "e"), "r", 1)], now_ms=1)
    # The watermark and first slot rows are written inside the transaction before the negative
    # count violates its CHECK constraint; none of them may survive.
    with pytest.raises(sqlite3.IntegrityError):
        await store.commit(
            {S1: 9, S2: 9},
            [(TOTALS, ("s", "e"), "r", 50), (WINDOWS, ("s", "e", 1), "r", 50), (WINDOWS, ("s", "x", 1), "r", -1)],
            now_ms=2,
        )
    assert await store.load_watermarks() == [(S1, 1, 1)]
    colls = await store.load_collections()
    assert colls[TOTALS].value(("s", "e")) == 1
    assert len(colls[WINDOWS]) == 0
    # The connection is usable again: no transaction was left open.
    await store.commit({S2: 2}, [], now_ms=3)
    assert sorted(await store.load_watermarks()) == [(S1, 1, 1), (S2, 2, 3)]


async def test_commit_split_into_many_multi_row_statements_keeps_max_and_rolls_back_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "MULTI_ROW_PARAMS", 7)  # two watermark rows per statement
    sessions = {bytes([i]) * 16: i + 1 for i in range(1, 10)}
    # The same slot twice in one commit: the larger count wins, as with one statement per row.
    await store.commit(sessions, [(TOTALS, ("s", "e"), "r", 4), (TOTALS, ("s", "e"), "r", 2)], now_ms=1)
    assert sorted(await store.load_watermarks()) == sorted((s, q, 1) for s, q in sessions.items())
    assert (await store.load_collections())[TOTALS].value(("s", "e")) == 4
    # A failing row in the last statement undoes the earlier statements of the same transaction.
    with pytest.raises(sqlite3.IntegrityError):
        await store.commit(
            {s: q + 10 for s, q in sessions.items()},
            [(WINDOWS, ("s", "e", 1), "r", 5), (WINDOWS, ("s", "e", 2), "r", -1)],
            now_ms=2,
        )
    assert sorted(await store.load_watermarks()) == sorted((s, q, 1) for s, q in sessions.items())
    assert len((await store.load_collections())[WINDOWS]) == 0


async def test_an_error_on_the_writer_thread_rolls_back_and_leaves_the_connection_usable(store: Store) -> None:
    def rows() -> Iterator[tuple[bytes, int, int]]:
        yield (S2, 5, 2)
        raise RuntimeError("writer thread failed")

    conn = store._live()
    with pytest.raises(RuntimeError, match="writer thread failed"):
        await write_transaction(
            conn,
            store._lock,
            [
                ("INSERT INTO watermarks (session_id, seq, updated_ms) VALUES (?, ?, ?)", [(S1, 9, 2)]),
                ("INSERT INTO watermarks (session_id, seq, updated_ms) VALUES (?, ?, ?)", rows()),
            ],
        )
    assert not conn.in_transaction
    assert await store.load_watermarks() == []
    await store.commit({S1: 1}, [], now_ms=3)
    assert await store.load_watermarks() == [(S1, 1, 3)]


async def test_commit_on_a_closed_store_raises_and_writes_nothing(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    with pytest.raises(StoreError):
        await store.commit({S1: 1}, [], now_ms=1)
    reopened = await Store.open(db_path)
    try:
        assert await reopened.load_watermarks() == []
    finally:
        await reopened.close()


async def test_a_commit_is_visible_to_a_new_connection_without_close(db_path: Path) -> None:
    first = await Store.open(db_path)
    await first.commit({S1: 4}, [(TOTALS, ("s", "e"), "r", 4)], now_ms=1)
    second = await Store.open(db_path)  # as after kill -9 of the first process
    try:
        assert await second.load_watermarks() == [(S1, 4, 1)]
        assert (await second.load_collections())[TOTALS].value(("s", "e")) == 4
        assert second.node_generation() == first.node_generation()
    finally:
        await second.close()
        await first.close()


async def test_file_uses_wal_and_full_synchronous_unless_told_normal(db_path: Path) -> None:
    for mode, level in (("FULL", 2), ("NORMAL", 1)):
        store = await Store.open(db_path, synchronous=mode)  # type: ignore[arg-type]
        try:
            # synchronous is a per-connection setting: read it on the store's own connection.
            assert list(await store._live().execute_fetchall("PRAGMA synchronous")) == [(level,)]
        finally:
            await store.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_generation_is_stable_for_a_file_and_new_for_a_new_file(tmp_path: Path) -> None:
    a = await Store.open(tmp_path / "a.db")
    gen_a = a.node_generation()
    await a.close()
    a = await Store.open(tmp_path / "a.db")
    b = await Store.open(tmp_path / "b.db")
    try:
        assert a.node_generation() == gen_a
        assert b.node_generation() != gen_a
        assert len(gen_a) == 16
    finally:
        await a.close()
        await b.close()


async def test_newer_schema_version_is_refused_with_a_clear_error(db_path: Path) -> None:
    path = db_path
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(
        SchemaVersionError, match=rf"schema version {SCHEMA_VERSION + 1} was written by a newer reactmesh"
    ):
        await Store.open(path)


async def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match="not a reactmesh store"):
        await Store.open(path)


async def test_prune_windows_deletes_only_older_windows(store: Store) -> None:
    await store.commit({}, [(WINDOWS, ("s", "e", t), "r", 1) for t in (10, 20, 30)], now_ms=1)
    assert await store.prune_windows(20) == 1
    assert list((await store.load_collections())[WINDOWS].keys()) == [("s", "e", 20), ("s", "e", 30)]
    assert len((await store.load_collections(windows_since_s=30))[WINDOWS]) == 1


async def test_prune_watermarks_by_scan_or_by_key_spares_recent_sessions(store: Store) -> None:
    s3 = b"\x03" * 16
    await store.commit({S1: 1, S2: 1}, [], now_ms=100)
    await store.commit({s3: 1}, [], now_ms=500)
    assert await store.prune_watermarks(200, [S1, s3]) == 1  # s3 is recent, S2 not listed
    assert sorted(s for s, _, _ in await store.load_watermarks()) == [S2, s3]
    assert await store.prune_watermarks(200) == 1
    assert [s for s, _, _ in await store.load_watermarks()] == [s3]


async def test_window_counts_answer_a_history_range_summed_over_replicas(store: Store) -> None:
    await store.commit(
        {},
        [
            (WINDOWS, ("s", "like", 10), "r1", 2),
            (WINDOWS, ("s", "like", 10), "r2", 3),
            (WINDOWS, ("s", "like", 11), "r1", 1),
            (WINDOWS, ("s", "wow", 12), "r1", 4),
            (WINDOWS, ("s", "like", 20), "r1", 9),
            (WINDOWS, ("other", "like", 11), "r1", 7),
        ],
        now_ms=1,
    )
    assert await store.window_counts("s", 10, 20) == [("like", 10, 5), ("like", 11, 1), ("wow", 12, 4)]
